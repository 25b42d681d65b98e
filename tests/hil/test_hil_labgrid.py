"""labgrid integration: a real labgrid-coordinator and labgrid-exporter on 127.0.0.1 (from the venv's bin) export two
virtual boards (TCP, NetworkSerialPort raw); two HIL jobs run in parallel, each reserving, acquiring, using and
releasing its own place. Place u585-a also exports a USB debugger (NetworkUSBDebugger): its board starts empty and
only the flash tool stand-in written here (an "openocd" that records its argv and programs the image into the
board's flash slot) can put the model on it, so a job that passes there was flashed before the board was used.
Every process started here is stopped in teardown."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil_runner.farm.coordinator import CoordinatorSession, LabgridError
from hil_runner.farm.labgrid import LabgridFarm
from hil_runner.farm.virtual import start_vboard, stop_process
from hil_runner.job import JobConfig, load_eval_set, run_job
from hil_runner.protocol.host import Timeouts

BIN = Path(sys.executable).parent
PROFILE = "b-u585i-iot02a"
USB_PATH = "1-2.3"  # where the exported ST-LINK sits on the exporter host

# Records its argv (one JSON line per call), then "programs" the image named in `program <image> ...` into the
# virtual board's flash slot (copy + rename: all or nothing) and, like `verify reset`, returns once the board has
# booted it (the board writes the image's sha256 into <slot>.loaded).
FLASH_STAND_IN = """#!{python}
import hashlib, json, os, shutil, sys, time
with open({calls!r}, "a") as calls:
    calls.write(json.dumps(sys.argv) + "\\n")
image = [a for a in sys.argv if a.startswith("program ")][0].split()[1]
shutil.copyfile(image, {slot!r} + ".part")
os.replace({slot!r} + ".part", {slot!r})
expected = hashlib.sha256(open(image, "rb").read()).hexdigest()
for _ in range(600):
    if os.path.exists({slot!r} + ".loaded") and open({slot!r} + ".loaded").read().strip() == expected:
        sys.exit(0)
    time.sleep(0.05)
sys.exit("Error: the target did not come back after reset")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


class RecordingSession(CoordinatorSession):
    """Keeps every reserve / acquire / release / cancel, to check them per job."""

    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def _note(self, verb: str, what: str) -> None:
        with self.lock:
            self.calls.append((verb, what))

    def reserve(self, tags: dict[str, str]) -> str:
        token = super().reserve(tags)
        self._note("reserve", token)
        return token

    def acquire(self, place: str) -> None:
        super().acquire(place)
        self._note("acquire", place)

    def release(self, place: str) -> None:
        super().release(place)
        self._note("release", place)

    def cancel(self, token: str) -> None:
        super().cancel(token)
        self._note("cancel", token)


def _client(address: str, *args: str) -> str:
    """Test set-up only (creating places): labgrid-client's own commands."""
    argv = [str(BIN / "labgrid-client"), "-x", address, *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture
def labgrid_farm(tiny_model, tmp_path, monkeypatch):
    processes: list[subprocess.Popen] = []
    slot = tmp_path / "u585-a-flash.tflite"
    calls = tmp_path / "flash-calls.jsonl"
    tool = tmp_path / "bin" / "openocd"
    tool.parent.mkdir()
    tool.write_text(FLASH_STAND_IN.format(python=sys.executable, calls=str(calls), slot=str(slot)))
    tool.chmod(0o755)
    monkeypatch.setenv("AED_OPENOCD", str(tool))  # the farm's OpenOCD driver runs the stand-in
    try:
        # Board 0 starts with an empty flash slot: only the flash step can give it a model.
        boards = [
            start_vboard("vb0", PROFILE, slot=slot, tcp="127.0.0.1:0"),
            start_vboard("vb1", PROFILE, model=tiny_model, tcp="127.0.0.1:0"),
        ]
        processes += [b.process for b in boards]
        debugger = (
            f"  NetworkUSBDebugger:\n    host: 127.0.0.1\n    busnum: 1\n    devnum: 4\n    path: '{USB_PATH}'\n"
            "    vendor_id: 0x0483\n    model_id: 0x374e\n"
        )
        exporter_yaml = tmp_path / "exporter.yaml"
        exporter_yaml.write_text("".join(
            f"stm32u5-vboard-{i}:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {b.descriptor.rsplit(':', 1)[1]}\n"
            f"    speed: 921600\n    protocol: raw\n" + (debugger if i == 0 else "")
            for i, b in enumerate(boards)
        ))  # fmt: skip
        port = _free_port()
        address = f"127.0.0.1:{port}"
        env = {**os.environ, "LG_COORDINATOR": address}
        coordinator = subprocess.Popen([str(BIN / "labgrid-coordinator"), "--listen", address], cwd=tmp_path,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        processes.append(coordinator)
        _wait_port(port, 60, coordinator)
        exporter = subprocess.Popen(
            [str(BIN / "labgrid-exporter"), "-c", address, "--name", "exp1", str(exporter_yaml)],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        processes.append(exporter)
        deadline = time.monotonic() + 60
        while _client(address, "resources").count("exp1/") < 3:  # two serial ports and the debugger
            if time.monotonic() > deadline or exporter.poll() is not None:
                raise RuntimeError("exporter did not publish both boards")
            time.sleep(0.5)
        for i in range(2):
            place = f"u585-{'ab'[i]}"
            _client(address, "-p", place, "create")
            _client(address, "-p", place, "add-match", f"exp1/stm32u5-vboard-{i}/*")
            _client(address, "-p", place, "set-tags", f"board={PROFILE}", "soc=stm32u585")
        RecordingSession.calls = []
        farm = LabgridFarm(address, wait_timeout=120, connect=RecordingSession)
        farm.flash_calls = calls  # type: ignore[attr-defined]
        farm.tool = tool  # type: ignore[attr-defined]
        yield farm
    finally:
        for process in reversed(processes):
            stop_process(process)


def _nothing_held(farm: LabgridFarm) -> None:
    with CoordinatorSession(farm.coordinator, timeout=30) as session:
        assert all(place.acquired is None for place in session.places().values())
        assert session.reservation_tokens() == []


@pytest.mark.slow
def test_two_parallel_jobs_on_two_labgrid_places(labgrid_farm, tiny_model, patch_store, tmp_path) -> None:
    model = tiny_model
    image = tmp_path / "aiValidation.bin"  # the "firmware": for the virtual board, the model's bytes
    image.write_bytes(model.read_bytes())
    evalset = load_eval_set(patch_store, "test")
    config = JobConfig(
        profile=PROFILE,
        latency_repeats=3,
        progress=False,
        exchange_timeouts=Timeouts(settle=0.1),
        firmware=image,
    )
    records, errors = {}, []

    def job(name: str) -> None:
        try:
            records[name] = run_job(model, evalset, labgrid_farm, config, tmp_path / f"{name}.json")
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=job, args=(name,)) for name in ("job1", "job2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads)
    places = {record["board"]["name"] for record in records.values()}
    assert places == {"u585-a", "u585-b"}  # parallel jobs got different places
    for record in records.values():
        assert record["board"]["via"] == f"labgrid:{record['board']['name']}"
        assert record["source"] == "virtual" and record["metrics"]["top1_agreement"] == 1.0
        assert record["board"]["descriptor"].startswith("socket:127.0.0.1:")
        assert not record["failed_attempts"]
    # The place with the debugger was flashed once, by its OpenOCD driver, with the image and the profile's target
    # config and load address; the place without one was not flashed (flash "none": boards flashed by hand).
    calls = [json.loads(line) for line in labgrid_farm.flash_calls.read_text().splitlines()]
    assert calls == [
        [str(labgrid_farm.tool), "-f", "interface/stlink.cfg", "-c", f"adapter usb location {USB_PATH}",
         "-f", "target/stm32u5x.cfg", "-c", f"program {image} 0x08000000 verify reset exit"]
    ]  # fmt: skip
    verbs = [verb for verb, _ in RecordingSession.calls]
    assert verbs.count("reserve") == 2 and verbs.count("acquire") == 2
    assert verbs.count("release") == 2 and verbs.count("cancel") == 2
    _nothing_held(labgrid_farm)
    # A retry excludes the failed place: the reservation lands on the other one.
    for failed, other in (("u585-a", "u585-b"), ("u585-b", "u585-a")):
        with labgrid_farm.lease(PROFILE, exclude={failed}) as lease:
            assert lease.board.name == other
            assert lease.board.flash == ("openocd" if other == "u585-a" else "none")
    _nothing_held(labgrid_farm)
    # No place of a profile: the reservation wait is bounded, and the reservation is cancelled.
    labgrid_farm.wait_timeout = 2.0
    started = time.monotonic()
    expired = r"wait for reservation \w+: timed out after 2\.\d+ s"
    with pytest.raises(LabgridError, match=expired), labgrid_farm.lease("stm32n6570-dk"):
        pass
    assert time.monotonic() - started < 10
    _nothing_held(labgrid_farm)
