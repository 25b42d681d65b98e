"""Socket transport: a TCP client to a plain byte relay (same packets, no extra framing); 4 connect attempts."""

from __future__ import annotations

import select
import socket
import time

from aed.deadline import Deadline
from hil_runner.errors import TransportError
from hil_runner.transport.base import Transport

CONNECT_ATTEMPTS, CONNECT_PAUSE, CONNECT_TIMEOUT = 4, 0.2, 2.0
WRITE_TIMEOUT = 5.0  # a peer that stops reading fails the write instead of blocking it forever


class SocketTransport(Transport):
    def __init__(self, host: str, port: int) -> None:
        self.descriptor = f"socket:{host}:{port}"
        self.sock = self._connect(host, port)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the total time sendall may take; reads wait in select() first, so they never block on it
        self.sock.settimeout(WRITE_TIMEOUT)

    def _connect(self, host: str, port: int) -> socket.socket:
        """Up to CONNECT_ATTEMPTS attempts within one CONNECT_TIMEOUT deadline (a host that drops SYNs must not
        cost CONNECT_ATTEMPTS times the time-out)."""
        deadline = Deadline(CONNECT_TIMEOUT)
        last_error: Exception | None = None
        attempts = 0
        while attempts < CONNECT_ATTEMPTS and not deadline.expired():
            attempts += 1
            try:
                return socket.create_connection((host, port), timeout=deadline.remaining())
            except OSError as error:
                last_error = error
            if attempts < CONNECT_ATTEMPTS:
                time.sleep(min(CONNECT_PAUSE, deadline.remaining()))
        raise TransportError(
            f"{self.descriptor}: cannot connect after {attempts} attempts in {deadline.elapsed():.2f} s "
            f"(limit {CONNECT_TIMEOUT:g} s): {last_error}"
        )

    def write(self, data: bytes) -> None:
        deadline = Deadline(WRITE_TIMEOUT)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise TransportError(
                f"{self.descriptor}: send {deadline.describe()}: the peer stopped reading"
            ) from None
        except OSError as error:
            raise TransportError(f"{self.descriptor}: send failed: {error}") from error

    def read_some(self, n: int, timeout: float) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        if not ready:
            return b""
        try:
            data = self.sock.recv(n)
        except OSError as error:
            raise TransportError(f"{self.descriptor}: receive failed: {error}") from error
        if not data:
            raise TransportError(f"{self.descriptor}: connection closed by the peer")
        return data

    def reset_input(self) -> None:
        while self.read_some(4096, 0.0):
            pass

    def close(self) -> None:
        self.sock.close()
