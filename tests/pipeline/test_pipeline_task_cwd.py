"""Every KFP task body reads only its inputs and the image: run in an empty working directory (and in one that
holds a stale clone's outputs), each succeeds or fails with one clear line, and leaves the directory as it was."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest

from pipelines.aed_pipeline import STEPS, task_body
from pipelines.cli import fold_environment, load_checked
from tests.dvc_workspace import small_mirror, snapshot, stale_clone
from tests.kfp_artifacts import FakeArtifact

REPO = Path(__file__).resolve().parents[2]


def _call(step: str, params: dict, base: Path, model_name: str = "yamnet_256", **inputs: Path | None) -> Any:
    """Run the task body of `step` as KFP would: given inputs (others point at nothing), fresh output paths."""
    function = task_body(step)
    kwargs: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        kind = str(parameter.annotation)
        if name == "params":
            kwargs[name] = json.dumps(params)
        elif name == "model_name":
            kwargs[name] = model_name
        elif "Output" in kind:
            kwargs[name] = FakeArtifact(base / "outputs" / step / name)
        elif "Input" in kind:
            given = inputs.get(name, base / "absent" / step / name)
            kwargs[name] = None if given is None else FakeArtifact(given)
    return function(**kwargs)


@pytest.fixture
def task_params(tmp_path: Path, esc10_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The pipeline's params as `aed pipeline run-local` makes them: paths resolved in a project folder of their
    own, the dataset mirror written into params (and not in the tasks' environment)."""
    mirror = small_mirror(esc10_dir, tmp_path / "mirror", 1, ["category", "fold"])
    monkeypatch.setenv("AED_DATA_MIRROR", str(mirror))
    params, _settings, _models = load_checked(
        REPO / "params.yaml", ["validate.min_clips_per_class=5"], root=tmp_path / "project"
    )
    params = fold_environment(params)
    monkeypatch.delenv("AED_DATA_MIRROR")
    return params


@pytest.mark.parametrize("cwd_kind", ["empty", "stale clone"])
def test_every_task_body_runs_without_reading_or_touching_its_working_directory(
    tmp_path: Path, task_params: dict, monkeypatch: pytest.MonkeyPatch, cwd_kind: str
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir() if cwd_kind == "empty" else stale_clone(cwd)
    before = snapshot(cwd)
    monkeypatch.chdir(cwd)
    base = tmp_path / "task"
    out = base / "outputs"

    # the data steps, for real, each from the previous one's outputs
    _call("ingest", task_params, base)
    _call("validate", task_params, base, raw=out / "ingest" / "raw", manifest=out / "ingest" / "manifest")
    _call("patch", task_params, base, raw=out / "ingest" / "raw", validated=out / "validate" / "validated")
    assert (out / "patch" / "patches" / "index.csv").is_file()

    # YAMNet-256's teacher is an input: not given, the task refuses (a stale models/yamnet_1024 is not used)
    with pytest.raises(ValueError, match="yamnet_1024 teaches yamnet_256 .* no teacher folder was given"):
        _call("train", task_params, base, patches=out / "patch" / "patches", teacher=None)

    # every other task, given inputs that do not exist: succeeds (gate: undecidable) or names the missing input
    for step in STEPS[3:]:
        try:
            _call(step, task_params, base, patches=out / "patch" / "patches")
        except Exception as error:  # noqa: BLE001 - any error must be one line naming an input of this task
            message = str(error)
            assert "\n" not in message.strip(), (step, message)
            # an absolute path (an input, or evaluate's scratch link to one), never the working directory
            assert re.search(r"(^|[\s'\"])/\S+", message) and str(cwd) not in message, (step, message)
    assert snapshot(cwd) == before, f"a task wrote in its working directory ({cwd_kind})"
