"""The byte-link interface shared by serial and socket transports."""

from __future__ import annotations

from abc import ABC, abstractmethod


class Transport(ABC):
    descriptor: str

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def read_some(self, n: int, timeout: float) -> bytes:
        """Up to n bytes; returns b"" when nothing arrived within timeout seconds."""

    @abstractmethod
    def reset_input(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
