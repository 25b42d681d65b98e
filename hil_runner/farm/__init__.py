"""Farm access: which board a job gets, exclusively, for how long. `Lease` is what a job sees."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hil_runner.boards.inventory import Board


class Flasher(Protocol):
    """A farm's driver that programs the leased board (labgrid: the probe a place exports)."""

    name: str

    def flash(self, image: Path, timeout: float) -> None: ...


@dataclass(frozen=True)
class Lease:
    board: Board
    descriptor: str  # transport descriptor to open for this lease
    via: str  # "local" | "labgrid:<place>"
    flasher: Flasher | None = None  # None: the board's own flash strategy (board.flash)
