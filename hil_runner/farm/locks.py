"""One job per board: a lock file per board created with O_EXCL, holding the owner's host and pid.

A lock left by a dead process (same host, pid gone) is stale and is recovered: it is renamed away atomically (only one
contender wins the rename) and the lock is retried.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path


class LockBusy(RuntimeError):
    pass


@dataclass
class BoardLock:
    path: Path
    owner: dict

    def release(self) -> None:
        try:
            current = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if current.get("token") == self.owner["token"]:
            self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(path: Path) -> bool:
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        # An unreadable lock older than a few seconds is a crash between create and write.
        return time.time() - path.stat().st_mtime > 5.0
    return owner.get("host") == socket.gethostname() and not _alive(int(owner.get("pid", -1)))


def try_lock(directory: Path, board: str) -> BoardLock:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{board}.lock"
    owner = {"board": board, "host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
             "token": os.urandom(8).hex()}  # fmt: skip
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if is_stale(path):
                graveyard = path.with_name(f".{path.name}.stale.{os.getpid()}.{time.monotonic_ns()}")
                try:
                    os.rename(path, graveyard)
                    graveyard.unlink(missing_ok=True)
                except FileNotFoundError:
                    pass
                continue
            raise LockBusy(f"board {board} is locked by {_describe(path)}") from None
        with os.fdopen(fd, "w") as handle:
            json.dump(owner, handle)
        return BoardLock(path, owner)
    raise LockBusy(f"board {board}: lock {path} keeps coming back")


def _describe(path: Path) -> str:
    try:
        owner = json.loads(path.read_text())
        return f"pid {owner.get('pid')} on {owner.get('host')}"
    except (OSError, ValueError):
        return str(path)
