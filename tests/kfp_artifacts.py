"""A stand-in for the KFP artifact objects a task body receives, to call task bodies in-process as KFP would."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class FakeArtifact:
    """What a task body uses of a KFP artifact: its local path and its metadata."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.metadata: dict[str, Any] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metadata[name] = value

    def log_confusion_matrix(self, names: list[str], matrix: list[list[int]]) -> None:
        self.metadata["confusion"] = matrix
