"""Overall deadlines of external tools: `stedgeai` and the flash tools are stand-ins written here that never finish
and start a child that ignores SIGTERM. Each call must fail within 20 % of its deadline, say how long it waited,
and leave no process behind (the whole process group is killed). The labgrid coordinator is a socket that never
answers."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aed.deadline import Deadline, DeadlineExceeded, ProcessTimeout, run_with_deadline
from aed.stedgeai.errors import StedgeaiError
from aed.stedgeai.runner import run_stedgeai, tool_version
from hil_runner.boards.flash import CubeProgrammer, FlashError, FlashTarget, OpenOCD, PyOCD
from hil_runner.boards.profiles import get_profile
from hil_runner.farm.labgrid import LabgridError, LabgridFarm

pytestmark = pytest.mark.timeout(120)  # a regression that hangs fails here, not at the suite's 900 s
DEADLINE_S = 2.0

# Prints a line, starts a child that ignores SIGTERM (and shares its stdout), records both pids, never ends.
STAND_IN = """#!{python}
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "a") as pids:
    pids.write(f"{{os.getpid()}}\\\\n")
time.sleep(600)
''', {pids!r}])
with open({pids!r}, "a") as pids:
    pids.write(f"{{os.getpid()}}\\n")
print("working on it...", flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Factory of never-ending executables named as asked, in tmp_path/bin; kills leftovers at teardown."""
    pids = tmp_path / "pids.txt"
    made: list[Path] = []

    def make(name: str) -> Path:
        path = tmp_path / "bin" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(STAND_IN.format(python=sys.executable, pids=str(pids)))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        made.append(path)
        return path

    make.pids = pids  # type: ignore[attr-defined]
    yield make
    for pid in recorded(pids):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def recorded(pids: Path) -> list[int]:
    return [int(line) for line in pids.read_text().split()] if pids.exists() else []


def assert_bounded_and_clean(call: Callable[[], object], error: type[Exception], pids: Path) -> str:
    started = time.monotonic()
    with pytest.raises(error) as raised:
        call()
    elapsed = time.monotonic() - started
    assert abs(elapsed - DEADLINE_S) <= 0.2 * DEADLINE_S, f"waited {elapsed:.2f} s for {DEADLINE_S} s"
    started_pids = recorded(pids)
    assert len(started_pids) == 2, "the stand-in and its child both started"
    reaped = Deadline(2.0)  # the killed processes may take a moment to disappear from /proc
    while any(alive(pid) for pid in started_pids) and not reaped.expired():
        time.sleep(0.05)
    assert not [pid for pid in started_pids if alive(pid)], "a process outlived the deadline"
    message = str(raised.value)
    match = re.search(r"timed out after (\d+\.\d+) s \(limit ([\d.]+) s\)", message)
    assert match, message
    assert abs(float(match[1]) - DEADLINE_S) <= 0.2 * DEADLINE_S and float(match[2]) == DEADLINE_S
    return message


def test_deadline_measures_remaining_and_expiry() -> None:
    deadline = Deadline(0.2)
    assert 0.0 < deadline.remaining() <= 0.2 and not deadline.expired()
    time.sleep(0.25)
    assert deadline.expired() and deadline.remaining() == 0.0
    with pytest.raises(
        DeadlineExceeded, match=r"the thing: timed out after 0\.\d\d s \(limit 0.2 s\)"
    ) as raised:
        deadline.check("the thing")
    assert isinstance(raised.value, TimeoutError) and raised.value.limit_s == 0.2
    assert Deadline.of(deadline) is deadline and Deadline.of(3).limit_s == 3.0


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -1.0])
def test_a_deadline_that_could_never_expire_is_refused(limit: float) -> None:
    with pytest.raises(ValueError, match="a time-out must be a finite number of seconds >= 0"):
        Deadline(limit)


def test_run_with_deadline_kills_the_whole_group(stand_in) -> None:
    tool = stand_in("tool")
    message = assert_bounded_and_clean(
        lambda: run_with_deadline([str(tool)], DEADLINE_S, "the tool"), ProcessTimeout, stand_in.pids
    )
    assert message.startswith("the tool: timed out after")


def test_run_with_deadline_keeps_the_output_so_far(stand_in) -> None:
    tool = stand_in("tool")
    with pytest.raises(ProcessTimeout) as raised:
        run_with_deadline([str(tool)], 1.0, "the tool")
    assert "working on it..." in raised.value.output


def test_stedgeai_generate_is_bounded(stand_in, tmp_path: Path) -> None:
    tool = stand_in("stedgeai")
    log = tmp_path / "tool.log"
    message = assert_bounded_and_clean(
        lambda: run_stedgeai([str(tool), "generate"], log, timeout_s=DEADLINE_S), StedgeaiError, stand_in.pids
    )
    assert message.startswith("stedgeai generate: timed out after") and "working on it..." in message
    assert "working on it..." in log.read_text()


def test_stedgeai_version_probe_is_bounded(stand_in) -> None:
    tool = stand_in("stedgeai")
    assert_bounded_and_clean(lambda: tool_version(tool, timeout_s=DEADLINE_S), StedgeaiError, stand_in.pids)


def test_labgrid_coordinator_call_is_bounded() -> None:
    """labgrid's Python client against a coordinator that accepts the connection and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        farm = LabgridFarm(address, wait_timeout=DEADLINE_S, call_timeout=DEADLINE_S)
        started = time.monotonic()
        with pytest.raises(LabgridError) as raised, farm.lease("b-u585i-iot02a"):
            pass
        elapsed = time.monotonic() - started
    assert abs(elapsed - DEADLINE_S) <= 0.2 * DEADLINE_S, f"waited {elapsed:.2f} s for {DEADLINE_S} s"
    assert str(raised.value).startswith(f"labgrid coordinator {address}: connect: timed out after")


@pytest.mark.parametrize("flash_strategy", [CubeProgrammer, OpenOCD, PyOCD], ids=lambda cls: cls.name)
def test_flash_tool_is_bounded(
    stand_in, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flash_strategy
) -> None:
    flasher = flash_strategy()
    stand_in(flasher.tool)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00" * 64)
    target = FlashTarget(board="b0", profile=get_profile("b-u585i-iot02a"))
    message = assert_bounded_and_clean(
        lambda: flasher.flash(image, target, timeout=DEADLINE_S), FlashError, stand_in.pids
    )
    assert message.startswith(f"board b0: {flasher.name}: timed out after")
