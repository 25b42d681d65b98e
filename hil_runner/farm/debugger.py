"""Flashing a labgrid place through the probe it exports.

Resources describe, drivers act. A place's resources may include a USB debugger (labgrid `USBDebugger` /
`NetworkUSBDebugger`: an ST-LINK or another SWD probe) or a flashable USB device (`USBFlashableDevice` /
`NetworkUSBFlashableDevice`, which labgrid programs with a flash script). `ExportedProbe` only reads what such a
resource says; the driver that acts on it is one of the flash strategies (one class per tool, its settings
validated attributes): OpenOCD or pyOCD for a debugger, STM32CubeProgrammer as the flash script of a flashable
device. The tool and target come from the board profile, the probe's USB location from the resource.

Place tags choose where the resource leaves a choice: `flash=openocd|pyocd|cubeprog|none` (default: OpenOCD when
the profile has an OpenOCD target, else pyOCD; `none` keeps a probe unused), `probe=<serial>` (the ST-LINK serial
number), `external_loader=<file.stldr>` (STM32CubeProgrammer, N6). A place without such a resource is flashed by hand (flash "none"), as before.

The tool runs where the probe is plugged in: on this host for a local probe, else on the exporter host through
ssh after the image is copied there with scp (labgrid's way for network resources), under one deadline.
"""

from __future__ import annotations

import os
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aed.deadline import Deadline
from aed.records import sha256_file
from hil_runner.boards.flash import (
    FLASH_TIMEOUT,
    STRATEGIES,
    FlashError,
    FlashStrategy,
    FlashTarget,
    OpenOCD,
    run_tool,
)
from hil_runner.boards.profiles import BoardProfile
from hil_runner.farm.coordinator import LabgridError, PlaceResource

DEBUGGERS = ("USBDebugger", "NetworkUSBDebugger")
FLASHABLE = ("USBFlashableDevice", "NetworkUSBFlashableDevice")
# The drivers that can act on each resource class, the default first.
DRIVERS: dict[str, tuple[str, ...]] = {
    **{cls: ("openocd", "pyocd") for cls in DEBUGGERS},
    **{cls: ("cubeprog",) for cls in FLASHABLE},
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class ExportedProbe:
    """What a debugger / flashable-device resource says about the probe: nothing here acts on it."""

    resource: str
    cls: str
    host: str | None  # exporter host of a Network* resource; None: attached to this host
    usb_location: str | None  # bus-port path on its host, e.g. "1-2.3"

    @classmethod
    def from_resource(cls, resource: PlaceResource) -> ExportedProbe:
        host = resource.params.get("host")
        path = resource.params.get("path")
        return cls(resource.name, resource.cls, str(host) if host else None, str(path) if path else None)

    def is_local(self) -> bool:
        return self.host is None or self.host in LOCAL_HOSTS | {socket.gethostname(), socket.getfqdn()}


@dataclass(frozen=True)
class ExporterShell:
    """How a flash tool reaches a probe plugged into another host, the way labgrid's network resources do: the
    image is copied over with scp into a cache folder named by its hash, and the tool runs there through ssh.
    `ssh` / `scp` default to $AED_SSH / $AED_SCP, else the commands of those names."""

    host: str
    ssh: str = field(default_factory=lambda: os.environ.get("AED_SSH") or "ssh")
    scp: str = field(default_factory=lambda: os.environ.get("AED_SCP") or "scp")
    folder: str = "/tmp/aed-flash"  # on the exporter host

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-") or any(c.isspace() for c in self.host):
            raise ValueError(f"exporter host {self.host!r} is not a host name")

    def flash(self, strategy: FlashStrategy, image: Path, target: FlashTarget, timeout: float) -> None:
        deadline = Deadline(timeout)  # one deadline for the copy and the flash
        options = ["-o", "BatchMode=yes"]  # never wait for a password prompt
        where = f"{target.where}: {strategy.name} on {self.host}"
        if not image.exists():
            raise FlashError(f"{target.where}: firmware image {image} not found")
        remote = f"{self.folder}/{sha256_file(image)[:16]}/{image.name}"
        mkdir = shlex.join(["mkdir", "-p", remote.rsplit("/", 1)[0]])
        run_tool([self.ssh, *options, self.host, "--", mkdir], deadline, f"{where}: ssh mkdir")
        run_tool([self.scp, *options, "--", str(image), f"{self.host}:{remote}"], deadline, f"{where}: scp")
        command = shlex.join(strategy.argv(Path(remote), target))
        run_tool([self.ssh, *options, self.host, "--", command], deadline, where)


@dataclass(frozen=True)
class PlaceFlasher:
    """The driver chosen for one acquired place: `flash(image, timeout)` programs the board behind it."""

    place: str
    probe: ExportedProbe
    strategy: FlashStrategy
    target: FlashTarget

    @property
    def name(self) -> str:
        return self.strategy.name

    def flash(self, image: Path, timeout: float = FLASH_TIMEOUT) -> None:
        if self.probe.is_local():
            self.strategy.flash(image, self.target, timeout=timeout)
            return
        try:
            shell = ExporterShell(str(self.probe.host))
        except ValueError as error:
            raise FlashError(f"{self.target.where}: {error}") from None
        shell.flash(self.strategy, Path(image), self.target, timeout)


def place_flasher(
    place: str,
    profile: BoardProfile,
    resources: list[PlaceResource],
    tags: Mapping[str, str],
    tools: Mapping[str, str] | None = None,
) -> PlaceFlasher | None:
    """The flash driver for an acquired place, or None when the place exports no probe (flashed by hand)."""
    probes = [ExportedProbe.from_resource(r) for r in resources if r.cls in DRIVERS]
    chosen = tags.get("flash")
    if not probes:
        if chosen not in (None, "none"):
            raise LabgridError(f"labgrid place {place}: tag flash={chosen} but the place exports no debugger")
        return None
    if len(probes) > 1:
        names = ", ".join(f"{p.resource} ({p.cls})" for p in probes)
        raise LabgridError(f"labgrid place {place}: more than one probe to flash with: {names}")
    probe = probes[0]
    name = _driver_name(place, profile, probe, chosen)
    if name == "none":
        return None
    try:
        strategy = _strategy(name, (tools or {}).get(name), probe)
    except ValueError as error:
        raise LabgridError(f"labgrid place {place}: {error}") from None
    target = FlashTarget(
        board=place,
        profile=profile,
        probe=tags.get("probe"),
        external_loader=tags.get("external_loader"),
        site="labgrid place",
    )
    return PlaceFlasher(place, probe, strategy, target)


def _driver_name(place: str, profile: BoardProfile, probe: ExportedProbe, chosen: str | None) -> str:
    allowed = DRIVERS[probe.cls]
    if chosen is None:
        if probe.cls in DEBUGGERS and profile.openocd_target is None:
            return "pyocd"  # OpenOCD has no config for this device (STM32N6)
        return allowed[0]
    if chosen != "none" and chosen not in allowed:
        raise LabgridError(
            f"labgrid place {place}: tag flash={chosen} cannot drive its {probe.cls} "
            f"(expected one of {', '.join((*allowed, 'none'))})"
        )
    if chosen == "openocd" and profile.openocd_target is None:
        raise LabgridError(
            f"labgrid place {place}: tag flash=openocd but OpenOCD has no config for {profile.name}"
        )
    return chosen


def _strategy(name: str, tool: str | None, probe: ExportedProbe) -> FlashStrategy:
    if name == "openocd":  # the one driver that takes the probe's USB location
        return OpenOCD(tool, usb_location=probe.usb_location)
    return STRATEGIES[name](tool)
