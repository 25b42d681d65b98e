"""Run the KFP pipeline on this machine with kfp.local's SubprocessRunner, in the current environment.

kfp.local streams every task's output into one console and, after a failure, names the task but not where its
log went; it also keeps launching independent tasks. This module wraps the task launcher so that each task's
output is also written to `<task dir>/task.log`, tasks get a wall-clock limit, and after the first failure no
further task starts: the run stops and the error names the failed task and its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_NAME = "task.log"
TAIL_LINES = 15


class LocalRunError(RuntimeError):
    """The local run failed; the message names the failed task and its log."""

    def __init__(self, message: str, run: LocalRun | None = None) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class TaskRecord:
    task_dir: Path
    seconds: float
    returncode: int
    skipped: bool = False

    @property
    def name(self) -> str:
        return self.task_dir.name

    @property
    def log(self) -> Path:
        return self.task_dir / LOG_NAME


@dataclass
class LocalRun:
    run_dir: Path | None
    tasks: list[TaskRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.returncode != 0 and not t.skipped]


def _task_dir(full_command: list[str]) -> Path | None:
    """The task's output directory, from the executor input JSON that follows --executor_input."""
    for flag, value in zip(full_command, full_command[1:], strict=False):
        if flag == "--executor_input":
            try:
                output_file = json.loads(value)["outputs"]["outputFile"]
            except (ValueError, KeyError, TypeError):
                return None
            return Path(output_file).parent
    return None


class _Launcher:
    """Replacement for kfp.local.subprocess_task_handler.run_local_subprocess (same signature)."""

    def __init__(self, run: LocalRun, task_timeout_s: float, drop_environment: tuple[str, ...] = ()) -> None:
        self.run = run
        self.task_timeout_s = task_timeout_s
        self.drop_environment = drop_environment
        self.lock = threading.Lock()
        self.stopped = False

    def __call__(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        task_dir = _task_dir(full_command) or Path("unknown-task")
        with self.lock:
            if self.stopped:
                # Refuse to start anything after a failure, so that nothing downstream (promote) can run.
                self.run.tasks.append(TaskRecord(task_dir, 0.0, 1, skipped=True))
                return 1
        task_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(env_vars or {}), "PYTHONUNBUFFERED": "1"}
        for name in self.drop_environment:  # already in the run's params: a task must not read them twice
            env.pop(name, None)
        start = time.monotonic()
        returncode = self._execute(full_command, env, task_dir / LOG_NAME)
        record = TaskRecord(task_dir, time.monotonic() - start, returncode)
        with self.lock:
            self.run.tasks.append(record)
            if returncode != 0:
                self.stopped = True
        return returncode

    def _execute(self, full_command: list[str], env: dict[str, str], log_path: Path) -> int:
        with (
            open(log_path, "w") as log,
            subprocess.Popen(
                full_command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                env=env,
                start_new_session=True,  # its own process group: the timeout kills `sh -c` and the python under it
            ) as process,
        ):
            killed = threading.Event()

            def kill() -> None:
                killed.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

            timer = threading.Timer(self.task_timeout_s, kill)
            timer.start()
            try:
                assert process.stdout is not None
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                    log.write(line)
                returncode = process.wait()
            except BaseException:
                # Ctrl-C reaches only our process group: take the task's group down with us.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                raise
            finally:
                timer.cancel()
            if killed.is_set():
                log.write(f"\n[aed] task killed after the {self.task_timeout_s:.0f} s limit\n")
            return returncode


@contextlib.contextmanager
def _patched_launcher(launcher: Callable[..., int]) -> Iterator[None]:
    from kfp.local import subprocess_task_handler

    original = subprocess_task_handler.run_local_subprocess
    subprocess_task_handler.run_local_subprocess = launcher
    try:
        yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _failure_message(run: LocalRun, kfp_message: str) -> str:
    if not run.failed:
        return f"local pipeline run failed: {kfp_message}"
    first = run.failed[0]
    skipped = [t.name for t in run.tasks if t.skipped]
    parts = [
        f"task '{first.name}' failed (exit code {first.returncode}); log: {first.log}",
        f"  last lines of the log:\n{_tail(first.log)}",
    ]
    if skipped:
        parts.append(f"  not started after the failure: {', '.join(sorted(set(skipped)))}")
    return "\n".join(parts)


def run_local(
    pipeline_func: Any,
    arguments: dict[str, Any],
    pipeline_root: Path,
    task_timeout_s: float = 3600.0,
    cache: bool = False,
    drop_environment: tuple[str, ...] = (),
) -> LocalRun:
    """Run `pipeline_func(**arguments)` with kfp.local; raise LocalRunError naming the failed task and its log.

    With `cache`, tasks whose caching is enabled reuse the outputs of an earlier run under the same root when
    their inputs are unchanged (kfp.local's file cache in <root>/.cache); hil, gate and promote always run.
    The environment variables in `drop_environment` are removed from the tasks' environment.
    """
    from kfp import local

    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # SubprocessRunner(use_venv=False) launches `python3` from PATH: make it this environment's interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=cache,
        cache_root=str(pipeline_root / ".cache") if cache else None,
    )
    run = LocalRun(run_dir=None)
    start = time.monotonic()
    launcher = _Launcher(run, task_timeout_s, drop_environment)
    with _patched_launcher(launcher), warnings.catch_warnings():
        # Our images are not named "python*"; locally the image is ignored anyway.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # Resources and display names matter on a cluster only; kfp.local warns once per task.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            pipeline_func(**arguments)
        except RuntimeError as error:
            run.seconds = time.monotonic() - start
            run.run_dir = _run_dir(run, pipeline_root)
            raise LocalRunError(_failure_message(run, _plain(str(error))), run) from None
    run.seconds = time.monotonic() - start
    run.run_dir = _run_dir(run, pipeline_root)
    return run


def _run_dir(run: LocalRun, pipeline_root: Path) -> Path | None:
    """<pipeline_root>/<pipeline>-<timestamp>/: the first path component below the root of any task dir."""
    for task in run.tasks:
        with contextlib.suppress(ValueError):
            return pipeline_root / task.task_dir.relative_to(pipeline_root).parts[0]
    return None


def _plain(text: str) -> str:
    """Strip kfp's ANSI colour codes from a message."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
