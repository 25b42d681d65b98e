"""Socket transport: a TCP client to a plain byte relay (same packets, no extra framing); 4 connect attempts."""

from __future__ import annotations

import select
import socket
import time

from hil_runner.errors import TransportError
from hil_runner.transport.base import Transport

CONNECT_ATTEMPTS, CONNECT_PAUSE, CONNECT_TIMEOUT = 4, 0.2, 2.0


class SocketTransport(Transport):
    def __init__(self, host: str, port: int) -> None:
        self.descriptor = f"socket:{host}:{port}"
        last_error: Exception | None = None
        for attempt in range(CONNECT_ATTEMPTS):
            try:
                self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
                break
            except OSError as error:
                last_error = error
                if attempt < CONNECT_ATTEMPTS - 1:
                    time.sleep(CONNECT_PAUSE)
        else:
            raise TransportError(
                f"{self.descriptor}: cannot connect after {CONNECT_ATTEMPTS} attempts: {last_error}"
            )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(None)

    def write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
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
