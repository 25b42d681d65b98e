"""Step outputs that never destroy what a step does not own and are never left half-written.

The rules, for every folder a step writes (`replacing`):
- ownership: a step replaces a folder only when it is absent, empty, or holds the step's marker file
  (`.aed-output.json` naming the step); anything else is refused with one line, nothing is deleted;
- no self-destruction: an output equal to, inside, or containing one of the step's inputs is refused
  (symlinks resolved);
- atomicity: the new content is written into a temporary sibling, then swapped in by two renames (old aside,
  new in) with SIGINT / SIGTERM blocked, and the old one removed; on any exception or signal the temporary
  folder is removed and the old output stays. A SIGKILL leaves the old output (or, inside the two renames,
  none) plus a hidden sibling that the next run removes;
- a manifest: the marker lists every file's size and sha256 and the params hash, so a loader can refuse a
  folder whose files are not the ones written together (`verify_manifest`);
- one writer: an exclusive flock on a hidden lock file beside the output (`.<name>.aed-lock`, never inside
  it, so DVC never tracks it) refuses a second concurrent writer with the holder's pid.

Files a step adds to a folder it shares with other steps (evaluate's reports/<model>) go through `publishing`:
written in a temporary sibling, then each moved into place, the batch with SIGINT / SIGTERM blocked.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aed.records import atomic_write_text, sha256_file

MARKER = ".aed-output.json"
_HIDDEN_KINDS = ("aed-tmp", "aed-old")
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class OutputError(ValueError):
    """An output that must not be written or read as asked: one line, the CLI exits 2."""


class OutputLocked(OutputError):
    pass


class ManifestMismatch(OutputError):
    pass


class Interrupted(SystemExit):
    """SIGTERM while an output is written: unwinds like Ctrl-C (so the temporary folder is removed) and exits
    with the shell's code for a signal death."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


@dataclass(frozen=True)
class OutputSpec:
    """step: the `aed` subcommand that owns the folder. marker: the JSON file that proves it, holding the key
    marker_key (the default marker holds "step": step, and the manifest). A step whose folder must stay
    byte-stable for DVC (ingest's data/raw, pinned by data.dvc) names a file it already writes there instead,
    and has no manifest."""

    step: str
    marker: str = MARKER
    marker_key: str = "step"
    manifest: bool = True


def params_sha256(params: Any) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


def _real(output: Path) -> Path:
    """The output's real path, symlinks resolved (a linked data/raw on another disk is replaced where it lies,
    the link kept; the ownership rules apply to the real folder)."""
    real = Path(output).expanduser().resolve()
    if real.parent == real:
        raise OutputError(f"{output}: cannot be replaced (it is the file-system root)")
    return real


def check_not_overlapping(output: Path, sources: dict[str, Path | None]) -> None:
    """Refuse an output that is, lies inside, or contains one of the step's inputs."""
    target = _real(output)
    for name, source in sources.items():
        if source is None:
            continue
        real = Path(source).expanduser().resolve()
        if target == real:
            relation = "is"
        elif real in target.parents:
            relation = "lies inside"
        elif target in real.parents:
            relation = "contains"
        else:
            continue
        raise OutputError(f"{output}: {relation} the {name} {source}; a step never replaces its own input")


def check_file_outputs(outputs: dict[str, Path | None], sources: dict[str, Path | None]) -> None:
    """A step's single-file outputs (records, CSVs) must not overwrite one of its inputs or land inside an input
    folder or a folder it writes whole (where the file would corrupt that folder, or be swapped away)."""
    for name, output in outputs.items():
        if output is None:
            continue
        real = Path(output).expanduser().resolve()
        for source_name, source in sources.items():
            if source is None:
                continue
            folder = Path(source).expanduser().resolve()
            if real == folder or folder in real.parents:
                relation = "is" if real == folder else "lies inside"
                raise OutputError(
                    f"{name} {output}: {relation} the {source_name} {source}; choose another path"
                )


def check_replaceable(output: Path, spec: OutputSpec) -> None:
    """Absent, empty, or marked as this step's: anything else is not ours to delete."""
    target = _real(output)
    if not target.exists():
        return
    if not target.is_dir():
        raise OutputError(f"{output}: is a file, not a folder; `aed {spec.step}` writes a folder there")
    if not any(target.iterdir()):
        return
    owner = _marker_owner(target / spec.marker, spec)
    if owner != spec.step:
        found = f"its {spec.marker} names `aed {owner}`" if owner else f"it has no valid {spec.marker}"
        raise OutputError(
            f"{output}: not empty and not written by `aed {spec.step}` ({found}); refusing to replace it: "
            "choose another folder or remove it yourself"
        )


def _marker_owner(marker: Path, spec: OutputSpec) -> str | None:
    try:
        content = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or spec.marker_key not in content:
        return None
    if spec.marker != MARKER:  # a step-specific marker: holding the step's key is the proof
        return spec.step
    owner = content["step"]
    return owner if isinstance(owner, str) else None


def check_output(output: Path, spec: OutputSpec, sources: dict[str, Path | None] | None = None) -> None:
    """Both refusals, for a step to run before its long work (`replacing` checks again when it starts)."""
    check_not_overlapping(output, sources or {})
    check_replaceable(output, spec)


def lock_path(output: Path) -> Path:
    target = _real(output)
    return target.parent / f".{target.name}.aed-lock"


@contextmanager
def output_lock(output: Path) -> Iterator[None]:
    """Exclusive, non-blocking: a second writer is refused at once, naming the holder. The kernel releases the
    lock when its holder dies, even by SIGKILL, so a stale lock file never blocks anyone."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            raise OutputLocked(
                f"{output}: another process (pid {holder}) is writing it; wait for it to end or stop it"
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{os.getpid()}"


def _remove_leftovers(target: Path) -> None:
    """Temporary and set-aside siblings of earlier runs killed by SIGKILL (called with the lock held, so none
    of them belongs to a live writer)."""
    for kind in _HIDDEN_KINDS:
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.{kind}-*"):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises Interrupted instead of killing the process, so `finally` and `except` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum: int, _frame: object) -> None:
        if os.getpid() != owner:  # a forked worker inherited the handler: die as SIGTERM would
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _swap_in(staging: Path, target: Path) -> None:
    """Old aside, new in, with SIGINT / SIGTERM held back (a signal then arrives once the new output is in)."""
    aside = _sibling(target, "aed-old") if target.exists() else None
    try:
        with _signals_blocked():
            try:
                if aside is not None:
                    os.rename(target, aside)
            except OSError as error:  # e.g. a mount point (EBUSY): the folder itself cannot be moved
                raise OutputError(
                    f"{target}: cannot be replaced ({error.strerror}); give a folder inside it instead"
                ) from None
            try:
                os.rename(staging, target)
            except BaseException:
                if aside is not None:
                    os.rename(aside, target)
                raise
    finally:
        if aside is not None and aside.exists():
            shutil.rmtree(aside, ignore_errors=True)


def _interrupted_note(output: Path, error: BaseException) -> None:
    if isinstance(error, KeyboardInterrupt | Interrupted):
        print(f"{output}: interrupted; the partial output was removed, the old one kept", file=sys.stderr)


@contextmanager
def replacing(
    output: Path,
    spec: OutputSpec,
    sources: dict[str, Path | None] | None = None,
    params: Any = None,
) -> Iterator[Path]:
    """Yield an empty temporary folder to write the step's output in; on success it replaces `output`
    atomically (with the marker and manifest added), on any failure it is removed and `output` is untouched."""
    check_output(output, spec, sources)
    target = _real(output)
    with output_lock(target):
        _remove_leftovers(target)
        staging = _sibling(target, "aed-tmp")
        staging.mkdir()
        try:
            with _sigterm_unwinds():
                yield staging
                if spec.manifest and any(staging.iterdir()):  # an empty folder is anyone's to replace
                    write_manifest(staging, spec.step, params)
                check_replaceable(target, spec)  # nothing else writes it meanwhile, but a user could have
                _swap_in(staging, target)
        except BaseException as error:
            if staging.exists():  # else the new output is in place and a signal arrived just after
                shutil.rmtree(staging, ignore_errors=True)
                _interrupted_note(output, error)
            raise


@contextmanager
def publishing(folder: Path) -> Iterator[Path]:
    """For files a step adds to a folder shared with other steps: yield an empty temporary folder; on success
    each file in it is moved to the same relative path in `folder` (the batch with SIGINT / SIGTERM blocked),
    on failure nothing in `folder` changes."""
    target = _real(folder)
    with output_lock(target):
        _remove_leftovers(target)
        staging = _sibling(target, "aed-tmp")
        staging.mkdir(parents=True)
        published = False
        try:
            with _sigterm_unwinds():
                yield staging
                files = _files(staging)
                for relative in files:
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                with _signals_blocked():
                    for relative in files:
                        os.replace(staging / relative, target / relative)
                    published = True  # a signal held back arrives after this block
        except BaseException as error:
            if not published:
                _interrupted_note(folder, error)
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.name != MARKER)


def write_manifest(folder: Path, step: str, params: Any = None) -> dict:
    files = {
        name: {"size": (folder / name).stat().st_size, "sha256": sha256_file(folder / name)}
        for name in _files(folder)
    }
    manifest = {
        "step": step,
        "params_sha256": None if params is None else params_sha256(params),
        "files": files,
    }
    atomic_write_text(folder / MARKER, json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_manifest(folder: Path, step: str) -> dict:
    """The folder's manifest, after checking that it names `step` and that the folder holds exactly its files
    with their sizes and sha256; any difference is refused with one line."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError) as error:
        raise ManifestMismatch(
            f"{folder}: no readable {MARKER} manifest ({type(error).__name__}); it was not written (completely) "
            f"by `aed {step}`: run `aed {step}` again"
        ) from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("step") != step:
        raise ManifestMismatch(f"{folder / MARKER}: not a manifest of `aed {step}`")
    present = set(_files(folder))
    problems = [f"{name} missing" for name in sorted(set(files) - present)]
    problems += [f"{name} not in the manifest" for name in sorted(present - set(files))]
    for name in sorted(present & set(files)):
        expected = files[name] if isinstance(files[name], dict) else {}
        if (folder / name).stat().st_size != expected.get("size"):
            problems.append(f"{name} has another size")
        elif sha256_file(folder / name) != expected.get("sha256"):
            problems.append(f"{name} has another sha256")
    if problems:
        shown = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
        raise ManifestMismatch(f"{folder}: files do not match its manifest: {shown}; run `aed {step}` again")
    return manifest
