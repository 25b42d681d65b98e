"""The container images install exactly the lock file this environment was synced from (no Docker here)."""

from __future__ import annotations

import platform
import re
from importlib import metadata
from pathlib import Path

import pytest

from pipelines.images import KINDS, Images

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [
        (item.split(None, 1)[0].upper(), item.split(None, 1)[1] if " " in item else "") for item in logical
    ]


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
def test_every_image_kind_has_a_dockerfile(kind: str) -> None:
    assert (DOCKER / f"{kind}.Dockerfile").is_file()
    assert (DOCKER / f"{kind}.Dockerfile.dockerignore").is_file()
    assert Images(registry="r.example/x", tag="1").name(kind) == f"r.example/x/aed-{kind}:1"


def test_base_image_installs_the_lock_with_hashes_and_nothing_else() -> None:
    steps = _instructions(DOCKER / "base.Dockerfile")
    runs = " && ".join(args for op, args in steps if op == "RUN")
    copies = [args for op, args in steps if op == "COPY"]
    assert any(c.split()[0] == "requirements.lock" for c in copies)
    installs = [part.strip() for part in runs.split("&&") if "pip install" in part]
    lock_installs = [i for i in installs if "-r /tmp/requirements.lock" in i]
    assert len(lock_installs) == 1
    assert "--require-hashes" in lock_installs[0] and "--no-deps" in lock_installs[0]
    # the only other install is the project itself, without dependencies
    others = [i for i in installs if i not in lock_installs]
    assert others and all(i.endswith(" .") and "--no-deps" in i for i in others), others
    assert "pip check" in runs


def test_base_python_matches_this_environment() -> None:
    steps = _instructions(DOCKER / "base.Dockerfile")
    arg = next(args for op, args in steps if op == "ARG" and args.startswith("PYTHON_IMAGE="))
    image = arg.split("=", 1)[1]
    match = re.match(r"python:(\d+\.\d+\.\d+)-", image)
    assert match, image
    assert match.group(1) == platform.python_version()


@pytest.mark.parametrize("kind", ["train", "hil"])
def test_derived_images_build_on_the_base_and_add_no_python_packages(kind: str) -> None:
    steps = _instructions(DOCKER / f"{kind}.Dockerfile")
    base_arg = next(args for op, args in steps if op == "ARG" and args.startswith("BASE="))
    assert "/aed-base:" in base_arg
    assert next(args for op, args in steps if op == "FROM") == "${BASE}"
    runs = " ".join(args for op, args in steps if op == "RUN")
    assert "pip install" not in runs and "requirements" not in runs


def test_dockerignore_lets_every_copied_path_through() -> None:
    for kind in KINDS:
        allowed = {
            line[1:].rstrip("/")
            for line in (DOCKER / f"{kind}.Dockerfile.dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        for op, args in _instructions(DOCKER / f"{kind}.Dockerfile"):
            if op == "COPY":
                for source in args.split()[:-1]:
                    assert source in allowed, f"{kind}: COPY {source} is excluded by the dockerignore"
                    assert (REPO / source).exists(), f"{kind}: COPY {source}: not in the repository"


def test_this_environment_is_the_lock() -> None:
    """Every pin of requirements.lock is installed here at that version: the venv and the images agree."""
    pins = _lock_pins()
    assert len(pins) > 150
    installed = {_normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    mismatched = {
        name: (want, installed.get(name)) for name, want in pins.items() if installed.get(name) != want
    }
    assert not mismatched, f"venv differs from requirements.lock (lock, venv): {mismatched}"
    assert pins["kfp"] == metadata.version("kfp")


def test_relative_params_paths_resolve_where_the_image_holds_the_project() -> None:
    """`aed pipeline compile | submit` resolve params.yaml's relative paths in IMAGE_PROJECT_DIR: it must be the
    base image's WORKDIR, where params.yaml and the approved gate baselines are copied."""
    from pipelines.cli import IMAGE_PROJECT_DIR

    instructions = _instructions(DOCKER / "base.Dockerfile")
    assert ("WORKDIR", str(IMAGE_PROJECT_DIR)) in instructions
    copied = " ".join(arguments for name, arguments in instructions if name == "COPY")
    assert "baselines ./baselines" in copied and "params.yaml" in copied
