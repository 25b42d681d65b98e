"""stm32msg v3.1 (ST's aiValidation protocol): message codec, packet framing, tensor encoding, host client."""

from hil_runner.protocol.generated import stm32msg_pb2 as pb

__all__ = ["pb"]
