"""Per-file work (decoding, checking, patching) in worker processes that can neither hang nor outlive the step
(ordered_map), and long tasks such as training splits that stop with their caller (run_all).

Why not fork: the calling process may run threads (gRPC's, a labgrid session's event loop, tqdm's monitor). A
fork taken while one of them holds a lock gives a worker that waits on that lock forever; a pending SIGTERM is
never handled there, and the pool's shutdown then joins it forever. Workers here come from a forkserver (a fresh,
single-threaded process), take SIGTERM's default action, and are killed when the step fails or stops early.

Time-outs: each result is awaited at most `timeout_s`; a file that takes longer stops the map with an error that
names it. A worker that dies (out of memory, a crash in a decoder) stops it at once, naming the file it was on.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any, TypeVar

from aed.deadline import DeadlineExceeded

T = TypeVar("T")
R = TypeVar("R")

# generous: decoding and patching an hour-long recording takes well under a minute
FILE_TIMEOUT_S = 600.0
# tasks queued per worker: enough to keep every worker busy, few enough to bound the results held in memory
IN_FLIGHT_PER_WORKER = 4
# after SIGKILL, how long a worker may take to be reaped
REAP_S = 5.0


class WorkerDied(RuntimeError):
    """A worker process ended without returning its result."""


def ordered_map(
    function: Callable[[T], R],
    tasks: Iterable[T],
    jobs: int,
    describe: Callable[[T], str],
    timeout_s: float = FILE_TIMEOUT_S,
    initializer: Callable[[], None] | None = None,
    preload: Sequence[str] = (),
) -> Iterator[R]:
    """function(task) for each task, in input order. jobs=0 uses every core; with one job (or one task) the work
    runs in this process, without a time-out. `describe(task)` names a task in errors (its file); `preload` are
    modules the forkserver imports once, so that each worker does not import them again."""
    tasks = list(tasks)
    workers = min(jobs or os.cpu_count() or 1, len(tasks))
    if workers <= 1:
        yield from map(function, tasks)
        return
    context = get_context("forkserver")
    context.set_forkserver_preload(list(preload))
    pool = ProcessPoolExecutor(workers, context, _start_worker, (initializer,))
    waiting = iter(tasks)
    pending: deque[tuple[T, Future[R]]] = deque()

    def submit(count: int) -> None:
        pending.extend((task, pool.submit(function, task)) for task in itertools.islice(waiting, count))

    try:
        submit(IN_FLIGHT_PER_WORKER * workers)
        while pending:
            task, future = pending.popleft()
            result = _result(future, describe(task), timeout_s)
            submit(1)
            yield result
    except BaseException:  # a failure, a time-out, or the consumer stopping early: no worker may live on
        kill_pool(pool)
        raise
    pool.shutdown(wait=True)


def _result(future: Future[R], name: str, timeout_s: float) -> R:
    try:
        return future.result(timeout=timeout_s)
    except FutureTimeout:
        raise DeadlineExceeded(
            f"{name}: no result after {timeout_s:.0f} s (the per-file limit); its worker was stopped",
            timeout_s,
            timeout_s,
        ) from None
    except BrokenProcessPool:
        raise WorkerDied(
            f"{name}: its worker process died before returning (killed, e.g. out of memory, or crashed in the "
            "audio decoder); no file after it was processed"
        ) from None


def _start_worker(initializer: Callable[[], None] | None) -> None:
    # SIGTERM ignored or blocked in the process that started the forkserver would be inherited: restore both
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    if initializer is not None:
        initializer()


def run_all(
    function: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    describe: Callable[[T], str],
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> list[R]:
    """function(task) for every task in `workers` spawned processes (long tasks that load heavy libraries, such
    as a training split), results in input order, no time-out. A task that fails stops the run: tasks not started
    are cancelled, the running ones finish, and a RuntimeError naming the task (`describe`) is raised. An
    interrupt (SIGTERM unwound by aed.outputs, Ctrl-C) kills every worker at once: no task goes on after its
    caller stopped."""
    pool = ProcessPoolExecutor(workers, get_context("spawn"), initializer, initargs)
    try:
        futures = [pool.submit(function, task) for task in tasks]
        results = []
        for task, future in zip(tasks, futures, strict=True):
            try:
                results.append(future.result())
            except Exception as error:
                raise RuntimeError(f"{describe(task)} failed: {error}") from error
    except Exception:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    except BaseException:
        kill_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


def kill_pool(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop a running worker before Python 3.14 (kill_workers)
    processes: list[Any] = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        process.kill()
    for process in processes:
        process.join(REAP_S)
    pool.shutdown(wait=False, cancel_futures=True)
