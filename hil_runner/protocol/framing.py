"""Packet framing of stm32msg v3.1 (reference page section 2).

Host -> device: length-delimited message cut into 32-byte chunks, each sent as a 33-byte packet (byte 0 = chunk
length); the device answers every non-final packet with one sync byte (0xAA) before the host sends the next.
Device -> host: the bare message in 33-byte packets, 0x80 set in the header of the last one, no syncs.
Every read has a deadline; a malformed packet raises ProtocolError naming what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from google.protobuf.internal.decoder import _DecodeVarint32
from google.protobuf.internal.encoder import _VarintBytes
from google.protobuf.message import DecodeError, Message

from aed.deadline import Deadline
from hil_runner.errors import ProtocolError, ProtocolTimeout

PAYLOAD = 32
PACKET = 33
EOM_FLAG = 0x80
SIZE_MASK = 0x7F
SYNC = 0xAA


class ByteLink(Protocol):
    """What framing needs from a transport."""

    def write(self, data: bytes) -> None: ...

    def read_some(self, n: int, timeout: float) -> bytes: ...


def read_exact(link: ByteLink, n: int, timeout: float | Deadline, what: str | Callable[[], str]) -> bytes:
    """Read exactly n bytes before the deadline, else ProtocolTimeout naming what was awaited.

    `timeout` is a number of seconds or a Deadline shared with the caller's exchange: the deadline starts before
    the first read, so partial reads never restart the wait. `what` may be a callable so that hot loops (193 sync
    bytes per patch) do not format messages that are only needed on failure."""
    deadline = Deadline.of(timeout)
    data = link.read_some(n, deadline.remaining())
    if len(data) == n:  # the common case: one read
        return data
    buffer = bytearray(data)
    while len(buffer) < n:
        if deadline.expired():
            label = what() if callable(what) else what
            raise ProtocolTimeout(
                f"{deadline.describe()} waiting for {label}: expected {n} bytes, got {len(buffer)}"
            )
        buffer += link.read_some(n - len(buffer), deadline.remaining())
    return bytes(buffer)


def delimited(message: Message) -> bytes:
    body = message.SerializeToString()
    return _VarintBytes(len(body)) + body


def host_packets(message: Message) -> list[bytes]:
    """Request packets: the delimited message in 32-byte chunks, header = chunk length, zero padded."""
    data = delimited(message)
    return [_packet(data[i : i + PAYLOAD], len(data[i : i + PAYLOAD])) for i in range(0, len(data), PAYLOAD)]


def device_packets(message: Message) -> list[bytes]:
    """Response packets: the bare message, full non-final packets, 0x80 on the last header."""
    data = message.SerializeToString() or b""
    chunks = [data[i : i + PAYLOAD] for i in range(0, len(data), PAYLOAD)] or [b""]
    packets = [_packet(chunk, PAYLOAD) for chunk in chunks[:-1]]
    packets.append(_packet(chunks[-1], EOM_FLAG | len(chunks[-1])))
    return packets


def _packet(chunk: bytes, header: int) -> bytes:
    return bytes([header]) + chunk + bytes(PAYLOAD - len(chunk))


def send_request(link: ByteLink, message: Message, sync_timeout: float) -> None:
    """Send a request packet by packet, waiting for the device's sync byte between packets."""
    packets = host_packets(message)
    last = len(packets) - 1
    exchange = getattr(link, "write_then_read_byte", None)  # a transport's fast path, else write + read_exact
    for number, packet in enumerate(packets):
        if number == last:
            link.write(packet)
            break
        if exchange is not None:
            deadline = Deadline(sync_timeout)
            sync = exchange(packet, sync_timeout)
            if not sync:
                raise ProtocolTimeout(
                    f"{deadline.describe()} waiting for {_sync_what(number, len(packets))}: "
                    f"expected 1 bytes, got 0"
                )
        else:
            link.write(packet)
            sync = read_exact(link, 1, sync_timeout, lambda n=number: _sync_what(n, len(packets)))
        if sync[0] != SYNC:
            raise ProtocolError(f"expected {_sync_what(number, len(packets))}, got 0x{sync[0]:02x}")


def _sync_what(number: int, total: int) -> str:
    return f"sync byte 0xAA after request packet {number + 1}/{total}"


def receive_response(link: ByteLink, message: Message, timeout: float | Deadline, what: str) -> Message:
    """Read device packets until the end-of-message flag and parse them into `message` (cleared first).

    One deadline covers the whole message (a caller may pass its own, e.g. covering skipped device logs)."""
    deadline = Deadline.of(timeout)
    body = bytearray()
    count = 0
    while True:
        packet = read_exact(link, PACKET, deadline, f"{what} (packet {count + 1})")
        count += 1
        header = packet[0]
        size = header & SIZE_MASK
        if size > PAYLOAD:
            raise ProtocolError(
                f"{what}: packet {count} header 0x{header:02x}: expected a chunk length 0..32 "
                f"(0x80 flag on the last packet)"
            )
        if not header & EOM_FLAG:
            if size != PAYLOAD:
                raise ProtocolError(
                    f"{what}: non-final packet {count} header 0x{header:02x}: expected a full 32-byte chunk"
                )
            body += packet[1:PACKET]
            continue
        body += packet[1 : 1 + size]
        break
    message.Clear()
    try:
        message.ParseFromString(bytes(body))
    except DecodeError as error:
        raise ProtocolError(
            f"{what}: expected a valid {message.DESCRIPTOR.name} in {count} packet(s), "
            f"got {len(body)} undecodable bytes ({error})"
        ) from error
    return message


class RequestAssembler:
    """Device side (section 2.3): accumulate packets until the delimited message is complete."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._needed: int | None = None  # prefix + message length, once the varint prefix is readable

    def feed(self, packet: bytes) -> bytes | None:
        """Add one 33-byte packet; return the message body once complete, else None (caller sends a sync)."""
        if len(packet) != PACKET:
            raise ProtocolError(f"expected a {PACKET}-byte request packet, got {len(packet)} bytes")
        size = packet[0]
        if not 1 <= size <= PAYLOAD:
            self.clear()
            raise ProtocolError(f"request packet header 0x{size:02x}: expected a chunk length 1..32")
        self.buffer += packet[1 : 1 + size]
        if self._needed is None:
            try:
                length, start = _DecodeVarint32(bytes(self.buffer[:10]), 0)
            except (IndexError, DecodeError):
                return None
            self._needed = start + length
            self._start = start
        if len(self.buffer) < self._needed:
            return None
        body = bytes(self.buffer[self._start : self._needed])
        del self.buffer[: self._needed]
        self._needed = None
        return body

    def clear(self) -> None:
        self.buffer.clear()
        self._needed = None
