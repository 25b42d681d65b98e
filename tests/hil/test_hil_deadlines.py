"""HIL reads end at their deadline, not later: serial (pty) and socket peers that stay silent or drip one byte at a
time, and the protocol host waiting for a result from a board that went silent. Each time-out message states the
time actually waited. These are the only timed asserts of the HIL area: each within 20 % of its deadline."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from hil_runner.errors import ProtocolError, ProtocolTimeout
from hil_runner.protocol import constants as c
from hil_runner.protocol import pb
from hil_runner.protocol.framing import PACKET, device_packets, read_exact, receive_response
from hil_runner.protocol.host import ModelInfo, Timeouts, ValidationClient
from hil_runner.protocol.tensors import TensorSpec
from hil_runner.transport import open_transport

pytestmark = pytest.mark.timeout(120)  # a regression that hangs fails here, not at the suite's 900 s

DEADLINE_S = 2.0
DRIP_S = 0.6  # one byte per DRIP_S: every read returns something, none completes the packet


def assert_near(elapsed: float, expected: float) -> None:
    assert abs(elapsed - expected) <= 0.2 * expected, f"waited {elapsed:.2f} s for a {expected} s deadline"


def assert_states_the_wait(message: str, limit: float) -> None:
    """The message says how long it waited (measured, close to the limit) and the configured limit."""
    match = re.search(r"timed out after (\d+\.\d+) s \(limit ([\d.]+) s\)", message)
    assert match, message
    assert_near(float(match[1]), limit)
    assert float(match[2]) == limit


class Dripper:
    """Writes one byte every DRIP_S to a file descriptor or socket until stopped."""

    def __init__(self, send) -> None:
        self.send = send
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(DRIP_S):
            try:
                self.send(b"\x01")
            except OSError:
                return

    def __enter__(self) -> Dripper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


@contextmanager
def pty_transport() -> Iterator[tuple[object, int]]:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with open_transport(f"serial:{os.ttyname(slave)}:115200") as link:
            yield link, master
    finally:
        os.close(master)
        os.close(slave)


@contextmanager
def socket_transport() -> Iterator[tuple[object, socket.socket]]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with open_transport(f"socket:127.0.0.1:{port}") as link:
            peer, _ = server.accept()
            with peer:
                yield link, peer


def timed_read(link, n: int = PACKET) -> tuple[float, str]:
    started = time.monotonic()
    with pytest.raises(ProtocolTimeout) as raised:
        read_exact(link, n, DEADLINE_S, "a test packet")
    return time.monotonic() - started, str(raised.value)


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "drip"])
def test_serial_read_exact_ends_at_its_deadline(drip: bool) -> None:
    with pty_transport() as (link, master):
        if drip:
            with Dripper(lambda data: os.write(master, data)):
                elapsed, message = timed_read(link)
        else:
            elapsed, message = timed_read(link)
    assert_near(elapsed, DEADLINE_S)
    assert_states_the_wait(message, DEADLINE_S)
    assert "waiting for a test packet" in message


@pytest.mark.parametrize("drip", [False, True], ids=["silent", "drip"])
def test_socket_read_exact_ends_at_its_deadline(drip: bool) -> None:
    with socket_transport() as (link, peer):
        if drip:
            with Dripper(peer.sendall):
                elapsed, message = timed_read(link)
        else:
            elapsed, message = timed_read(link)
    assert_near(elapsed, DEADLINE_S)
    assert_states_the_wait(message, DEADLINE_S)


def test_a_response_dripped_packet_by_packet_is_bounded_as_a_whole() -> None:
    """Non-final packets that each arrive in time must not extend the message's deadline."""
    full_packet = bytes([32]) + bytes(32)  # a valid non-final packet: the message never ends

    class PacketDrip:
        def write(self, data: bytes) -> None:
            pass

        def read_some(self, n: int, timeout: float) -> bytes:
            wait = min(timeout, 0.3)
            time.sleep(wait)
            return full_packet[:n] if wait == 0.3 else b""

    started = time.monotonic()
    with pytest.raises(ProtocolTimeout) as raised:
        receive_response(PacketDrip(), pb.respMsg(), DEADLINE_S, "answer to CMD_SYNC")
    assert_near(time.monotonic() - started, DEADLINE_S)
    assert_states_the_wait(str(raised.value), DEADLINE_S)


@pytest.mark.parametrize("tcp", [False, True], ids=["serial", "socket"])
def test_result_wait_from_a_silent_board_ends_at_the_result_timeout(
    vboard_factory, tiny_model, tcp: bool
) -> None:
    board = vboard_factory(model=tiny_model, faults=["stop=1"], tcp=tcp)  # silent once run 1's inputs are in
    timeouts = Timeouts(sync_byte=1.0, sync=1.0, sys_info=1.0, network_info=3.0, run_ack=1.0, input_ack=2.0,
                        result=DEADLINE_S, layer_tensor=0.5, settle=0.05)  # fmt: skip
    with open_transport(board.descriptor) as link:
        client = ValidationClient(link, timeouts, where="board vb0")
        client.connect()
        [model] = client.models()
        inputs = [np.zeros(spec.shape, dtype=spec.dtype) for spec in model.inputs]
        # the inputs are acknowledged before the board goes silent; time only the wait for the result
        original_expect_ack = client._expect_ack
        marks: list[float] = []

        def expect_ack_then_mark(*args, **kwargs):
            original_expect_ack(*args, **kwargs)
            marks.append(time.monotonic())

        client._expect_ack = expect_ack_then_mark
        with pytest.raises(ProtocolTimeout) as raised:
            client.run(model, inputs)
    elapsed = time.monotonic() - marks[-1]
    message = str(raised.value)
    assert_near(elapsed, DEADLINE_S)
    assert_states_the_wait(message, DEADLINE_S)
    assert "board vb0: operator report" in message


def test_a_socket_peer_that_stops_reading_fails_the_write(monkeypatch: pytest.MonkeyPatch) -> None:
    from hil_runner.errors import TransportError
    from hil_runner.transport import tcp

    monkeypatch.setattr(tcp, "WRITE_TIMEOUT", DEADLINE_S)
    with socket_transport() as (link, _peer):  # the peer never reads: the buffers fill, then sendall blocks
        started = time.monotonic()
        with pytest.raises(TransportError, match="the peer stopped reading") as raised:
            link.write(bytes(256 << 20))
    assert_near(time.monotonic() - started, DEADLINE_S)
    assert_states_the_wait(str(raised.value), DEADLINE_S)


class EndlessReports:
    """A device that acknowledges the run and its input, then sends per-layer operator reports forever, each one
    well within the result time-out."""

    def __init__(self) -> None:
        self.incoming = bytearray()
        for state in (pb.S_WAITING, pb.S_PROCESSING):
            self._queue(pb.respMsg(reqid=1, state=state, ack=pb.ackMsg(param=0, error=pb.E_NONE)))

    def _queue(self, message) -> None:
        self.incoming += b"".join(device_packets(message))

    def write(self, data: bytes) -> None:
        pass

    def read_some(self, n: int, timeout: float) -> bytes:
        if not self.incoming:
            op = pb.aiOperatorMsg(name="conv", type=(c.OP_INTERNAL | c.OP_WITHOUT_TENSOR) << 24, id=0,
                                  duration=0.1, counter_type=0, counters=[1, 0], stack_used=-1, heap_used=-1)  # fmt: skip
            self._queue(pb.respMsg(reqid=1, state=pb.S_PROCESSING, op=op))
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data


def test_per_layer_reports_that_never_end_are_refused() -> None:
    spec = TensorSpec("in", np.dtype(np.int8), (1, 4))
    model = ModelInfo(name="network", signature="", compile_datetime="", runtime="", runtime_version="",
                      tool_version="", rtid=0, n_nodes=3, n_macc=None, inputs=(spec,), outputs=(spec,),
                      activations_bytes=None, weights_bytes=None, runtime_desc="")  # fmt: skip
    client = ValidationClient(EndlessReports(), Timeouts(result=DEADLINE_S), where="board vb0")
    with pytest.raises(ProtocolError, match=r"board vb0: more than 76 per-layer operator reports .* 3 nodes"):
        client.run(model, [np.zeros((1, 4), dtype=np.int8)], mode=c.RUN_IO_ONLY | c.RUN_PER_LAYER)
