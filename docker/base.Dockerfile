# aed-base: Python 3.11, the locked dependencies (requirements.lock, hash-checked) and the project.
# Build from the repository root:  docker build -f docker/base.Dockerfile -t $REGISTRY/aed-base:$TAG .
# Every KFP task runs `python3 -m kfp.dsl.executor_main` from this image (kfp is in the lock, so the components
# use install_kfp_package=False and install nothing at run time).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=False \
    TF_CPP_MIN_LOG_LEVEL=2 \
    NUMBA_CACHE_DIR=/var/cache/numba

# The same lock file the development venv is synced from (`make install`): hashes checked, nothing resolved here.
COPY requirements.lock /tmp/requirements.lock
RUN python -m pip install --require-hashes --no-deps -r /tmp/requirements.lock \
    && python -m pip check \
    && rm /tmp/requirements.lock

# The project itself, without dependencies (they all come from the lock above). setuptools is in the lock, so the
# build uses it instead of fetching an unpinned one (--no-build-isolation).
WORKDIR /opt/aed
COPY pyproject.toml README.md params.yaml ./
COPY aed ./aed
COPY components ./components
COPY hil_runner ./hil_runner
COPY pipelines ./pipelines
# Approved gate baselines (gate.baseline in params.yaml), so a containerised gate compares with the same records.
COPY baselines ./baselines
RUN python -m pip install --no-deps --no-build-isolation . \
    # numba compiles librosa's kernels on first use (~20 s): once here, not in every task.
    && mkdir -p "$NUMBA_CACHE_DIR" && python -c "import librosa.feature" \
    && chmod -R a+rwX "$NUMBA_CACHE_DIR" \
    && useradd --create-home --uid 1000 aed \
    # Steps write relative paths (.cache/aed, work/hil) under the working directory.
    && chown aed:aed /opt/aed

# Relative paths in params.yaml (e.g. gate baselines, work/) resolve against this directory.
USER aed
CMD ["aed", "--help"]
