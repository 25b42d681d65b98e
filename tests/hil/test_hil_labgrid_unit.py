"""LabgridFarm logic against a scripted coordinator session (the real coordinator runs in test_hil_labgrid.py):
reserve / acquire / release / cancel, the serial descriptor, the flash driver a place's probe selects, a flash tool
that fails or hangs, and a coordinator that accepts connections and never answers."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from pathlib import Path

import pytest

from hil_runner.boards.flash import FlashError
from hil_runner.errors import HilError
from hil_runner.farm.coordinator import CoordinatorSession, LabgridError, PlaceResource, PlaceState
from hil_runner.farm.labgrid import LabgridFarm
from hil_runner.job import JobConfig, load_eval_set, run_job

U5 = "b-u585i-iot02a"
DEBUGGER = PlaceResource(
    "NetworkUSBDebugger",
    "NetworkUSBDebugger",
    {"host": "127.0.0.1", "busnum": 1, "devnum": 4, "path": "1-2.3", "vendor_id": 0x0483, "model_id": 0x374E},
    True,
)
FLASHABLE = PlaceResource(
    "NetworkUSBFlashableDevice",
    "NetworkUSBFlashableDevice",
    {"host": "127.0.0.1", "busnum": 1, "devnum": 5, "path": "1-4", "devnode": "/dev/bus/usb/001/005"},
    True,
)


def serial(n: int, protocol: str = "raw") -> PlaceResource:
    params = {"host": "127.0.0.1", "port": 40000 + n, "protocol": protocol, "speed": 921600}
    return PlaceResource("NetworkSerialPort", "NetworkSerialPort", params, True)


class ScriptedSession:
    """The CoordinatorSession interface over a dict of places: {name: (resources, tags)}."""

    def __init__(self, places: dict[str, tuple[list[PlaceResource], dict[str, str]]]) -> None:
        self.places_ = places
        self.reserved: dict[str, str] = {}  # token -> place
        self.acquired: set[str] = set()
        self.calls: list[tuple[str, str]] = []
        self.closed = False

    def reserve(self, tags: dict[str, str]) -> str:
        free = [
            p
            for p, (_, t) in self.places_.items()
            if p not in self.reserved.values() and t.items() >= tags.items()
        ]
        if not free:
            raise LabgridError("no place (would wait)")
        token = f"T{len(self.calls)}"
        self.reserved[token] = free[0]
        self.calls.append(("reserve", token))
        return token

    def wait_allocated(self, token: str, timeout: float) -> str:
        return self.reserved[token]

    def acquire(self, place: str) -> None:
        self.calls.append(("acquire", place))
        self.acquired.add(place)

    def release(self, place: str) -> None:
        self.calls.append(("release", place))
        self.acquired.discard(place)

    def cancel(self, token: str) -> None:
        self.calls.append(("cancel", token))
        self.reserved.pop(token)

    def resources(self, place: str) -> list[PlaceResource]:
        return self.places_[place][0]

    def places(self) -> dict[str, PlaceState]:
        return {p: PlaceState(p, tags, None, None) for p, (_, tags) in self.places_.items()}

    def close(self) -> None:
        self.closed = True


def farm_of(session: ScriptedSession, **kwargs) -> LabgridFarm:
    return LabgridFarm("127.0.0.1:1", connect=lambda address, timeout: session, **kwargs)


def plain(*names: str, protocol: str = "raw") -> ScriptedSession:
    return ScriptedSession({name: ([serial(n, protocol)], {"board": U5}) for n, name in enumerate(names)})


def test_lease_reserves_acquires_opens_and_always_releases() -> None:
    session = plain("u585-a", "u585-b")
    farm = farm_of(session)
    with farm.lease(U5) as lease:
        assert lease.board.name == "u585-a" and lease.descriptor == "socket:127.0.0.1:40000"
        assert lease.via == "labgrid:u585-a" and session.acquired == {"u585-a"}
        assert lease.board.flash == "none" and lease.flasher is None  # no probe: flashed by hand
    assert not session.acquired and not session.reserved and session.closed
    with pytest.raises(RuntimeError, match="job failed"), farm.lease(U5):
        raise RuntimeError("job failed")
    assert not session.acquired and not session.reserved  # released and cancelled on failure too
    assert [verb for verb, _ in session.calls] == ["reserve", "acquire", "release", "cancel"] * 2


def test_excluded_place_keeps_its_reservation_until_another_is_found() -> None:
    session = plain("u585-a", "u585-b")
    farm = farm_of(session)
    with farm.lease(U5, exclude={"u585-a"}) as lease:
        assert lease.board.name == "u585-b"
        assert set(session.reserved.values()) == {"u585-a", "u585-b"}
    assert not session.reserved and not session.acquired
    with pytest.raises(LabgridError), farm.lease(U5, exclude={"u585-a", "u585-b"}):
        pass
    assert not session.reserved


def test_ser2net_rfc2217_ports_and_unknown_protocols() -> None:
    with farm_of(plain("u585-a", protocol="rfc2217")).lease(U5) as lease:
        assert lease.descriptor == "rfc2217:127.0.0.1:40000:921600"
    session = plain("u585-a", protocol="telnet")
    with (
        pytest.raises(LabgridError, match="protocol 'telnet' is not raw or rfc2217"),
        farm_of(session).lease(U5),
    ):
        pass
    assert not session.reserved and not session.acquired


def test_parallel_leases_share_one_session_closed_by_the_last() -> None:
    session = plain("u585-a", "u585-b")
    opened: list[str] = []
    farm = LabgridFarm("127.0.0.1:1", connect=lambda address, timeout: opened.append(address) or session)
    with farm.lease(U5), farm.lease(U5):
        assert session.acquired == {"u585-a", "u585-b"} and not session.closed
    assert opened == ["127.0.0.1:1"] and session.closed


@pytest.mark.parametrize(
    ("resources", "tags", "driver", "argv_part"),
    [
        ([DEBUGGER], {}, "openocd", ["-c", "adapter usb location 1-2.3", "-f", "target/stm32u5x.cfg"]),
        ([DEBUGGER], {"flash": "pyocd", "probe": "0042"}, "pyocd", ["-t", "stm32u585aiix", "-u", "0042"]),
        ([FLASHABLE], {"probe": "77"}, "cubeprog", ["-c", "port=SWD", "sn=77", "mode=UR"]),
    ],
    ids=["debugger-openocd", "debugger-pyocd-tag", "flashable-cubeprog"],
)
def test_a_place_exporting_a_probe_gets_its_flash_driver(
    resources, tags, driver, argv_part, tmp_path
) -> None:
    session = ScriptedSession({"u585-a": ([serial(0), *resources], {"board": U5, **tags})})
    farm = farm_of(session, tools={driver: str(tmp_path / "tool")})
    with farm.lease(U5) as lease:
        assert lease.board.flash == driver and lease.flasher is not None
        argv = lease.flasher.strategy.argv(Path("fw.bin"), lease.flasher.target)
    assert argv[0] == str(tmp_path / "tool") and any("fw.bin" in part for part in argv)
    assert any(argv[i : i + len(argv_part)] == argv_part for i in range(len(argv)))


@pytest.mark.parametrize(
    ("resources", "tags", "message"),
    [
        ([], {"flash": "openocd"}, "tag flash=openocd but the place exports no debugger"),
        ([FLASHABLE], {"flash": "openocd"}, "tag flash=openocd cannot drive its NetworkUSBFlashableDevice"),
        ([DEBUGGER, FLASHABLE], {}, "more than one probe to flash with"),
        ([DEBUGGER], {"flash": "jlink"}, "tag flash=jlink cannot drive its NetworkUSBDebugger"),
    ],
)
def test_bad_probe_setups_are_refused_and_the_place_released(resources, tags, message) -> None:
    session = ScriptedSession({"u585-a": ([serial(0), *resources], {"board": U5, **tags})})
    with pytest.raises(LabgridError, match=f"labgrid place u585-a: {message}"), farm_of(session).lease(U5):
        pass
    assert not session.acquired and not session.reserved


RECORDER = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv) + "\\n")
sys.exit({code})
"""


def test_a_probe_on_another_host_is_flashed_there_over_ssh(tmp_path, monkeypatch) -> None:
    """labgrid's way for network resources: the image goes over with scp, the tool runs on the exporter host."""
    from aed.records import sha256_file

    log = tmp_path / "calls.jsonl"
    for name, env in (("ssh", "AED_SSH"), ("scp", "AED_SCP")):
        tool = tmp_path / name
        tool.write_text(RECORDER.format(python=sys.executable, log=str(log), code=0))
        tool.chmod(0o755)
        monkeypatch.setenv(env, str(tool))
    remote = PlaceResource(DEBUGGER.name, DEBUGGER.cls, {**DEBUGGER.params, "host": "lab-exporter-7"}, True)
    session = ScriptedSession({"u585-a": ([serial(0), remote], {"board": U5})})
    image = tmp_path / "fw.bin"
    image.write_bytes(b"\x00" * 64)
    with farm_of(session).lease(U5) as lease:
        lease.flasher.flash(image, 30.0)
    folder = f"/tmp/aed-flash/{sha256_file(image)[:16]}"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        [str(tmp_path / "ssh"), "-o", "BatchMode=yes", "lab-exporter-7", "--", f"mkdir -p {folder}"],
        [str(tmp_path / "scp"), "-o", "BatchMode=yes", "--", str(image), f"lab-exporter-7:{folder}/fw.bin"],
        [str(tmp_path / "ssh"), "-o", "BatchMode=yes", "lab-exporter-7", "--",
         "openocd -f interface/stlink.cfg -c 'adapter usb location 1-2.3' -f target/stm32u5x.cfg "
         f"-c 'program {folder}/fw.bin 0x08000000 verify reset exit'"],
    ]  # fmt: skip
    (tmp_path / "ssh").write_text(RECORDER.format(python=sys.executable, log=str(log), code=255))
    refused = "labgrid place u585-a: openocd on lab-exporter-7: ssh mkdir exited with 255"
    with pytest.raises(FlashError, match=refused), farm_of(session).lease(U5) as lease:
        lease.flasher.flash(image, 30.0)
    assert not session.acquired and not session.reserved
    odd = PlaceResource(DEBUGGER.name, DEBUGGER.cls, {**DEBUGGER.params, "host": "-oProxyCommand=x"}, True)
    session = ScriptedSession({"u585-a": ([serial(0), odd], {"board": U5})})
    bad_host = "exporter host '-oProxyCommand=x' is not a host name"
    with pytest.raises(FlashError, match=bad_host), farm_of(session).lease(U5) as lease:
        lease.flasher.flash(image, 30.0)


def write_tool(path: Path, body: str) -> Path:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("body", "scale", "message"),
    [
        ("echo 'Error: init mode failed (unable to connect to the target)' >&2; exit 1",
         1.0, r"openocd exited with 1: Error: init mode failed"),
        ("exec sleep 30", 0.01, r"openocd: timed out after 1\.\d+ s \(limit 1\.8 s\); process group killed"),
    ],
    ids=["fails", "hangs"],
)  # fmt: skip
def test_flash_tool_that_fails_or_hangs_fails_the_job_naming_place_and_tool(
    body, scale, message, tiny_model, patch_store, tmp_path
) -> None:
    tool = write_tool(tmp_path / "openocd-stand-in", body)
    session = ScriptedSession(
        {p: ([serial(n), DEBUGGER], {"board": U5}) for n, p in enumerate(("u585-a", "u585-b"))}
    )
    firmware = write_tool(tmp_path / "fw.elf", "")
    config = JobConfig(profile=U5, firmware=firmware, timeout_scale=scale, progress=False)
    out = tmp_path / "hil.json"
    with pytest.raises(HilError) as raised:
        run_job(tiny_model, load_eval_set(patch_store, "test"), farm_of(session, tools={"openocd": str(tool)}),
                config, out)  # fmt: skip
    text = str(raised.value)
    for place in ("u585-a", "u585-b"):  # retried on the other place, each named with the tool's error
        assert f"board {place}: labgrid place {place}: " in text
    assert len(re.findall(message, text)) == 2, text
    assert not out.exists()
    assert not session.acquired and not session.reserved  # both places released, reservations cancelled


def test_a_silent_coordinator_fails_the_lease_within_its_deadline() -> None:
    with socket.socket() as server:  # accepts the connection (backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        farm = LabgridFarm(address, call_timeout=2.0)
        started = time.monotonic()
        with pytest.raises(LabgridError) as raised, farm.lease(U5):
            pass
        waited = time.monotonic() - started
    assert 2.0 <= waited <= 2.4, waited  # within 20 % of the deadline
    assert str(raised.value).startswith(f"labgrid coordinator {address}: connect: timed out after 2.0")


def test_an_unreachable_coordinator_is_one_clear_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LabgridError, match=f"labgrid coordinator 127.0.0.1:{port}: connect: "):
        CoordinatorSession(f"127.0.0.1:{port}", timeout=5.0)


@pytest.mark.parametrize("address", ["not a host:xx", "lab:99999", "", ":20408", "user@lab:20408", "lab/x"])
def test_a_malformed_coordinator_address_is_refused_up_front(address) -> None:
    with pytest.raises(
        LabgridError, match=f"labgrid coordinator address {re.escape(repr(address))} is not host"
    ):
        LabgridFarm(address)


def test_a_serial_resource_without_host_or_port_is_named() -> None:
    broken = PlaceResource("console", "NetworkSerialPort", {"host": "127.0.0.1", "protocol": "raw"}, True)
    session = ScriptedSession({"u585-a": ([broken], {"board": U5})})
    missing = r"place u585-a: resource console \(NetworkSerialPort\) has no 'port'"
    with pytest.raises(LabgridError, match=missing), farm_of(session).lease(U5):
        pass
    assert not session.acquired and not session.reserved


def test_flash_tool_path_comes_from_the_argument_else_the_environment(monkeypatch) -> None:
    from hil_runner.boards.flash import CubeProgrammer, OpenOCD, PyOCD

    monkeypatch.setenv("AED_OPENOCD", "/opt/openocd/bin/openocd")
    monkeypatch.setenv("AED_PYOCD", "")  # empty: the default name
    assert OpenOCD().tool == "/opt/openocd/bin/openocd" and OpenOCD("/x/openocd").tool == "/x/openocd"
    assert PyOCD().tool == "pyocd" and CubeProgrammer().tool == "STM32_Programmer_CLI"
    with pytest.raises(ValueError, match="openocd: the tool must be a non-empty path"):
        OpenOCD("  ")
    with pytest.raises(ValueError, match="USB location '1-2; shutdown' is not of the form"):
        OpenOCD(usb_location="1-2; shutdown")
