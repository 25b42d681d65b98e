"""Per-epoch training progress: a tqdm bar per phase on a terminal, one line per epoch anywhere else.

A `dvc repro` log, a Kubeflow task log or a redirected file is not a terminal, and tqdm stays silent there (or
floods it with carriage returns), so those get a plain line per epoch:

    train yamnet_256 fold-1 head epoch 3/50: loss 0.5123, accuracy 0.8310, val_accuracy 0.8000, 4.2 s

Split workers (train.jobs > 1) share one terminal, where several bars would overwrite each other: they always
print lines (`use_lines`, called by the worker initializer). Each line is one flushed write, so lines of parallel
workers never mix within a line.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from tqdm import tqdm

_lines_only = False


def use_lines() -> None:
    """This process prints lines even on a terminal (a split worker among others)."""
    global _lines_only
    _lines_only = True


def bars_wanted() -> bool:
    """A bar only on a terminal and in a process that has it to itself."""
    return not _lines_only and sys.stderr.isatty()


def _figure(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def epoch_line(label: str, phase: str, epoch: int, total: int, row: dict[str, Any], elapsed: float) -> str:
    """The non-terminal progress line of one epoch (`epoch` counts from 1 within the phase)."""
    figures = ", ".join(f"{name} {_figure(row.get(name))}" for name in ("loss", "accuracy", "val_accuracy"))
    return f"train {label} {phase} epoch {epoch}/{total}: {figures}, {elapsed:.1f} s"


class EpochProgress:
    """The progress of one phase's `total` epochs: `update(row)` after each epoch, `close()` at its end."""

    def __init__(self, label: str, phase: str, total: int) -> None:
        self.label, self.phase, self.total = label, phase, total
        self.started = time.perf_counter()
        self.done = 0
        self.bar = tqdm(total=total, desc=f"{label} {phase}", unit="epoch") if bars_wanted() else None

    def update(self, row: dict[str, Any], best_epoch: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(
                loss=_figure(row.get("loss")), val_acc=_figure(row.get("val_accuracy")), best=best_epoch
            )
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.started
        line = epoch_line(self.label, self.phase, self.done, self.total, row, elapsed)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
