"""Farm access: which board a job gets, exclusively, for how long. `Lease` is what a job sees."""

from __future__ import annotations

from dataclasses import dataclass

from hil_runner.boards.inventory import Board


@dataclass(frozen=True)
class Lease:
    board: Board
    descriptor: str  # transport descriptor to open for this lease
    via: str  # "local" | "labgrid:<place>"
