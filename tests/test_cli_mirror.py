"""The YAMNet mirror is found the same way in and out of make (AED_MODELS_MIRROR, else ../shared/models/yamnet
beside the clone, the Makefile's rule), and a missing asset stops `aed train` with one line before TensorFlow
loads or any data is read (it used to fail after a minute, deep in the training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aed.models import mirror
from aed.models.mirror import ENV, WeightsError, check_mirror, models_mirror

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone at tmp/clone with no ../shared beside it, and no AED_MODELS_MIRROR."""
    monkeypatch.setattr(mirror, "CLONE", tmp_path / "clone")
    monkeypatch.delenv(ENV, raising=False)
    return tmp_path / "clone"


def test_the_variable_wins(clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "elsewhere"))
    assert models_mirror() == tmp_path / "elsewhere"


@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty (make without a mirror)", "blank"])
def test_without_the_variable_the_mirror_beside_the_clone_is_used(
    clone: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv(ENV, value)
    with pytest.raises(WeightsError, match=f"^{ENV} is not set and there is no .*shared/models/yamnet"):
        models_mirror()
    beside = clone.parent / "shared" / "models" / "yamnet"
    beside.mkdir(parents=True)
    assert models_mirror() == beside


def test_the_repository_default_matches_the_makefile() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "AED_MODELS_MIRROR ?= $(wildcard $(CURDIR)/../shared/models/yamnet)" in makefile
    assert mirror.CLONE == REPO


def test_each_model_needs_its_own_asset(clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    (tmp_path / mirror.YAMNET_256_H5).write_bytes(b"h5")
    assert check_mirror("yamnet_256") == tmp_path / mirror.YAMNET_256_H5
    with pytest.raises(WeightsError) as raised:
        check_mirror("yamnet_1024")
    assert str(raised.value) == (
        f"{tmp_path / mirror.YAMNET_TFLITE}: yamnet_1024's pretrained weights not found ({ENV}={tmp_path})"
    )
    assert check_mirror("yamnet_1024", user_weights=True) is None  # models.yamnet_1024_h5 replaces it


# `aed train` in a fresh interpreter, then whether TensorFlow got imported.
PROBE = """
import json, sys
from pipelines.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def test_aed_train_without_the_asset_fails_first_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "mirror"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), ENV: str(empty)}
    argv = ["train", "--model-name", "yamnet_256", "--patches", str(tmp_path / "no_patches"),
            "--out", str(tmp_path / "float"), "--reports", str(tmp_path / "reports")]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False,
    )  # fmt: skip
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"code": 2, "tensorflow": False}, done.stderr
    assert done.stderr == (
        f"aed train: error: {empty / mirror.YAMNET_256_H5}: yamnet_256's pretrained weights not found "
        f"({ENV}={empty})\n"
    )
    assert not (tmp_path / "float").exists() and not (tmp_path / "reports").exists()
