"""Container images the KFP tasks run in: one image per role, each with only what its steps need, all from the one
lock file (requirements.lock) the development venv is synced from.

| role  | steps (pipelines.aed_pipeline.SETTINGS)                              | TensorFlow |
|-------|----------------------------------------------------------------------|------------|
| data  | ingest, validate, patch                                              | no         |
| train | train, quantize, evaluate, convert, export_firmware                  | yes        |
| hil   | hil, gate, promote                                                   | no         |

A role's packages are the closure, in the lock's own dependency graph (its `# via` annotations), of the role's
ROLE_ROOTS; the lock's pins and hashes are copied unchanged, so an image can only hold the venv's versions.
`docker/role.Dockerfile` runs this file with the image's own Python (standard library only, no project import):

    python images.py requirements ROLE OUT_DIR   # OUT_DIR/lock.txt, overrides.txt, METADATA

params.yaml's `pipeline.image_registry` and `pipeline.image_tag` (or `aed pipeline compile|submit --registry R
--tag T`) name the images; an empty tag means the project's version. `make images` builds them (docs/pipeline.md).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

DEFAULT_REGISTRY = "ghcr.io/aed-mlops"
ROLES = ("data", "train", "hil")
KINDS = ROLES  # older name of the roles

# The distributions a role's steps import (tests/containers/test_role_packages.py checks this against the steps'
# imports); everything they depend on follows from the lock. kfp runs every task (kfp.dsl.executor_main).
_COMMON = (
    "kfp",
    "pyyaml",
    "numpy",
    "pandas",
    "soundfile",
    "soxr",
    "boto3",
    "great-expectations",
    "threadpoolctl",
    "tqdm",
)
# The virtual board runs the int8 TFLite model (LiteRT, or tflite-micro for a TFLM-planned model) and the QDQ ONNX
# model (onnxruntime); labgrid, pyserial and protobuf talk to real boards.
_BOARD = ("labgrid", "protobuf", "grpcio", "ai-edge-litert", "tflite-micro", "onnx", "onnxruntime")
_TRAINING = (
    "tensorflow-cpu",
    "keras",
    "tf2onnx",
    "h5py",
    "matplotlib",
    "scikit-learn",
    "scipy",
    "librosa",
    "sed-eval",
    "psds-eval",
    "setuptools",
)
ROLE_ROOTS: dict[str, tuple[str, ...]] = {
    "data": _COMMON,
    "hil": _COMMON + _BOARD,
    "train": _COMMON + _BOARD + _TRAINING,
}
# Lock entries whose Requires-Python excludes our Python although they work on it; pip refuses them, so they are
# installed on their own with --ignore-requires-python (never the rest of the lock). Name -> why it is safe.
REQUIRES_PYTHON_OVERRIDES = {
    "backports-strenum": "declares Requires-Python <3.11 but is a pure-Python StrEnum backport that ai-edge-litert "
    "requires unconditionally; Python 3.11 has enum.StrEnum, and uv (make install) installs it the same way",
}
PROJECT = "aed-mlops"


def _project_version() -> str:
    try:
        return metadata.version(PROJECT)
    except metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True)
class Images:
    registry: str = DEFAULT_REGISTRY
    tag: str = ""

    def __post_init__(self) -> None:
        if not self.tag:
            object.__setattr__(self, "tag", _project_version())
        if not self.registry or self.registry.endswith("/") or " " in self.registry:
            raise ValueError(f"image registry {self.registry!r}: expected e.g. ghcr.io/org (no trailing '/')")
        if not self.tag or ":" in self.tag or "/" in self.tag:
            raise ValueError(f"image tag {self.tag!r}: expected e.g. 0.1.0")

    def name(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown image role {role!r}; known: {list(ROLES)}")
        return f"{self.registry}/aed-{role}:{self.tag}"


# -- the lock, split per role -----------------------------------------------------------------------------------
def normalize(name: str) -> str:
    """PEP 503 name: `Great_Expectations[extra]` -> great-expectations."""
    return re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower().strip()


@dataclass
class LockEntry:
    name: str
    text: str  # the pin with its hashes, as in the lock
    parents: set[str]  # the lock's `# via` names (`aed-mlops (pyproject.toml)` -> aed-mlops)


def parse_lock(text: str) -> dict[str, LockEntry]:
    """{name: entry} for every pin of a `uv pip compile --generate-hashes` lock."""
    entries: dict[str, LockEntry] = {}
    current: LockEntry | None = None
    in_via = False
    for line in text.splitlines():
        pin = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.\-\[\]]*)==", line)
        if pin:
            current = LockEntry(normalize(pin.group(1)), line + "\n", set())
            entries[current.name] = current
            in_via = False
            continue
        stripped = line.strip()
        if current is None or not stripped:
            continue
        if stripped.startswith("--hash") or line.startswith("    --"):
            current.text += line + "\n"
        elif stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest
            if rest:
                current.parents.add(normalize(rest.split(" (")[0]))
        elif in_via and stripped.startswith("#   "):
            current.parents.add(normalize(stripped.removeprefix("#").strip().split(" (")[0]))
    return entries


def role_packages(entries: dict[str, LockEntry], role: str) -> set[str]:
    """The role's roots and everything they need, following the lock's dependency edges (parent -> child)."""
    if role not in ROLE_ROOTS:
        raise ValueError(f"unknown image role {role!r}; known: {list(ROLES)}")
    children: dict[str, set[str]] = {}
    for entry in entries.values():
        for parent in entry.parents:
            children.setdefault(parent, set()).add(entry.name)
    missing = [root for root in ROLE_ROOTS[role] if root not in entries]
    if missing:
        raise ValueError(f"requirements.lock: no pin for {missing} (ROLE_ROOTS[{role!r}])")
    found: set[str] = set()
    todo = list(ROLE_ROOTS[role])
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(children.get(name, ()))
    return found


def project_version(pyproject: Path) -> str:
    import tomllib

    return tomllib.loads(pyproject.read_text())["project"]["version"]


def project_metadata(role: str, entries: dict[str, LockEntry], version: str) -> str:
    """METADATA of the project as a role image installs it: its requirements are the role's roots (pinned), so that
    `pip check` holds the image to what its steps import rather than to the whole project."""
    lines = ["Metadata-Version: 2.1", f"Name: {PROJECT}", f"Version: {version}"]
    for root in sorted(ROLE_ROOTS[role]):
        pin = entries[root].text.split(" ", 1)[0].split("==")[1]
        lines.append(f"Requires-Dist: {root}=={pin}")
    return "\n".join(lines) + "\n"


def write_requirements(lock: Path, pyproject: Path, role: str, out_dir: Path) -> tuple[int, int]:
    """OUT_DIR/lock.txt (hash-pinned, pip installs it), overrides.txt (REQUIRES_PYTHON_OVERRIDES of the role) and
    METADATA; returns (pins, overrides)."""
    entries = parse_lock(lock.read_text())
    names = sorted(role_packages(entries, role))
    normal = [entries[n].text for n in names if n not in REQUIRES_PYTHON_OVERRIDES]
    special = [entries[n].text for n in names if n in REQUIRES_PYTHON_OVERRIDES]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lock.txt").write_text("".join(normal))
    (out_dir / "overrides.txt").write_text("".join(special))
    (out_dir / "METADATA").write_text(project_metadata(role, entries, project_version(pyproject)))
    return len(normal), len(special)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "requirements":
        print(
            "usage: images.py requirements ROLE LOCK_DIR OUT_DIR (LOCK_DIR holds requirements.lock and "
            "pyproject.toml)",
            file=sys.stderr,
        )
        return 2
    _, role, lock_dir, out_dir = argv
    try:
        pins, overrides = write_requirements(
            Path(lock_dir) / "requirements.lock", Path(lock_dir) / "pyproject.toml", role, Path(out_dir)
        )
    except (OSError, ValueError, KeyError) as error:
        print(f"images.py: error: {error}", file=sys.stderr)
        return 2
    print(f"{role}: {pins} pins from requirements.lock, {overrides} installed with --ignore-requires-python")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
