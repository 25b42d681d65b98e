"""Flash strategies: how a firmware image gets onto a board. Real tools (STM32CubeProgrammer, OpenOCD, pyOCD) are not
installable here, so each strategy builds its argv in code (snapshot-tested) and runs it with a timeout; `none` is
the virtual board's "flash": the model file is copied into the board's slot, which it loads at the next connect.

A strategy's settings are its attributes, checked when it is made: the tool to run (the `tool` argument, else the
environment variable named by `tool_env`, else the tool's usual name on PATH) and, for OpenOCD, the probe's USB
location."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from aed.deadline import Deadline, ProcessTimeout, run_with_deadline
from hil_runner.boards.profiles import BoardProfile
from hil_runner.errors import HilError

FLASH_TIMEOUT = 180.0


class FlashError(HilError):
    pass


@dataclass(frozen=True)
class FlashTarget:
    board: str
    profile: BoardProfile
    probe: str | None = None  # ST-LINK serial number (always pass it when several probes share a host)
    slot: Path | None = None  # virtual boards only
    external_loader: str | None = None  # N6: external NOR loader (.stldr)
    pack: Path | None = None  # pyOCD CMSIS pack file (offline)
    site: str = "board"  # what `board` names in messages ("labgrid place" for a farm place)

    @property
    def where(self) -> str:
        return f"{self.site} {self.board}"


class FlashStrategy(ABC):
    name: str
    tool: str  # default executable
    tool_env: str = ""  # environment variable that overrides the default

    def __init__(self, tool: str | None = None) -> None:
        chosen = tool if tool is not None else os.environ.get(self.tool_env) or type(self).tool
        if not isinstance(chosen, str) or (self.tool_env and not chosen.strip()):
            raise ValueError(f"{self.name}: the tool must be a non-empty path or command, got {chosen!r}")
        self.tool = chosen

    @abstractmethod
    def argv(self, image: Path, target: FlashTarget) -> list[str]: ...

    def flash(self, image: Path, target: FlashTarget, timeout: float = FLASH_TIMEOUT) -> None:
        image = Path(image)
        if not image.exists():
            raise FlashError(f"{target.where}: firmware image {image} not found")
        argv = self.argv(image, target)
        if shutil.which(argv[0]) is None:
            searched = "" if os.sep in argv[0] else " on PATH"
            raise FlashError(
                f"{target.where}: {self.name}: '{argv[0]}' not found{searched} or not executable"
            )
        run_tool(argv, timeout, f"{target.where}: {self.name}")


def run_tool(argv: list[str], timeout: float | Deadline, what: str) -> None:
    """Run a flash step with a deadline; a time-out, a tool that cannot start or a non-zero exit is a FlashError
    starting with `what`."""
    try:
        result = run_with_deadline(argv, timeout, what)
    except ProcessTimeout as error:
        raise FlashError(f"{error}; the board may be half-programmed") from None
    except OSError as error:
        raise FlashError(f"{what}: cannot run '{argv[0]}' ({error})") from None
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise FlashError(f"{what} exited with {result.returncode}: {' | '.join(tail)}")


def _is_bin(image: Path) -> bool:
    return image.suffix.lower() == ".bin"


class CubeProgrammer(FlashStrategy):
    name, tool, tool_env = "cubeprog", "STM32_Programmer_CLI", "AED_STM32_PROGRAMMER_CLI"

    def argv(self, image: Path, target: FlashTarget) -> list[str]:
        connect = ["-c", "port=SWD"]
        if target.probe:
            connect.append(f"sn={target.probe}")
        if target.external_loader:  # N6: weights/firmware in external NOR
            connect.append("mode=HOTPLUG")
            write = [
                "-el",
                target.external_loader,
                "-hardRst",
                "-w",
                str(image),
                f"0x{target.profile.flash_base:08X}",
            ]
            return [self.tool, *connect, *write]
        connect.append("mode=UR")
        write = ["-w", str(image)] + ([f"0x{target.profile.flash_base:08X}"] if _is_bin(image) else [])
        return [self.tool, *connect, *write, "-v", "-rst"]


class OpenOCD(FlashStrategy):
    name, tool, tool_env = "openocd", "openocd", "AED_OPENOCD"

    def __init__(self, tool: str | None = None, usb_location: str | None = None) -> None:
        super().__init__(tool)
        # The probe's USB port path (bus-port[.port...]), as a labgrid USB debugger resource gives it; it
        # picks the probe when several share a host and no serial number is known.
        if usb_location is not None and not re.fullmatch(r"\d+-\d+(\.\d+)*", usb_location):
            raise ValueError(
                f"openocd: USB location {usb_location!r} is not of the form <bus>-<port>[.<port>...]"
            )
        self.usb_location = usb_location

    def argv(self, image: Path, target: FlashTarget) -> list[str]:
        if target.profile.openocd_target is None:
            raise FlashError(f"{target.where}: OpenOCD has no target config for {target.profile.name}")
        argv = [self.tool, "-f", "interface/stlink.cfg"]
        if target.probe:
            argv += ["-c", f"adapter serial {target.probe}"]
        if self.usb_location:
            argv += ["-c", f"adapter usb location {self.usb_location}"]
        address = f" 0x{target.profile.flash_base:08x}" if _is_bin(image) else ""
        return argv + [
            "-f",
            target.profile.openocd_target,
            "-c",
            f"program {image}{address} verify reset exit",
        ]


class PyOCD(FlashStrategy):
    name, tool, tool_env = "pyocd", "pyocd", "AED_PYOCD"

    def argv(self, image: Path, target: FlashTarget) -> list[str]:
        if target.profile.pyocd_target is None:
            raise FlashError(f"{target.where}: no pyOCD target for {target.profile.name}")
        argv = [self.tool, "flash", "-t", target.profile.pyocd_target]
        if target.pack is not None:
            argv += ["--pack", str(target.pack)]
        if target.probe:
            argv += ["-u", target.probe]
        if _is_bin(image):
            argv += ["--base-address", f"0x{target.profile.flash_base:08x}"]
        return argv + [str(image)]


class NoFlash(FlashStrategy):
    """Virtual boards: "flashing" loads the model into the board's slot (atomic copy); no slot = nothing to do."""

    name, tool = "none", ""

    def argv(self, image: Path, target: FlashTarget) -> list[str]:
        return []

    def flash(self, image: Path, target: FlashTarget, timeout: float = FLASH_TIMEOUT) -> None:
        if target.slot is None:
            return
        image, slot = Path(image), Path(target.slot)
        if not image.exists():
            raise FlashError(f"{target.where}: model {image} not found")
        from aed.records import sha256_file

        slot.parent.mkdir(parents=True, exist_ok=True)
        marker = slot.with_name(slot.name + ".loaded")
        marker.unlink(missing_ok=True)
        handle, temporary = tempfile.mkstemp(dir=slot.parent, prefix=f".{slot.name}.")
        os.close(handle)
        shutil.copyfile(image, temporary)
        os.replace(temporary, slot)
        expected = sha256_file(image)
        deadline = Deadline(timeout)
        while not deadline.expired():  # wait until the board has loaded it (its "reset after programming")
            if marker.exists():
                answer = marker.read_text().strip()
                if answer == expected:
                    return
                if answer.startswith("error"):
                    raise FlashError(f"{target.where}: the virtual board rejected {image}: {answer}")
            time.sleep(0.05)
        raise FlashError(f"{target.where}: the virtual board did not load {image}: {deadline.describe()}")


STRATEGIES: dict[str, type[FlashStrategy]] = {
    cls.name: cls for cls in (CubeProgrammer, OpenOCD, PyOCD, NoFlash)
}


def get_strategy(name: str) -> FlashStrategy:
    try:
        return STRATEGIES[name]()
    except KeyError:
        raise ValueError(f"unknown flash strategy {name!r}; known: {sorted(STRATEGIES)}") from None
