from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aed.splits import Split
from aed.training.trainer import teacher_probabilities


def _write_layout(root: Path, test: list[str]) -> None:
    root.mkdir(parents=True)
    layout = {"splits": {"fold-1": {"train": ["2-a", "3-a"], "val": ["4-a"], "test": test}}}
    (root / "splits.json").write_text(json.dumps(layout))


def test_teacher_with_other_test_clips_is_refused(tmp_path: Path) -> None:
    """A teacher trained on another split could have seen this split's test clips: refused."""
    _write_layout(tmp_path / "teacher", test=["5-a"])
    split = Split("fold-1", 1, ("2-a", "3-a"), ("4-a",), ("1-a",))
    with pytest.raises(ValueError, match="test clips differ"):
        teacher_probabilities(tmp_path / "teacher", split, np.zeros((1, 64, 96, 1), np.float32))


def test_missing_teacher_is_named(tmp_path: Path) -> None:
    split = Split("fold-1", 1, ("2-a",), (), ("1-a",))
    with pytest.raises(FileNotFoundError, match="splits.json"):
        teacher_probabilities(tmp_path / "nowhere", split, np.zeros((1, 64, 96, 1), np.float32))
