"""Transports fail fast and clearly: refused sockets, missing ports, exclusive serial open."""

from __future__ import annotations

import os
import socket
import time
import tty

import pytest

from hil_runner.errors import TransportError
from hil_runner.transport import open_transport


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_socket_fails_after_four_attempts() -> None:
    started = time.monotonic()
    with pytest.raises(TransportError, match=r"socket:127.0.0.1:\d+: cannot connect after 4 attempts"):
        open_transport(f"socket:127.0.0.1:{_free_port()}")
    assert time.monotonic() - started < 5.0


def test_missing_serial_port() -> None:
    with pytest.raises(
        TransportError, match="serial:/dev/does-not-exist:115200: cannot open after 4 attempts"
    ):
        open_transport("serial:/dev/does-not-exist:115200")


def test_serial_port_is_opened_exclusively() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        descriptor = f"serial:{os.ttyname(slave)}:921600"
        with open_transport(descriptor) as first:
            with pytest.raises(TransportError, match="cannot open"):
                open_transport(descriptor)
            os.write(master, b"\xaa")
            assert first.read_some(1, 1.0) == b"\xaa"
            assert first.read_some(1, 0.05) == b""  # timeout, not a hang
        open_transport(descriptor).close()  # free again after close
    finally:
        os.close(master)
        os.close(slave)
