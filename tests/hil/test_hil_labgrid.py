"""labgrid integration: a real labgrid-coordinator and labgrid-exporter on 127.0.0.1 (from the venv's bin) export two
virtual boards (TCP, NetworkSerialPort raw); two HIL jobs run in parallel, each reserving, acquiring, using and
releasing its own place. Every process started here is stopped in teardown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil_runner.farm.labgrid import LabgridFarm
from hil_runner.farm.virtual import start_vboard, stop_process
from hil_runner.job import JobConfig, load_eval_set, run_job
from hil_runner.protocol.host import Timeouts

BIN = Path(sys.executable).parent
PROFILE = "b-u585i-iot02a"


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


class RecordingFarm(LabgridFarm):
    """Keeps every labgrid-client call, to check reserve -> acquire -> release -> cancel per job."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, ...]] = []
        self.lock = threading.Lock()

    def _call(self, *args: str, token: str | None = None, timeout: float = 30.0) -> str:
        out = super()._call(*args, token=token, timeout=timeout)
        with self.lock:
            self.calls.append(args)
        return out


@pytest.fixture
def labgrid_farm(tiny_model, tmp_path):
    processes: list[subprocess.Popen] = []
    try:
        boards = [start_vboard(f"vb{i}", PROFILE, model=tiny_model, tcp="127.0.0.1:0") for i in range(2)]
        processes += [b.process for b in boards]
        exporter_yaml = tmp_path / "exporter.yaml"
        exporter_yaml.write_text("".join(
            f"stm32u5-vboard-{i}:\n  NetworkSerialPort:\n    host: 127.0.0.1\n    port: {b.descriptor.rsplit(':', 1)[1]}\n"
            f"    speed: 921600\n    protocol: raw\n"
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
        farm = RecordingFarm(address, wait_timeout=120)
        deadline = time.monotonic() + 60
        while (
            "NetworkSerialPort" not in farm._call("resources") or farm._call("resources").count("exp1/") < 2
        ):
            if time.monotonic() > deadline or exporter.poll() is not None:
                raise RuntimeError("exporter did not publish both boards")
            time.sleep(0.5)
        for i in range(2):
            place = f"u585-{'ab'[i]}"
            farm._call("-p", place, "create")
            farm._call("-p", place, "add-match", f"exp1/stm32u5-vboard-{i}/*")
            farm._call("-p", place, "set-tags", f"board={PROFILE}", "soc=stm32u585")
        farm.calls.clear()
        yield farm
    finally:
        for process in reversed(processes):
            stop_process(process)


@pytest.mark.slow
def test_two_parallel_jobs_on_two_labgrid_places(labgrid_farm, tiny_model, patch_store, tmp_path) -> None:
    evalset = load_eval_set(patch_store, "test")
    config = JobConfig(
        profile=PROFILE, latency_repeats=3, progress=False, exchange_timeouts=Timeouts(settle=0.1)
    )
    records, errors = {}, []

    def job(name: str) -> None:
        try:
            records[name] = run_job(tiny_model, evalset, labgrid_farm, config, tmp_path / f"{name}.json")
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
    verbs = [call[0] if call[0] != "-p" else call[2] for call in labgrid_farm.calls]
    assert verbs.count("reserve") == 2 and verbs.count("acquire") == 2
    assert verbs.count("release") == 2 and verbs.count("cancel-reservation") == 2
    # Nothing is left acquired or reserved.
    assert "u585" not in labgrid_farm._call("who")
    assert "Reservation" not in labgrid_farm._call("reservations")
    # A retry excludes the failed place: the reservation lands on the other one.
    for failed, other in (("u585-a", "u585-b"), ("u585-b", "u585-a")):
        with labgrid_farm.lease(PROFILE, exclude={failed}) as lease:
            assert lease.board.name == other
    assert "u585" not in labgrid_farm._call("who")
    assert "Reservation" not in labgrid_farm._call("reservations")
