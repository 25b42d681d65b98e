"""The class names that mean "no event": a model's background class and FSD50K's `other`.

A module of its own, without imports, so that detection, evaluation and the firmware export can ask which classes
never make events without importing the dataset layouts.
"""

from __future__ import annotations

from collections.abc import Iterable

BACKGROUND_LABEL = (
    "background"  # drawn from non-target audio by validate.background (aed.datasets.background)
)
UNKNOWN_LABEL = "other"  # FSD50K's out-of-vocabulary class (aed.datasets.fsd50k)
NO_EVENT_LABELS = (BACKGROUND_LABEL, UNKNOWN_LABEL)


def background_classes(class_names: Iterable[str]) -> list[str]:
    """The model's classes that mean "no event" (pass them as `background=` to aed.detection)."""
    return [name for name in class_names if name in NO_EVENT_LABELS]
