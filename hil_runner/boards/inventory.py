"""The board inventory file (boards.yaml):

boards:
  - name: u585-bench-1
    profile: b-u585i-iot02a
    port: serial:/dev/ttyACM0:115200    # transport descriptor
    probe: 004D00323137511233333639     # ST-LINK serial (optional)
    flash: cubeprog                     # cubeprog | openocd | pyocd | none
    firmware: fw/aiValidation_u585.elf  # image the flash strategy writes (optional)
    virtual: false                      # true for virtual boards (their results are `source: virtual`)
    slot: null                          # virtual boards: model slot the `none` strategy writes
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from hil_runner.boards.flash import STRATEGIES, FlashTarget
from hil_runner.boards.profiles import BoardProfile, get_profile
from hil_runner.transport import parse_descriptor


@dataclass(frozen=True)
class Board:
    name: str
    profile: BoardProfile
    port: str
    flash: str = "none"
    probe: str | None = None
    firmware: Path | None = None
    virtual: bool = False
    slot: Path | None = None
    external_loader: str | None = None

    def flash_target(self) -> FlashTarget:
        return FlashTarget(
            board=self.name, profile=self.profile, probe=self.probe, slot=self.slot,
            external_loader=self.external_loader,
        )  # fmt: skip


KEYS = {"name", "profile", "port", "flash", "probe", "firmware", "virtual", "slot", "external_loader"}


def load_inventory(path: Path) -> list[Board]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: board inventory not found")
    data = yaml.safe_load(path.read_text()) or {}
    entries = data.get("boards") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty 'boards:' list")
    boards, seen = [], set()
    for number, entry in enumerate(entries):
        where = f"{path}: boards[{number}]"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - KEYS)
        missing = sorted({"name", "profile", "port"} - set(entry))
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {unknown}, missing keys {missing}")
        name = str(entry["name"])
        if name in seen:
            raise ValueError(f"{where}: duplicate board name {name!r}")
        seen.add(name)
        flash = str(entry.get("flash", "none"))
        if flash not in STRATEGIES:
            raise ValueError(f"{where}: flash {flash!r} is not one of {sorted(STRATEGIES)}")
        try:
            profile = get_profile(str(entry["profile"]))
            parse_descriptor(str(entry["port"]))
        except Exception as error:
            raise ValueError(f"{where}: {error}") from error
        boards.append(
            Board(
                name=name,
                profile=profile,
                port=str(entry["port"]),
                flash=flash,
                probe=entry.get("probe"),
                firmware=_path(entry.get("firmware"), path),
                virtual=bool(entry.get("virtual", False)),
                slot=_path(entry.get("slot"), path),
                external_loader=entry.get("external_loader"),
            )
        )
    return boards


def _path(value: object, inventory: Path) -> Path | None:
    if value in (None, ""):
        return None
    candidate = Path(str(value))
    return candidate if candidate.is_absolute() else inventory.parent / candidate


def dump_inventory(boards: list[Board], path: Path) -> None:
    from aed.records import atomic_write_text

    rows = []
    for board in boards:
        row = {"name": board.name, "profile": board.profile.name, "port": board.port, "flash": board.flash,
               "virtual": board.virtual}  # fmt: skip
        for key in ("probe", "firmware", "slot", "external_loader"):
            value = getattr(board, key)
            if value is not None:
                row[key] = str(value)
        rows.append(row)
    atomic_write_text(path, yaml.safe_dump({"boards": rows}, sort_keys=False))
