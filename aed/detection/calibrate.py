"""The calibrated operating point: the post-processing that meets a false-alarm budget with the fewest misses.

`choose` tries every combination of the grid below on soundscapes built from TRAINING clips only (for each split,
its own model on soundscapes of its training clips: no clip a split tests on ever chooses its operating point),
keeps those at or under `target_false_alarms_per_hour`, and takes the one with the lowest miss rate (ties: fewer
false alarms, then the higher on_threshold, then less smoothing, shorter minimum duration and merge gap: the
simplest rule that does as well). When no point meets the target, the one with the fewest false alarms is taken
and the record says the target is not met.

The operating point is a per-model JSON file of PostProcessParams fields (aed.artifacts.OPERATING_POINT_FILE):
export_firmware writes it into the firmware header, streaming evaluation and `hil run --stream` read it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from aed.detection.postprocess import PostProcessParams
from aed.detection.streaming_eval import ScoredSet, counts, detections, rates
from aed.params import ParamsError, bounded
from aed.records import atomic_write_text


@dataclass(frozen=True)
class CalibrateParams:
    """The `calibrate` section: the false-alarm budget and the grid of post-processing tried."""

    target_false_alarms_per_hour: float = bounded(1.0, 0.0)
    smoothing_grid: list[int] = field(default_factory=lambda: [1, 2, 3])
    on_threshold_grid: list[float] = field(
        default_factory=lambda: [round(0.3 + 0.05 * i, 2) for i in range(14)]
    )
    off_ratio_grid: list[float] = field(default_factory=lambda: [1.0, 0.7])  # off_threshold / on_threshold
    min_duration_grid: list[float] = field(default_factory=lambda: [0.0, 1.0])
    merge_gap_grid: list[float] = field(default_factory=lambda: [0.0, 1.0])

    def __post_init__(self) -> None:
        checks = {
            "smoothing_grid": lambda v: isinstance(v, int) and v >= 1,
            "on_threshold_grid": lambda v: 0.0 < v <= 1.0,
            "off_ratio_grid": lambda v: 0.0 < v <= 1.0,
            "min_duration_grid": lambda v: v >= 0.0,
            "merge_gap_grid": lambda v: v >= 0.0,
        }
        for name, valid in checks.items():
            values = getattr(self, name)
            bad = [v for v in values if not valid(v)]
            if not values or bad:
                raise ValueError(f"{name}: expected a non-empty list of valid values, got {values}")

    def points(self) -> list[PostProcessParams]:
        grid = itertools.product(self.smoothing_grid, self.on_threshold_grid, self.off_ratio_grid,
                                 self.min_duration_grid, self.merge_gap_grid)  # fmt: skip
        return [PostProcessParams(smoothing_windows=n, on_threshold=on, off_threshold=round(on * ratio, 6),
                                  min_duration_s=duration, merge_gap_s=gap)
                for n, on, ratio, duration, gap in grid]  # fmt: skip


@dataclass(frozen=True)
class Choice:
    point: PostProcessParams
    false_alarms_per_hour: float
    miss_rate: float | None
    meets_target: bool
    tried: int


def _rank(item: tuple[PostProcessParams, dict]) -> tuple:
    point, figures = item
    miss = figures["miss_rate"] if figures["miss_rate"] is not None else 0.0
    return (miss, figures["false_alarms_per_hour"], -point.on_threshold, point.smoothing_windows,
            point.min_duration_s, point.merge_gap_s, -point.off_threshold)  # fmt: skip


def choose(
    scored: ScoredSet, params: CalibrateParams, collar_s: float, background: Collection[str] = ()
) -> Choice:
    """The operating point of the grid (module docstring) on a set scored from training clips."""
    if scored.hours <= 0:
        raise ValueError("calibrate: the calibration soundscapes hold no audio")
    tried = []
    for point in params.points():
        tally = counts(scored.truth, detections(scored, point, background), collar_s)
        tried.append((point, rates(tally, scored.hours)))
    feasible = [t for t in tried if t[1]["false_alarms_per_hour"] <= params.target_false_alarms_per_hour]
    if feasible:
        point, figures = min(feasible, key=_rank)
    else:  # nothing meets the budget: the quietest point, said so in the record
        point, figures = min(tried, key=lambda t: (t[1]["false_alarms_per_hour"], *_rank(t)))
    return Choice(point, figures["false_alarms_per_hour"], figures["miss_rate"], bool(feasible), len(tried))


def operating_point_dict(point: PostProcessParams) -> dict:
    return {name: getattr(point, name) for name in PostProcessParams.__dataclass_fields__}


def write_operating_point(path: Path, point: PostProcessParams) -> None:
    atomic_write_text(Path(path), json.dumps(operating_point_dict(point), indent=2) + "\n")


_KEY_LINE = re.compile(r"^(?P<indent>\s+)(?P<key>[A-Za-z_]+):(?P<value>[^#\n]*?)(?P<comment>\s+#.*)?$")


def update_params_section(params_path: Path, section: str, values: dict) -> None:
    """Sets `values` in one top-level section of a params file, keeping its comments and every other line.

    A key missing from the section is added at its end; a missing section is appended."""
    import yaml

    params_path = Path(params_path)
    lines = params_path.read_text(encoding="utf-8").splitlines()
    head = next(
        (i for i, line in enumerate(lines) if re.match(rf"^{re.escape(section)}:\s*(#.*)?$", line)), None
    )
    if head is None:
        lines += ["", f"{section}:"] + [f"  {key}: {json.dumps(value)}" for key, value in values.items()]
    else:
        end = next((i for i in range(head + 1, len(lines)) if lines[i] and not lines[i][0].isspace()
                    and not lines[i].startswith("#")), len(lines))  # fmt: skip
        missing = dict(values)
        for i in range(head + 1, end):
            match = _KEY_LINE.match(lines[i])
            if match and match["key"] in missing and len(match["indent"]) == 2:
                value = json.dumps(missing.pop(match["key"]))
                lines[i] = f"{match['indent']}{match['key']}: {value}{match['comment'] or ''}"
        last = max((i for i in range(head, end) if lines[i].strip()), default=head)
        lines[last + 1 : last + 1] = [f"  {key}: {json.dumps(value)}" for key, value in missing.items()]
    text = "\n".join(lines) + "\n"
    written = (yaml.safe_load(text) or {}).get(section) or {}
    wrong = {key: written.get(key) for key, value in values.items() if written.get(key) != value}
    if wrong:  # never leave a params file that does not say what was chosen
        raise ParamsError(f"{params_path}: could not set {section}.{sorted(wrong)} in place; edit it by hand")
    atomic_write_text(params_path, text)
