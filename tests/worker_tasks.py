"""Tasks for tests/test_workers.py, importable by worker processes (a test module's own functions would drag
pytest into every worker)."""

from __future__ import annotations

import os
import threading
import time

# held by a thread of the test process while it maps: a forked worker would inherit it held
SHARED_LOCK = threading.Lock()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def square_under_lock(value: int) -> int:
    with SHARED_LOCK:
        return value * value


def exit_now(code: int) -> int:
    os._exit(code)


def write_pid_then_sleep(path: str) -> int:
    """Says it started (its pid in `path`), then works for a minute: a task an interrupt must cut short."""
    with open(path, "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
    return os.getpid()


def fail_if_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"negative: {value}")
    time.sleep(value)
    return value
