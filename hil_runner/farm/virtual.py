"""A fleet of virtual boards as child processes (one per board, each on its own pty), with an inventory.

Used by the embedded default (`hil.farm: virtual`), the labgrid integration test and the benchmark. Processes are
always terminated on exit, killed if they do not stop.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.errors import HilError

START_TIMEOUT = 120.0


@dataclass
class VirtualProcess:
    name: str
    process: subprocess.Popen
    descriptor: str


def start_vboard(
    name: str,
    profile: str,
    slot: Path | None = None,
    model: Path | None = None,
    tcp: str | None = None,
    baud: int | None = None,
    faults: list[str] | None = None,
    timeout: float = START_TIMEOUT,
) -> VirtualProcess:
    return wait_ready(spawn_vboard(name, profile, slot, model, tcp, baud, faults), timeout)


def spawn_vboard(
    name: str,
    profile: str,
    slot: Path | None = None,
    model: Path | None = None,
    tcp: str | None = None,
    baud: int | None = None,
    faults: list[str] | None = None,
) -> tuple[str, subprocess.Popen]:
    argv = [sys.executable, "-m", "hil_runner.vboard", "--profile", profile]
    argv += ["--slot", str(slot)] if slot else []
    argv += ["--model", str(model)] if model else []
    argv += ["--tcp", tcp] if tcp else ["--pty"]
    argv += ["--baud", str(baud)] if baud else []
    for fault in faults or []:
        argv += ["--fault", fault]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return name, subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True, env=env)


def wait_ready(spawned: tuple[str, subprocess.Popen], timeout: float = START_TIMEOUT) -> VirtualProcess:
    """Wait for the board's `READY <descriptor>` line; a board that exits or stays silent is stopped and reported."""
    name, process = spawned
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            stop_process(process)
            raise HilError(
                f"virtual board {name} did not start within {timeout:.0f} s (exit {process.returncode})"
            )
        ready, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
        if ready:
            line = process.stdout.readline()
            if line.startswith("READY "):
                return VirtualProcess(name, process, line.split()[1])


def stop_process(process: subprocess.Popen, grace: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)
    if process.stdout is not None:
        process.stdout.close()


@dataclass
class VirtualFleet:
    boards: list[Board] = field(default_factory=list)
    processes: list[VirtualProcess] = field(default_factory=list)

    def close(self) -> None:
        for virtual in self.processes:
            stop_process(virtual.process)


@contextlib.contextmanager
def virtual_fleet(
    profile: str,
    count: int,
    workdir: Path,
    baud: int | None = None,
    faults: dict[int, list[str]] | None = None,
    prefix: str = "vboard",
    link: str = "pty",
) -> Iterator[VirtualFleet]:
    """`count` virtual boards of one profile, each with a flash slot under workdir; faults per board index.
    link: "pty" (serial: descriptors, the default) or "tcp" (socket: on 127.0.0.1, e.g. where no /dev/pts exists)."""
    if link not in ("pty", "tcp"):
        raise ValueError(f"virtual board link {link!r}: expected 'pty' or 'tcp'")
    fleet = VirtualFleet()
    spawned: list[tuple[str, subprocess.Popen]] = []
    try:
        for index in range(count):  # start them all, then wait: the boards load in parallel
            name = f"{prefix}-{profile}-{index + 1}"
            spawned.append(
                spawn_vboard(
                    name,
                    profile,
                    slot=Path(workdir) / f"{name}.tflite",
                    baud=baud,
                    faults=(faults or {}).get(index),
                    tcp="127.0.0.1:0" if link == "tcp" else None,
                )
            )
        for item in spawned:
            virtual = wait_ready(item)
            fleet.processes.append(virtual)
            fleet.boards.append(
                Board(
                    name=virtual.name,
                    profile=get_profile(profile),
                    port=virtual.descriptor,
                    flash="none",
                    virtual=True,
                    slot=Path(workdir) / f"{virtual.name}.tflite",
                )  # fmt: skip
            )
        yield fleet
    finally:
        started = {v.process for v in fleet.processes}
        for _, process in spawned:
            if process not in started:
                stop_process(process)
        fleet.close()
