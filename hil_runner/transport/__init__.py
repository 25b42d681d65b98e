"""Transports for the validation protocol, selected by ST's descriptor syntax `<domain>[:<opt1>[:<opt2>]]`.

`serial:/dev/ttyACM0:115200`, `serial:921600`, `socket:127.0.0.1:10000`, `socket:10000`. The domain is mandatory
(ST's own resolver mistakes a bare device path for a library). One extension of ours, not ST's:
`rfc2217:<host>:<port>[:<baud>]`, a serial port shared over the network by ser2net (how a labgrid exporter publishes
a board's USB serial port).
"""

from __future__ import annotations

from dataclasses import dataclass

from hil_runner.errors import TransportError
from hil_runner.transport.base import Transport

DEFAULT_BAUD = 115200
DEFAULT_HOST, DEFAULT_PORT = "localhost", 10000


@dataclass(frozen=True)
class Descriptor:
    domain: str
    port: str | None = None  # serial device path, or TCP host
    baud: int = DEFAULT_BAUD
    tcp_port: int = DEFAULT_PORT

    def __str__(self) -> str:
        if self.domain == "rfc2217":
            return f"rfc2217:{self.port}:{self.tcp_port}:{self.baud}"
        if self.domain == "socket":
            return f"socket:{self.port}:{self.tcp_port}"
        return f"serial:{self.port}:{self.baud}" if self.port else f"serial:{self.baud}"


def _name_and_number(
    text: str, options: list[str], name: str | None, number: int, expected: str
) -> tuple[str | None, int]:
    """ST's `<domain>[:<name>][:<number>]` options, in either order: digits are the number, the rest the name."""
    if len(options) > 2:
        raise TransportError(f"descriptor {text!r}: expected {expected}")
    for option in options:
        if option.isdigit():
            number = int(option)
        elif option:
            name = option
    return name, number


def parse_descriptor(text: str) -> Descriptor:
    tokens = text.split(":")
    domain, options = tokens[0], tokens[1:]
    if domain == "serial":
        port, baud = _name_and_number(text, options, None, DEFAULT_BAUD, "serial[:<port>][:<baud>]")
        return Descriptor("serial", port=port, baud=baud)
    if domain == "socket":
        host, port = _name_and_number(text, options, DEFAULT_HOST, DEFAULT_PORT, "socket[:<host>][:<port>]")
        return Descriptor("socket", port=host, tcp_port=port)
    if domain == "rfc2217":
        if (
            len(options) not in (2, 3)
            or not options[1].isdigit()
            or (len(options) == 3 and not options[2].isdigit())
        ):
            raise TransportError(f"descriptor {text!r}: expected rfc2217:<host>:<port>[:<baud>]")
        baud = int(options[2]) if len(options) == 3 else DEFAULT_BAUD
        return Descriptor("rfc2217", port=options[0], tcp_port=int(options[1]), baud=baud)
    raise TransportError(
        f"descriptor {text!r}: unknown domain {domain!r}; expected 'serial:<port>:<baud>', 'socket:<host>:<port>' "
        f"or 'rfc2217:<host>:<port>[:<baud>]'"
    )


def open_transport(text: str | Descriptor) -> Transport:
    descriptor = text if isinstance(text, Descriptor) else parse_descriptor(text)
    if descriptor.domain == "socket":
        from hil_runner.transport.tcp import SocketTransport

        return SocketTransport(descriptor.port or DEFAULT_HOST, descriptor.tcp_port)
    if descriptor.domain == "rfc2217":
        from hil_runner.transport.serialport import UrlSerialTransport

        return UrlSerialTransport(
            f"rfc2217://{descriptor.port}:{descriptor.tcp_port}", descriptor.baud, str(descriptor)
        )
    from hil_runner.transport.serialport import SerialTransport

    return SerialTransport(descriptor.port, descriptor.baud)


__all__ = ["Descriptor", "Transport", "open_transport", "parse_descriptor"]
