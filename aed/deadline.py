"""One overall deadline per operation, and subprocesses that cannot outlive theirs.

A per-read or per-attempt time-out does not bound an operation: a peer that answers a little at a time, or a loop
that restarts its wait, can keep it going forever. A `Deadline` is started once, with `time.monotonic()`, and every
wait inside the operation is given only what `remaining()` leaves. Time-out messages state the time actually
waited (measured) next to the limit, so that a doubled or missed deadline shows in the message itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field

# after SIGTERM to an expired process group, how long it may take to exit before SIGKILL
TERMINATE_GRACE_S = 0.2
# after killing the group, how long to wait for the pipes to close (a process that left the group may hold them)
DRAIN_S = 1.0


class DeadlineExceeded(TimeoutError):
    """An operation ran past its overall deadline; `waited_s` is measured, `limit_s` configured."""

    def __init__(self, message: str, waited_s: float, limit_s: float) -> None:
        super().__init__(message)
        self.waited_s = waited_s
        self.limit_s = limit_s


@dataclass
class Deadline:
    """`limit_s` seconds from creation, measured on the monotonic clock."""

    limit_s: float
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        # NaN compares false with everything: such a deadline would never expire
        if not math.isfinite(self.limit_s) or self.limit_s < 0:
            raise ValueError(f"a time-out must be a finite number of seconds >= 0, got {self.limit_s!r}")

    @classmethod
    def of(cls, timeout: float | Deadline) -> Deadline:
        """A deadline passed down as is, or a new one started now from a number of seconds."""
        return timeout if isinstance(timeout, Deadline) else cls(float(timeout))

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        """Seconds left, never negative (0.0 once expired)."""
        return max(self.limit_s - self.elapsed(), 0.0)

    def expired(self) -> bool:
        return self.elapsed() >= self.limit_s

    def describe(self) -> str:
        """'timed out after 2.01 s (limit 2 s)': the measured wait and the configured limit."""
        return f"timed out after {self.elapsed():.2f} s (limit {self.limit_s:g} s)"

    def error(self, what: str) -> DeadlineExceeded:
        """The exception to raise on expiry, its message naming what was awaited."""
        waited = self.elapsed()
        return DeadlineExceeded(f"{what}: {self.describe()}", waited, self.limit_s)

    def check(self, what: str) -> None:
        """Raise DeadlineExceeded if the deadline has passed."""
        if self.expired():
            raise self.error(what)


class ProcessTimeout(DeadlineExceeded):
    """A subprocess ran past its deadline; its whole process group was killed. Carries its output so far."""

    def __init__(self, message: str, waited_s: float, limit_s: float, output: str) -> None:
        super().__init__(message, waited_s, limit_s)
        self.output = output


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the whole group has already exited
        os.killpg(pgid, signum)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM to the whole group (the tool and every child it started), SIGKILL to whatever is left."""
    pgid = process.pid  # start_new_session: the child leads its own group
    _signal_group(pgid, signal.SIGTERM)
    grace = Deadline(TERMINATE_GRACE_S)
    while not grace.expired():
        process.poll()  # reap the leader so that it does not count as alive
        if not _group_alive(pgid):
            return
        time.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)


def run_with_deadline(
    argv: list[str],
    timeout: float | Deadline,
    what: str,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (no shell) in its own process group, capturing text output; on expiry kill the whole group and
    raise ProcessTimeout naming `what`, the time waited and the limit. OSError (not found, not executable)
    propagates."""
    deadline = Deadline.of(timeout)
    process = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=env,
        cwd=cwd,
        start_new_session=True,  # its own group, so that expiry reaches the grandchildren too
    )
    try:
        stdout, stderr = process.communicate(timeout=deadline.remaining())
    except subprocess.TimeoutExpired:
        waited = deadline.elapsed()
        _kill_group(process)
        try:
            stdout, stderr = process.communicate(timeout=DRAIN_S)
        except subprocess.TimeoutExpired:  # a descendant left the group and holds the pipes: stop reading
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
            process.wait()
            stdout, stderr = "", ""
        message = (
            f"{what}: timed out after {waited:.2f} s (limit {deadline.limit_s:g} s); process group killed"
        )
        raise ProcessTimeout(message, waited, deadline.limit_s, (stdout or "") + (stderr or "")) from None
    except BaseException:  # KeyboardInterrupt or similar: leave nothing running behind us
        _kill_group(process)
        process.wait()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
