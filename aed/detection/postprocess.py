"""Window scores -> events: per-class smoothing, hysteresis, gap merging, minimum duration.

Every step uses only running sums and comparisons, so a board can apply the same rules to its outputs window by
window (the firmware constants carry these fields), deciding `smoothing_windows // 2` windows late:

1. smoothing: each class's score at window i is the mean of its scores over the N = `smoothing_windows` windows
   i - N//2 .. i - N//2 + N - 1 (centred, so smoothing does not shift events in time; fewer windows at the
   start and end of the stream, where fewer exist);
2. hysteresis: a class turns on at the first window whose smoothed score is >= `on_threshold` and stays on until
   the first window whose smoothed score is < `off_threshold` (that window is not part of the event);
3. an event spans from its first window's start to its last window's end (start + window_s);
4. gap merging: events of one class whose gap (next onset - previous offset) is <= `merge_gap_s` become one;
5. minimum duration: events shorter than `min_duration_s` (after merging) are dropped.

Classes named as background never make events. An event's peak is the highest raw (unsmoothed) score of its
class over its windows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aed.params import ParamsError, bounded, from_dict

EVENT_COLUMNS = ("filename", "onset", "offset", "event_label")  # the DCASE layout (sed_eval, psds_eval)


@dataclass(frozen=True)
class PostProcessParams:
    """How window scores become events (module docstring); the calibrated operating point holds these fields."""

    smoothing_windows: int = bounded(1, 1, 1000)  # moving average over N windows, per class; 1: none
    on_threshold: float = bounded(0.5, 0.0, 1.0)  # smoothed score that starts an event
    off_threshold: float = bounded(0.5, 0.0, 1.0)  # smoothed score below which it ends (<= on_threshold)
    min_duration_s: float = bounded(0.0, 0.0)  # shorter events (after merging) are dropped
    merge_gap_s: float = bounded(0.0, 0.0)  # events of one class this close are merged

    def __post_init__(self) -> None:
        """ValueError "field: problem" (aed.params adds the section) for a setting that cannot work."""
        _check(
            isinstance(self.smoothing_windows, int) and not isinstance(self.smoothing_windows, bool),
            "smoothing_windows", f"expected an integer, got {self.smoothing_windows!r}",
        )  # fmt: skip
        _check(self.smoothing_windows >= 1, "smoothing_windows", f"{self.smoothing_windows} must be >= 1")
        for name in ("on_threshold", "off_threshold", "min_duration_s", "merge_gap_s"):
            value = getattr(self, name)
            _check(
                isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value),
                name, f"expected a finite number, got {value!r}",
            )  # fmt: skip
        for name in ("on_threshold", "off_threshold"):
            value = getattr(self, name)
            _check(0.0 <= value <= 1.0, name, f"{value} must be a probability in [0, 1]")
        _check(
            self.off_threshold <= self.on_threshold,
            "off_threshold", f"{self.off_threshold} must be <= on_threshold {self.on_threshold}",
        )  # fmt: skip
        _check(self.min_duration_s >= 0, "min_duration_s", f"{self.min_duration_s} must be >= 0")
        _check(self.merge_gap_s >= 0, "merge_gap_s", f"{self.merge_gap_s} must be >= 0")

    def postprocess_fields(self) -> dict:
        """The post-processing fields alone (a subclass such as DetectParams adds others)."""
        return {name: getattr(self, name) for name in PostProcessParams.__dataclass_fields__}


def _check(condition: bool, field: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{field}: {problem}")


@dataclass(frozen=True)
class Event:
    filename: str
    onset: float  # seconds from the start of the recording
    offset: float
    label: str
    peak: float  # highest raw score of the class over the event's windows

    def to_dict(self) -> dict:
        return asdict(self)


def smooth_scores(scores: np.ndarray, windows: int) -> np.ndarray:
    """Centred moving average per class: row i is the mean of rows i - windows//2 .. i - windows//2 + windows - 1
    that exist. A causal mean would start every event (windows - 1) windows late, on a window whose own score
    may be low; centring keeps the event where the model heard it."""
    scores = np.asarray(scores, np.float64)
    if windows == 1 or len(scores) == 0:
        return scores.copy()
    totals = np.concatenate([np.zeros((1, scores.shape[1])), np.cumsum(scores, axis=0)])
    first = np.clip(np.arange(len(scores)) - windows // 2, 0, len(scores))
    stop = np.clip(np.arange(len(scores)) - windows // 2 + windows, 0, len(scores))
    return (totals[stop] - totals[first]) / (stop - first)[:, None]


def hysteresis_runs(smoothed: np.ndarray, on: float, off: float) -> list[tuple[int, int]]:
    """[(first, last)] window indices (inclusive) where one class is on."""
    runs: list[tuple[int, int]] = []
    first = None
    for i, value in enumerate(smoothed):
        if first is None and value >= on:
            first = i
        elif first is not None and value < off:
            runs.append((first, i - 1))
            first = None
    if first is not None:
        runs.append((first, len(smoothed) - 1))
    return runs


def detect_events(
    scores: np.ndarray,
    starts_s: np.ndarray,
    window_s: float,
    class_names: Sequence[str],
    params: PostProcessParams,
    filename: str = "",
    background: Collection[str] = (),
) -> list[Event]:
    """Events of one recording from its (n_windows, n_classes) window probabilities, sorted by onset then label.

    starts_s holds each window's start in seconds (increasing); window_s is a window's length."""
    scores, starts_s = _checked_inputs(scores, starts_s, window_s, class_names, background)
    smoothed = smooth_scores(scores, params.smoothing_windows)
    events: list[Event] = []
    for column, label in enumerate(class_names):
        if label in background:
            continue
        spans = [
            [float(starts_s[a]), float(starts_s[b]) + window_s, float(scores[a : b + 1, column].max())]
            for a, b in hysteresis_runs(smoothed[:, column], params.on_threshold, params.off_threshold)
        ]
        for onset, offset, peak in _merge_then_drop_short(spans, params):
            events.append(Event(filename, round(onset, 6), round(offset, 6), label, round(peak, 6)))
    return sorted(events, key=lambda event: (event.onset, event.label, event.offset))


def _merge_then_drop_short(spans: list[list[float]], params: PostProcessParams) -> list[list[float]]:
    merged: list[list[float]] = []
    for onset, offset, peak in spans:
        # a tiny tolerance: window times are sums of float hops, a gap "equal" to merge_gap_s must merge
        if merged and onset - merged[-1][1] <= params.merge_gap_s + 1e-9:
            merged[-1][1] = max(merged[-1][1], offset)
            merged[-1][2] = max(merged[-1][2], peak)
        else:
            merged.append([onset, offset, peak])
    return [span for span in merged if span[1] - span[0] >= params.min_duration_s - 1e-9]


def _checked_inputs(
    scores: np.ndarray,
    starts_s: np.ndarray,
    window_s: float,
    class_names: Sequence[str],
    background: Collection[str],
) -> tuple[np.ndarray, np.ndarray]:
    """ValueError with one line for inputs that would give wrong events silently."""
    scores = np.asarray(scores, np.float64)
    starts_s = np.asarray(starts_s, np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores: expected (n_windows, n_classes), got shape {scores.shape}")
    if scores.shape[1] != len(class_names):
        raise ValueError(
            f"scores: the model gives {scores.shape[1]} classes, the class map names {len(class_names)}"
        )
    if len(starts_s) != len(scores):
        raise ValueError(f"starts_s: {len(starts_s)} window starts for {len(scores)} windows of scores")
    if not np.isfinite(scores).all():
        raise ValueError("scores: NaN or inf in the model's outputs")
    if len(starts_s) > 1 and not (np.diff(starts_s) > 0).all():
        raise ValueError("starts_s: window starts must increase")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s: {window_s} must be a positive number of seconds")
    unknown = sorted(set(background) - set(class_names))
    if unknown:
        raise ValueError(f"background: {unknown} not in the class map {list(class_names)}")
    return scores, starts_s


def events_table(events: Sequence[Event]):
    """The events as a DataFrame in the DCASE layout (filename, onset, offset, event_label) plus peak."""
    import pandas as pd

    rows = [(e.filename, e.onset, e.offset, e.label, e.peak) for e in events]
    return pd.DataFrame(rows, columns=[*EVENT_COLUMNS, "peak"])


def load_operating_point(path: Path) -> PostProcessParams:
    """The operating point file as PostProcessParams; one ParamsError line naming the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"{path}: operating point file not found (run aed calibrate)") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ParamsError(f"{path}: not a readable JSON operating point ({error})") from None
    return from_dict(PostProcessParams, data, str(path))
