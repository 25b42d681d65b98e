"""Serving a VirtualDevice on a pty (the host opens the slave path like /dev/ttyACM0) or a TCP port (socket:)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import threading
import tty
from collections.abc import Callable
from pathlib import Path

from aed.records import atomic_write_text
from hil_runner.boards.profiles import BoardProfile
from hil_runner.vboard.device import VirtualDevice
from hil_runner.vboard.faults import NO_FAULTS, FaultPlan
from hil_runner.vboard.model import Estimator, VirtualModel

log = logging.getLogger(__name__)


class _FdLink:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def recv(self, n: int) -> bytes:
        try:
            return os.read(self.fd, n)
        except OSError:  # EIO: no slave open right now; treat as "nothing yet"
            return b""

    def send(self, data: bytes) -> None:
        written = os.write(self.fd, data)
        if written < len(data):  # a full pty buffer: finish the rest
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self.fd, view) :]


class _SocketLink:
    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def fileno(self) -> int:
        return self.conn.fileno()

    def recv(self, n: int) -> bytes:
        try:
            return self.conn.recv(n)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)


def loaded_marker(slot: Path) -> Path:
    return slot.with_name(slot.name + ".loaded")


class VirtualBoard:
    """A virtual board. `slot` emulates the flash: a model copied there by the `none` flash strategy is loaded at
    the next CMD_SYNC/CMD_NETWORK_INFO; `model_path` preloads a model."""

    def __init__(
        self,
        profile: BoardProfile,
        model_path: Path | None = None,
        slot: Path | None = None,
        faults: FaultPlan = NO_FAULTS,
        estimator: Estimator | None = None,
        seed: int = 0,
        realtime: bool = False,
        runtime: str = "auto",
    ) -> None:
        self.profile = profile
        self.runtime = runtime  # auto | litert | tflm (hil_runner.vboard.tflm)
        self.slot = Path(slot) if slot else None
        self.estimator = estimator
        self._loaded: VirtualModel | None = None
        self._slot_stamp: tuple[int, int] | None = None
        if model_path is not None:
            if self.slot is not None:
                self.slot.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(model_path, self.slot)
            else:
                self._loaded = VirtualModel(Path(model_path), profile, estimator, runtime)
        self._reload()
        self.device = VirtualDevice(profile, self.model, faults, seed=seed, realtime=realtime)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.descriptor = ""
        self._fds: list[int] = []
        self._server: socket.socket | None = None
        if self.slot is not None:
            self._start(self._watch_slot)

    def model(self) -> VirtualModel | None:
        return self._loaded

    def _reload(self) -> None:
        """Load the slot's model if it changed, and report the outcome in the `.loaded` marker (the `none`
        flash strategy waits for it, like a flash tool waits for the target to be programmed)."""
        if self.slot is None or not self.slot.exists():
            return
        stat = self.slot.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._slot_stamp:
            return
        self._slot_stamp = stamp
        marker = loaded_marker(self.slot)
        try:
            model = VirtualModel(self.slot, self.profile, self.estimator, self.runtime)
        except Exception as error:  # any load failure is reported to the flasher, the board keeps running
            log.error("%s: cannot load %s: %s", self.profile.name, self.slot, error)
            atomic_write_text(marker, f"error: {error}\n")
            self._loaded = None
            return
        self._loaded = model
        atomic_write_text(marker, model.sha256 + "\n")
        log.info("%s: loaded %s (%s)", self.profile.name, self.slot, model.sha256[:12])

    def _watch_slot(self) -> None:
        while not self.stop_event.wait(0.1):
            self._reload()

    # ---- serving ----------------------------------------------------------------------------------------------
    def serve_pty(self, baud: int | None = None) -> str:
        master, slave = os.openpty()
        tty.setraw(slave)
        # Keep the slave open here too, so the master never sees EIO between host sessions.
        self._fds += [master, slave]
        path = os.ttyname(slave)
        self.descriptor = f"serial:{path}:{baud or self.profile.baud}"
        self._start(lambda: self.device.serve(_FdLink(master), self.stop_event))
        return self.descriptor

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> str:
        server = socket.create_server((host, port))
        server.settimeout(0.2)
        self._server = server
        self.descriptor = f"socket:{host}:{server.getsockname()[1]}"
        self._start(self._accept_loop)
        return self.descriptor

    @property
    def tcp_port(self) -> int:
        assert self._server is not None
        return self._server.getsockname()[1]

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self.stop_event.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with conn:  # one client at a time, like a serial port
                self.device.serve(_SocketLink(conn), self.stop_event)

    def _start(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"vboard-{self.profile.name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=2.0)
        if self._server is not None:
            self._server.close()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> VirtualBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
