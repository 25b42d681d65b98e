# Two commands on a fresh machine (Python 3.11 and the package registries only):
#   AED_DATA_MIRROR=../shared/data/esc10 make demo   # the whole pipeline with `dvc repro` on the embedded default
#   make test                                        # the test suite (unit + end-to-end)
PYTHON ?= python3.11
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
UV_VERSION := 0.13.8

export PATH := $(BIN):$(PATH)
# Pretrained YAMNet assets: the mirror beside the clone when there is one; otherwise set AED_MODELS_MIRROR.
AED_MODELS_MIRROR ?= $(wildcard $(CURDIR)/../shared/models/yamnet)
export AED_MODELS_MIRROR
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: reference install data demo test test-fast lint format lock images push-images pipeline-yaml dvc-yaml bench clean

# The venv is rebuilt from the lock whenever the lock or the project metadata changes.
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	# numba compiles librosa's kernels on first use (~20 s): do it once here, not inside a timed step.
	$(BIN)/python -c "import librosa.feature" 2>/dev/null
	touch $@

install: $(VENV)/.installed

# Fetch the raw dataset (AED_DATA_MIRROR or the public archive) and pin it in data.dvc.
data: install
	aed ingest --fetch-only
	dvc commit --force --quiet data.dvc

# The gate compares each model's virtual-board record with a committed baseline (the path `aed gate` uses:
# gate.baseline filled by hil_runner.gate.GateParams.baseline_path). On a first run (no baseline yet for a model)
# the demo accepts the run's own record explicitly, says so, and then gates against it. Every model of
# models.names is gated (read when the recipe runs, after install).
GATE_MODELS = $(shell $(BIN)/python -c "from pathlib import Path; from aed.params import load_section; from aed.models.config import ModelsParams; print(' '.join(load_section(Path('params.yaml'), 'models', ModelsParams).names))")

# Each `dvc repro` runs through bench/demo_times.py, which notes each stage's wall time; the demo ends with the
# table (also in $(DEMO_TIMES); `python bench/demo_times.py show` prints it again without make).
DEMO_TIMES := reports/timing/demo.json
DEMO_STARTED := $(shell date +%s)

demo: data
	$(BIN)/python bench/demo_times.py run --out $(DEMO_TIMES) -- dvc repro hil
	@for model in $(GATE_MODELS); do \
	  record=reports/hil_$$model.json; \
	  baseline=$$(python -c "import sys; from pathlib import Path; from aed.params import load_section; from hil_runner.gate import GateParams; print(load_section(Path('params.yaml'), 'gate', GateParams).baseline_path(Path(sys.argv[1]), sys.argv[2]))" $$record $$model); \
	  test -f $$baseline || { \
	    echo "demo: no baseline at $$baseline: accepting this run's record as the first baseline (review it, then commit it)"; \
	    aed gate --record $$record --model-name $$model --accept || exit 1; }; \
	done
	$(BIN)/python bench/demo_times.py run --out $(DEMO_TIMES) --append --make-started $(DEMO_STARTED) -- dvc repro
	@for model in $(GATE_MODELS); do python -c "import json,sys; v=json.load(open(sys.argv[1])); print('gate verdict', sys.argv[2] + ':', {k: v.get(k) for k in ('verdict', 'promotable', 'exit_code')})" reports/gate_$$model.json $$model; done
	@echo; echo "demo: wall time of each stage ($(DEMO_TIMES))"; $(BIN)/python bench/demo_times.py show $(DEMO_TIMES)

# dvc.yaml's model stages (train ... promote, per model) follow params.yaml's models.names: rewrite them after
# editing models.names, quantize.formats or a teacher (a test fails while the committed dvc.yaml is stale).
dvc-yaml: install
	aed pipeline dvc-yaml

# Refresh the committed ESC-10 reference run (docs/reference-run/) from this clone's last `make demo`: its records,
# compact metrics, curves and confusion matrices (not Data Docs), and its page.
reference: install
	rm -rf docs/reference-run && mkdir -p docs/reference-run
	cd reports && find . -type f ! -path './data_docs/*' ! -name index.html -exec cp --parents {} ../docs/reference-run/ \;
	aed report --reports docs/reference-run --out docs/reference-run/index.html

test: install lint
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Re-resolve the pins (needs the registry); commit the new requirements.lock.
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes --quiet -o requirements.lock

# Container images, one per role (aed-data, aed-train, aed-hil; docs/pipeline.md "Containers"), with BuildKit
# (docker/build-images.sh). BASE_IMAGE=auto (python:3.11.7-slim-bookworm, or a base made from Debian packages when no
# registry is reachable) | debian | IMAGE; EXTRA_CA=ca.pem | none (default: the system's local CAs, as a secret).
# REGISTRY/TAG must match params.yaml pipeline.image_registry / pipeline.image_tag (empty tag = project version).
REGISTRY ?= ghcr.io/aed-mlops
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)

images:
	REGISTRY=$(REGISTRY) TAG=$(TAG) docker/build-images.sh

push-images: images
	for role in data train hil; do docker push $(REGISTRY)/aed-$$role:$(TAG) || exit 1; done

# Recompile pipelines/aed_pipeline.yaml after changing pipelines/ or params.yaml (a test checks it is current).
pipeline-yaml: install
	aed pipeline compile

# Benchmarks print figures beside a reference measured in the same run (bench/harness.py: interleaved runs after a
# warm-up, medians, the load before and after, "valid for the README" or not); they need the dataset and its
# patches. Each also writes its figures, load, verdict and command to reports/timing/bench_<script>.json.
BENCH_JSON := reports/timing
bench: data
	dvc repro patch
	$(BIN)/python bench/patching.py --json $(BENCH_JSON)/bench_patching.json
	$(BIN)/python bench/estimator.py --json $(BENCH_JSON)/bench_estimator.json
	$(BIN)/python bench/hil.py --json $(BENCH_JSON)/bench_hil.json
	$(BIN)/python bench/training.py --json $(BENCH_JSON)/bench_training.json
	$(BIN)/python bench/head_steps.py --json $(BENCH_JSON)/bench_head_steps.json
	$(BIN)/python bench/split_jobs.py --json $(BENCH_JSON)/bench_split_jobs.json
	$(BIN)/python bench/cli_help.py --json $(BENCH_JSON)/bench_cli_help.json

clean:
	rm -rf artifacts reports models .cache/aed/extracted
