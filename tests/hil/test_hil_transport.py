"""Transports fail fast and clearly: refused sockets, missing ports, exclusive serial open."""

from __future__ import annotations

import os
import socket
import threading
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


def test_url_transport_reads_until_the_deadline() -> None:
    from hil_runner.transport.serialport import UrlSerialTransport

    with UrlSerialTransport("loop://", 115200) as link:
        link.write(b"\xaa\x01")
        assert link.read_some(2, 1.0) == b"\xaa\x01"
        started = time.monotonic()
        assert link.read_some(1, 0.2) == b""
        assert 0.15 < time.monotonic() - started < 1.0


@pytest.fixture
def rfc2217_board(vboard_factory, tiny_model):
    """A virtual board on a pty, shared over RFC 2217 like ser2net does for a labgrid exporter."""
    import serial
    from serial.rfc2217 import PortManager

    class PtyPort(serial.Serial):
        """A pty has no modem lines; ser2net would drive a real UART's."""

        cts = dsr = ri = cd = False

        def _update_rts_state(self) -> None:
            pass

        def _update_dtr_state(self) -> None:
            pass

    board = vboard_factory(model=tiny_model)
    port = PtyPort(board.descriptor.split(":")[1], 921600, timeout=0.05)
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(5.0)
        conn, _ = server.accept()
        conn.settimeout(0.05)

        class Writer:  # PortManager talks to the network through write()
            write = conn.sendall

        manager = PortManager(port, Writer())

        def to_network() -> None:
            while not stop.is_set():
                data = port.read(4096)
                if data:
                    conn.sendall(b"".join(manager.escape(data)))

        forwarder = threading.Thread(target=to_network, daemon=True)
        forwarder.start()
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            if not data:
                break
            port.write(b"".join(manager.filter(data)))
        stop.set()
        forwarder.join(timeout=5)  # before the port closes: a read on a closed port raises in the thread
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"rfc2217:127.0.0.1:{server.getsockname()[1]}:921600"
    stop.set()
    thread.join(timeout=5)
    server.close()
    port.close()


@pytest.mark.slow
def test_protocol_over_rfc2217(rfc2217_board, tiny_model) -> None:
    import numpy as np

    from hil_runner.litert import LiteRTModel
    from hil_runner.protocol.host import Timeouts, ValidationClient

    with open_transport(rfc2217_board) as link:
        client = ValidationClient(link, Timeouts(settle=0.05), where="rfc2217 board")
        assert client.connect().devid == 0x482
        [model] = client.models()
        x = np.random.default_rng(0).integers(-128, 128, size=model.inputs[0].shape).astype(np.int8)
        np.testing.assert_array_equal(client.run(model, [x]).outputs[0], LiteRTModel(tiny_model).run([x])[0])
