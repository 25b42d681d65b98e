"""aed.workers.ordered_map: results in order, a file that hangs or kills its worker stops the map with an error
naming it, no worker outlives the map, and a lock held by a thread of the caller cannot hang a worker.
aed.workers.run_all (training's split workers): a failing task is named, and SIGTERM kills every worker at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aed.deadline import DeadlineExceeded
from aed.workers import WorkerDied, ordered_map, run_all
from tests import worker_tasks


def _gone(pid: int, within_s: float = 5.0) -> bool:
    stop = time.monotonic() + within_s
    while time.monotonic() < stop:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("jobs", [1, 2, 0])
def test_results_come_in_input_order(jobs: int) -> None:
    values = list(range(23))
    assert list(ordered_map(worker_tasks.square_under_lock, values, jobs, str)) == [v * v for v in values]


def test_work_runs_in_other_processes_only_with_more_than_one_job() -> None:
    assert set(ordered_map(worker_tasks.pid_after, [0.0] * 4, 1, str)) == {os.getpid()}
    assert os.getpid() not in set(ordered_map(worker_tasks.pid_after, [0.0] * 4, 2, str))


def test_a_lock_held_by_a_thread_of_the_caller_does_not_hang_the_workers() -> None:
    # The hang this guards against: a fork taken while another thread held a lock (gRPC's, a labgrid loop's).
    release = threading.Event()
    holder = threading.Thread(target=lambda: (worker_tasks.SHARED_LOCK.acquire(), release.wait()))
    holder.start()
    try:
        values = list(range(8))
        squares = list(ordered_map(worker_tasks.square_under_lock, values, 2, str, timeout_s=60))
    finally:
        release.set()
        holder.join()
        worker_tasks.SHARED_LOCK.release()
    assert squares == [v * v for v in values]


def test_a_task_past_its_time_limit_names_its_file_and_leaves_no_worker() -> None:
    started = time.monotonic()
    results = ordered_map(
        worker_tasks.pid_after, [0.0, 0.0, 60.0, 0.0], 2, lambda s: f"clip-{s:.0f}.wav", 1.5
    )
    pids = {next(results), next(results)}
    with pytest.raises(DeadlineExceeded, match=r"^clip-60\.wav: no result after 2 s \(the per-file limit\)"):
        next(results)
    assert time.monotonic() - started < 30
    assert all(_gone(pid) for pid in pids)


def test_a_worker_that_dies_stops_the_map_with_the_file_it_was_on() -> None:
    with pytest.raises(WorkerDied, match=r"^bad\.flac: its worker process died before returning"):
        list(ordered_map(worker_tasks.exit_now, [3, 3], 2, lambda _: "bad.flac", 30))


def test_a_consumer_that_stops_early_leaves_no_worker() -> None:
    results = ordered_map(worker_tasks.pid_after, [0.0, 0.0] + [0.5] * 20, 2, str)
    pids = {next(results), next(results)}
    results.close()
    assert all(_gone(pid) for pid in pids)


def test_run_all_names_the_failing_task_and_keeps_input_order() -> None:
    assert run_all(worker_tasks.fail_if_negative, [0.2, 0.0, 0.1], 2, str) == [0.2, 0.0, 0.1]
    with pytest.raises(RuntimeError, match=r"^split -1\.0 failed: negative: -1\.0"):
        run_all(worker_tasks.fail_if_negative, [0.0, -1.0, 0.0], 2, lambda v: f"split {v}")


def test_sigterm_stops_run_all_and_kills_its_workers_at_once(tmp_path: Path) -> None:
    """As `aed train` runs its splits: SIGTERM unwinds the caller (aed.outputs), which must not wait for the
    running splits (before: a killed `aed train` trained on for minutes in its workers)."""
    marks = [tmp_path / "a.pid", tmp_path / "b.pid"]
    script = tmp_path / "caller.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from aed.outputs import _sigterm_unwinds\n"  # the handler a step's output writing installs
        "from aed.workers import run_all\n"
        "from tests import worker_tasks\n"
        "if __name__ == '__main__':\n"
        "    with _sigterm_unwinds():\n"
        f"        run_all(worker_tasks.write_pid_then_sleep, {[str(m) for m in marks]!r}, 2, str)\n"
    )
    caller = subprocess.Popen([sys.executable, str(script)])
    workers: list[int] = []
    try:
        stop = time.monotonic() + 60
        while not all(m.is_file() and m.read_text() for m in marks) and time.monotonic() < stop:
            assert caller.poll() is None, "the caller ended before its workers started"
            time.sleep(0.1)
        workers = [int(m.read_text()) for m in marks]
        caller.send_signal(signal.SIGTERM)
        started = time.monotonic()
        caller.wait(timeout=30)
        assert time.monotonic() - started < 10  # not the workers' 60 s
        assert caller.returncode != 0
        assert all(_gone(pid) for pid in workers)
    finally:  # a failing run must not leave its processes behind
        caller.kill()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
