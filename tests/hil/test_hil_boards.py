"""Board profiles, the inventory file, flash strategies (golden argv), lock files and the local farm.

Parameter names avoid `strategy`, `target` and `env`: labgrid's pytest plugin (auto-loaded) claims them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hil_runner.boards.flash import CubeProgrammer, FlashError, FlashTarget, OpenOCD, PyOCD, get_strategy
from hil_runner.boards.inventory import dump_inventory, load_inventory
from hil_runner.boards.profiles import get_profile
from hil_runner.errors import HilError
from hil_runner.farm.local import LocalFarm
from hil_runner.farm.locks import LockBusy, try_lock
from hil_runner.transport import parse_descriptor

U5, N6 = get_profile("b-u585i-iot02a"), get_profile("stm32n6570-dk")
ELF, BIN = Path("fw/aiValidation.elf"), Path("fw/aiValidation.bin")


@pytest.mark.parametrize(
    ("flasher", "flash_target", "image", "argv"),
    [
        (CubeProgrammer(), FlashTarget("b1", U5, probe="0042"), ELF,
         ["STM32_Programmer_CLI", "-c", "port=SWD", "sn=0042", "mode=UR", "-w", "fw/aiValidation.elf", "-v", "-rst"]),
        (CubeProgrammer(), FlashTarget("b1", U5), BIN,
         ["STM32_Programmer_CLI", "-c", "port=SWD", "mode=UR", "-w", "fw/aiValidation.bin", "0x08000000", "-v",
          "-rst"]),
        (CubeProgrammer(), FlashTarget("n6", N6, probe="77", external_loader="MX66UW1G45G_STM32N6570-DK.stldr"), BIN,
         ["STM32_Programmer_CLI", "-c", "port=SWD", "sn=77", "mode=HOTPLUG", "-el", "MX66UW1G45G_STM32N6570-DK.stldr",
          "-hardRst", "-w", "fw/aiValidation.bin", "0x70000000"]),
        (OpenOCD(), FlashTarget("b1", U5, probe="0042"), ELF,
         ["openocd", "-f", "interface/stlink.cfg", "-c", "adapter serial 0042", "-f", "target/stm32u5x.cfg", "-c",
          "program fw/aiValidation.elf verify reset exit"]),
        (OpenOCD(), FlashTarget("b1", U5), BIN,
         ["openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32u5x.cfg", "-c",
          "program fw/aiValidation.bin 0x08000000 verify reset exit"]),
        (PyOCD(), FlashTarget("b1", U5, probe="0042", pack=Path("Keil.STM32U5xx_DFP.3.0.0.pack")), ELF,
         ["pyocd", "flash", "-t", "stm32u585aiix", "--pack", "Keil.STM32U5xx_DFP.3.0.0.pack", "-u", "0042",
          "fw/aiValidation.elf"]),
        (PyOCD(), FlashTarget("b1", U5), BIN,
         ["pyocd", "flash", "-t", "stm32u585aiix", "--base-address", "0x08000000", "fw/aiValidation.bin"]),
    ],
    ids=["cubeprog-elf", "cubeprog-bin", "cubeprog-n6-external", "openocd-elf", "openocd-bin", "pyocd-pack", "pyocd-bin"],
)  # fmt: skip
def test_flash_argv_snapshots(flasher, flash_target, image, argv) -> None:
    assert flasher.argv(image, flash_target) == argv


def test_openocd_refuses_n6() -> None:
    with pytest.raises(FlashError, match="no target config for stm32n6570-dk"):
        OpenOCD().argv(ELF, FlashTarget("n6", N6))


def test_missing_tool_and_failing_tool_are_clear(tmp_path, monkeypatch) -> None:
    image = tmp_path / "fw.elf"
    image.write_bytes(b"\x7fELF")
    with pytest.raises(FlashError, match="board b1: cubeprog: 'STM32_Programmer_CLI' not found on PATH"):
        CubeProgrammer().flash(image, FlashTarget("b1", U5))
    fake = tmp_path / "bin" / "openocd"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: open failed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    with pytest.raises(FlashError, match="board b1: openocd exited with 1: Error: open failed"):
        OpenOCD().flash(image, FlashTarget("b1", U5))
    fake.write_text("#!/bin/sh\nsleep 10\n")
    with pytest.raises(FlashError, match=r"board b1: openocd: timed out after 1\.\d+ s \(limit 1 s\)"):
        OpenOCD().flash(image, FlashTarget("b1", U5), timeout=1.0)
    with pytest.raises(ValueError, match="unknown flash strategy 'jlink'"):
        get_strategy("jlink")


@pytest.mark.parametrize(
    ("text", "domain", "port", "number"),
    [
        ("serial:/dev/ttyACM0:115200", "serial", "/dev/ttyACM0", 115200),
        ("serial:COM7:921600", "serial", "COM7", 921600),
        ("serial:921600", "serial", None, 921600),
        ("serial", "serial", None, 115200),
        ("socket:127.0.0.1:10000", "socket", "127.0.0.1", 10000),
        ("socket:4444", "socket", "localhost", 4444),
    ],
)
def test_descriptor_syntax(text, domain, port, number) -> None:
    descriptor = parse_descriptor(text)
    assert descriptor.domain == domain and descriptor.port == port
    assert (descriptor.baud if domain == "serial" else descriptor.tcp_port) == number


def test_descriptor_needs_a_domain() -> None:
    with pytest.raises(HilError, match="unknown domain '/dev/ttyACM0'"):
        parse_descriptor("/dev/ttyACM0")


def test_inventory_round_trip_and_errors(tmp_path) -> None:
    path = tmp_path / "boards.yaml"
    path.write_text(
        "boards:\n"
        "  - {name: u5-a, profile: b-u585i-iot02a, port: 'serial:/dev/ttyACM0:115200', probe: '0042', flash: cubeprog,"
        " firmware: fw/val.elf}\n"
        "  - {name: vb, profile: b-u585i-iot02a, port: 'socket:127.0.0.1:4000', virtual: true, slot: slots/vb.tflite}\n"
    )
    boards = load_inventory(path)
    assert [b.name for b in boards] == ["u5-a", "vb"]
    assert boards[0].firmware == tmp_path / "fw/val.elf" and boards[1].slot == tmp_path / "slots/vb.tflite"
    dump_inventory(boards, tmp_path / "copy.yaml")
    assert load_inventory(tmp_path / "copy.yaml") == boards
    bad = tmp_path / "bad.yaml"
    bad.write_text("boards:\n  - {name: x, profile: b-u585i-iot02a, port: 'serial:1', flash: jlink}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: boards\[0\]: flash 'jlink'"):
        load_inventory(bad)
    bad.write_text("boards:\n  - {name: x, profile: esp32, port: 'serial:1'}\n")
    with pytest.raises(ValueError, match="unknown board profile 'esp32'"):
        load_inventory(bad)


def test_lock_is_exclusive_and_released(tmp_path) -> None:
    lock = try_lock(tmp_path, "b1")
    with pytest.raises(LockBusy, match=r"board b1 is locked by pid \d+"):
        try_lock(tmp_path, "b1")
    lock.release()
    try_lock(tmp_path, "b1").release()


def test_stale_lock_of_a_dead_process_is_recovered(tmp_path) -> None:
    # A child takes the lock and dies without releasing it.
    code = "import sys; from hil_runner.farm.locks import try_lock; from pathlib import Path; try_lock(Path(sys.argv[1]), 'b1')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert (tmp_path / "b1.lock").exists()
    lock = try_lock(tmp_path, "b1")
    assert lock.owner["pid"] != 0 and (tmp_path / "b1.lock").exists()
    lock.release()
    assert not (tmp_path / "b1.lock").exists()


def test_local_farm_gives_free_boards_then_waits_and_gives_up(tmp_path) -> None:
    from hil_runner.boards.inventory import Board

    boards = [Board(name=n, profile=U5, port="socket:127.0.0.1:1") for n in ("a", "b")]
    boards.append(Board(name="n6", profile=N6, port="socket:127.0.0.1:2"))
    farm = LocalFarm(boards, tmp_path, wait_timeout=0.5)
    with farm.lease("b-u585i-iot02a") as first, farm.lease("b-u585i-iot02a") as second:
        assert {first.board.name, second.board.name} == {"a", "b"}
        with (
            pytest.raises(HilError, match="no free b-u585i-iot02a board within 0 s"),
            farm.lease("b-u585i-iot02a"),
        ):
            pass
    with farm.lease("b-u585i-iot02a", exclude={"a"}) as lease:
        assert lease.board.name == "b"
    with (
        pytest.raises(HilError, match="no board with profile 'stm32n6570-dk' left"),
        farm.lease("stm32n6570-dk", exclude={"n6"}),
    ):
        pass
