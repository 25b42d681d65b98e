"""The container images install exactly the lock file this environment was synced from (no Docker here)."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from pipelines.images import KINDS, Images

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower()


def _lock_pins() -> dict[str, str]:
    """name -> version of every lock entry whose environment marker (if any) applies here."""
    from packaging.markers import Marker

    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+))?", line)
        if match and (match.group(3) is None or Marker(match.group(3).strip()).evaluate()):
            pins[_normalize(match.group(1))] = match.group(2)
    return pins


@pytest.mark.parametrize("kind", KINDS)
def test_every_image_kind_is_built_by_the_role_dockerfile(kind: str) -> None:
    # one Dockerfile for every role (tests/containers/ checks the images themselves)
    assert (DOCKER / "role.Dockerfile").is_file() and (DOCKER / "role.Dockerfile.dockerignore").is_file()
    assert Images(registry="r.example/x", tag="1").name(kind) == f"r.example/x/aed-{kind}:1"


def test_this_environment_is_the_lock() -> None:
    """Every pin of requirements.lock is installed here at that version: the venv and the images agree."""
    pins = _lock_pins()
    assert len(pins) > 150
    # The first of a name on sys.path is the one imported: once setuptools is imported (dcase_util imports
    # pkg_resources), sys.path ends with setuptools/_vendor, whose own packaging, wheel... come later.
    installed: dict[str, str] = {}
    for dist in metadata.distributions():
        installed.setdefault(_normalize(dist.metadata["Name"]), dist.version)
    mismatched = {
        name: (want, installed.get(name)) for name, want in pins.items() if installed.get(name) != want
    }
    assert not mismatched, f"venv differs from requirements.lock (lock, venv): {mismatched}"
    assert pins["kfp"] == metadata.version("kfp")
