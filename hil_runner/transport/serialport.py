"""Serial transport (ST-LINK VCP or a virtual board's pty): 8N1, no flow control, exclusive open, 4 attempts."""

from __future__ import annotations

import errno
import os
import select
import time
from collections.abc import Callable

import serial  # provided by pyserial-labgrid (labgrid's fork, same API)
from serial.tools import list_ports

from aed.deadline import Deadline
from hil_runner.errors import TransportError
from hil_runner.transport.base import Transport

OPEN_ATTEMPTS, OPEN_PAUSE = 4, 0.2
WRITE_TIMEOUT = 5.0
ST_LINK_VID = 0x0483


def discover_port() -> str:
    """The first USB serial port, ST-LINK virtual COM ports first."""
    ports = [p for p in list_ports.comports() if p.vid is not None]
    ports.sort(key=lambda p: (p.vid != ST_LINK_VID, p.device))
    if not ports:
        raise TransportError("serial: no USB serial port found; give one, e.g. serial:/dev/ttyACM0:115200")
    return ports[0].device


def open_with_retries(descriptor: str, opener: Callable[[], serial.SerialBase]) -> serial.SerialBase:
    """A port that is briefly busy (re-enumerating, another process closing it) usually opens on a retry."""
    last_error: Exception | None = None
    started = time.monotonic()
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return opener()
        except (serial.SerialException, OSError, ValueError) as error:
            last_error = error
            if attempt < OPEN_ATTEMPTS - 1:
                time.sleep(OPEN_PAUSE)
    raise TransportError(
        f"{descriptor}: cannot open after {OPEN_ATTEMPTS} attempts in {time.monotonic() - started:.2f} s: {last_error}"
    )


class SerialTransport(Transport):
    def __init__(self, port: str | None, baud: int) -> None:
        port = port or discover_port()
        self.descriptor = f"serial:{port}:{baud}"
        self.port = open_with_retries(
            self.descriptor,
            lambda: serial.Serial(
                port, baud, bytesize=8, parity="N", stopbits=1, timeout=0.1, write_timeout=5.0,
                rtscts=False, xonxoff=False, exclusive=True,
            ),
        )  # fmt: skip

        # I/O goes straight to the descriptor: pyserial reconfigures the port (tcsetattr) whenever its timeout
        # changes, which would cost a syscall storm per packet at 193 packets per patch.
        self.fd = self.port.fileno()
        self.poller = select.poll()
        self.poller.register(self.fd, select.POLLIN)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        deadline = Deadline(WRITE_TIMEOUT)
        while view:
            try:
                view = view[os.write(self.fd, view) :]
            except BlockingIOError:
                if deadline.expired():
                    raise TransportError(
                        f"{self.descriptor}: write {deadline.describe()}, {len(view)} of {len(data)} bytes unsent"
                    ) from None
                select.select([], [self.fd], [], deadline.remaining())
            except OSError as error:
                raise TransportError(f"{self.descriptor}: write failed: {error}") from error

    def write_then_read_byte(self, data: bytes, timeout: float) -> bytes:
        """One request packet, then its sync byte: the hot path (192 per input patch). b"" on a timeout."""
        try:
            written = os.write(self.fd, data)
        except BlockingIOError:
            written = 0
        except OSError as error:
            raise TransportError(f"{self.descriptor}: write failed: {error}") from error
        if written < len(data):
            self.write(data[written:])
        return self.read_some(1, timeout)

    def read_some(self, n: int, timeout: float) -> bytes:
        try:
            if not self.poller.poll(max(timeout, 0.0) * 1000.0):
                return b""
            data = os.read(self.fd, n)
        except BlockingIOError:
            return b""
        except OSError as error:
            if error.errno == errno.EAGAIN:
                return b""
            raise TransportError(f"{self.descriptor}: read failed: {error}") from error
        if not data:  # readable but empty: the device end went away
            raise TransportError(f"{self.descriptor}: device disconnected (read returned no data)")
        return data

    def reset_input(self) -> None:
        self.port.reset_input_buffer()
        self.port.reset_output_buffer()

    def close(self) -> None:
        self.port.close()


class UrlSerialTransport(Transport):
    """A pyserial URL port (`rfc2217://host:port`, `loop://`): pyserial's own I/O, because these ports have no
    file descriptor. The read timeout stays fixed (changing it renegotiates an RFC 2217 port over the network) and
    reads loop until the caller's deadline."""

    GRANULARITY = 0.05

    def __init__(self, url: str, baud: int, descriptor: str | None = None) -> None:
        self.descriptor = descriptor or url
        # no write_timeout: pyserial's RFC 2217 client does not support one (writes go to a socket)
        self.port = open_with_retries(
            self.descriptor, lambda: serial.serial_for_url(url, baudrate=baud, timeout=self.GRANULARITY)
        )

    def write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as error:
            raise TransportError(f"{self.descriptor}: write failed: {error}") from error

    def read_some(self, n: int, timeout: float) -> bytes:
        deadline = Deadline(max(timeout, 0.0))
        try:
            while True:
                data = self.port.read(n)
                if data or deadline.expired():
                    return data
        except (serial.SerialException, OSError) as error:
            raise TransportError(f"{self.descriptor}: read failed: {error}") from error

    def reset_input(self) -> None:
        self.port.reset_input_buffer()

    def close(self) -> None:
        self.port.close()
