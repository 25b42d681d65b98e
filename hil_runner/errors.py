"""Error types of the HIL runner. Every failure maps to "not promotable"; messages name what was expected."""

from __future__ import annotations


class HilError(RuntimeError):
    """Base class: anything that stops a board from producing a trustworthy result."""


class TransportError(HilError):
    """The link could not be opened, or it broke (port busy, connection refused, closed by the peer)."""


class ProtocolError(HilError):
    """The bytes on the wire do not follow stm32msg v3.1 (bad header, undecodable message, wrong reqid...)."""


class ProtocolTimeout(ProtocolError, TimeoutError):
    """The device did not answer within the exchange's timeout."""


class DeviceError(HilError):
    """The device answered, but with an error (S_ERROR / an ack carrying an error code)."""


class BoardFailure(HilError):
    """A board failed during a job; carries the board name so that the job can retry elsewhere."""

    def __init__(self, board: str, cause: BaseException) -> None:
        super().__init__(f"board {board}: {cause}")
        self.board = board
        self.cause = cause
