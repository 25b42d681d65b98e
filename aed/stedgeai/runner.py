"""Run `stedgeai` as a subprocess under a deadline (its whole process group is killed on expiry); keep its whole log,
show its tail on failure."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from aed.deadline import ProcessTimeout, run_with_deadline
from aed.stedgeai.errors import StedgeaiError

TAIL_LINES = 25
_VERSION = re.compile(r"ST Edge AI Core v?(\d+\.\d+\.\d+[\w.\-]*(?: [0-9a-f]+)?)", re.IGNORECASE)


@dataclass
class RunResult:
    argv: list[str]
    returncode: int
    duration_s: float
    log_path: Path
    output: str


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_stedgeai(
    argv: list[str], log_path: Path, timeout_s: float, env: dict[str, str] | None = None
) -> RunResult:
    """Run the tool; raise StedgeaiError (with the tail of its log) on a non-zero exit or a timeout."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = f"stedgeai {argv[1] if len(argv) > 1 else ''}".rstrip()
    try:
        completed = run_with_deadline(argv, timeout_s, command, env=env)
    except ProcessTimeout as error:
        log_path.write_text(error.output)
        raise StedgeaiError(
            f"{error} (log: {log_path}); last output:\n{_tail(error.output) or '(no output)'}"
        ) from error
    except OSError as error:
        raise StedgeaiError(f"{argv[0]}: cannot run stedgeai ({error})") from error
    output = (completed.stdout or "") + (completed.stderr or "")
    log_path.write_text(output)
    result = RunResult(argv, completed.returncode, time.monotonic() - started, log_path, output)
    if completed.returncode != 0:
        raise StedgeaiError(
            f"stedgeai {argv[1] if len(argv) > 1 else ''} exited with code {completed.returncode} "
            f"(log: {log_path}); last output:\n{_tail(output) or '(no output)'}"
        )
    return result


def parse_version(text: str) -> str | None:
    """Version from `stedgeai --version` or a report's first line, e.g. '3.0.0-20426 123672867'.

    Lenient on purpose: the component list after the version has changed between releases."""
    match = _VERSION.search(text)
    return match.group(1).strip() if match else None


def tool_version(tool: Path, timeout_s: float = 60.0) -> str:
    try:
        completed = run_with_deadline([str(tool), "--version"], timeout_s, f"{tool} --version")
    except (ProcessTimeout, OSError) as error:
        raise StedgeaiError(f"{tool}: `stedgeai --version` failed ({error})") from error
    text = (completed.stdout or "") + (completed.stderr or "")
    version = parse_version(text)
    if completed.returncode != 0 or version is None:
        raise StedgeaiError(
            f"{tool}: `stedgeai --version` gave no ST Edge AI Core version (exit {completed.returncode}); "
            f"output:\n{_tail(text) or '(no output)'}"
        )
    return version
