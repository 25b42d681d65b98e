"""The embedded default farm: boards from an inventory file, one job per board through lock files."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

from hil_runner.boards.inventory import Board
from hil_runner.errors import HilError
from hil_runner.farm import Lease
from hil_runner.farm.locks import LockBusy, try_lock


class LocalFarm:
    def __init__(self, boards: list[Board], lock_dir: Path, wait_timeout: float = 60.0) -> None:
        self.boards = boards
        self.lock_dir = Path(lock_dir)
        self.wait_timeout = wait_timeout

    def candidates(self, profile: str, exclude: AbstractSet[str]) -> list[Board]:
        return [b for b in self.boards if b.profile.name == profile and b.name not in exclude]

    @contextlib.contextmanager
    def lease(self, profile: str, exclude: AbstractSet[str] = frozenset()) -> Iterator[Lease]:
        boards = self.candidates(profile, exclude)
        if not boards:
            raise HilError(
                f"no board with profile {profile!r} left in the inventory (excluded: {sorted(exclude)})"
            )
        deadline = time.monotonic() + self.wait_timeout
        while True:
            busy = []
            for board in boards:
                try:
                    lock = try_lock(self.lock_dir, board.name)
                except LockBusy as error:
                    busy.append(str(error))
                    continue
                try:
                    yield Lease(board=board, descriptor=board.port, via="local")
                finally:
                    lock.release()
                return
            if time.monotonic() > deadline:
                raise HilError(f"no free {profile} board within {self.wait_timeout:.0f} s: {'; '.join(busy)}")
            time.sleep(0.2)
