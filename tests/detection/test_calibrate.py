"""Calibration: the grid point meeting the false-alarm budget with the fewest misses, the operating point file, and
params.yaml's detect: section written in place."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aed.detection.calibrate import (
    CalibrateParams,
    choose,
    operating_point_dict,
    update_params_section,
    write_operating_point,
)
from aed.detection.postprocess import PostProcessParams, load_operating_point
from aed.detection.streaming_eval import ScoredSet
from aed.params import ParamsError, from_dict

HOUR = 3600.0


def _scored() -> ScoredSet:
    """One hour, one class. Three real dogs score 0.9, 0.9 and 0.6; a door slam scores 0.7 once. Thresholds above
    0.7 miss one dog and raise no alarm; 0.6 finds every dog at one false alarm; 0.5 and below, the same."""
    starts = np.arange(0.0, HOUR, 0.5)
    scores = np.full((starts.size, 1), 0.05)
    for at, value in ((100.0, 0.9), (1000.0, 0.9), (2000.0, 0.6), (3000.0, 0.7)):
        scores[(starts >= at) & (starts < at + 1.0), 0] = value
    truth = pd.DataFrame(
        [("a.wav", at, at + 1.5, "dog") for at in (100.0, 1000.0, 2000.0)],
        columns=["filename", "onset", "offset", "event_label"],
    )
    return ScoredSet(truth, {"a.wav": HOUR}, {"a.wav": starts}, {"a.wav": scores}, 0.96, ["dog"])


GRID = CalibrateParams(smoothing_grid=[1], on_threshold_grid=[0.5, 0.6, 0.8], off_ratio_grid=[1.0],
                       min_duration_grid=[0.0], merge_gap_grid=[0.0])  # fmt: skip


def test_fewest_misses_within_the_budget() -> None:
    loose = choose(_scored(), GRID, collar_s=1.0)  # budget 1 per hour: the slam is affordable
    assert loose.meets_target and loose.miss_rate == 0.0 and loose.false_alarms_per_hour == 1.0
    assert loose.point.on_threshold == 0.6  # 0.5 does as well: the higher threshold is kept
    strict = dataclass_replace(GRID, target_false_alarms_per_hour=0.5)
    chosen = choose(_scored(), strict, collar_s=1.0)
    assert chosen.meets_target and chosen.point.on_threshold == 0.8
    assert chosen.false_alarms_per_hour == 0.0 and chosen.miss_rate == pytest.approx(1 / 3)
    assert chosen.tried == 3


def test_no_point_meets_the_budget_is_said() -> None:
    grid = dataclass_replace(GRID, on_threshold_grid=[0.5, 0.6], target_false_alarms_per_hour=0.0)
    chosen = choose(_scored(), grid, collar_s=1.0)
    assert not chosen.meets_target and chosen.false_alarms_per_hour == 1.0


def dataclass_replace(params: CalibrateParams, **changes) -> CalibrateParams:
    import dataclasses

    return dataclasses.replace(params, **changes)


def test_operating_point_file_round_trip_and_bad_files(tmp_path: Path) -> None:
    point = PostProcessParams(smoothing_windows=2, on_threshold=0.7, off_threshold=0.49, min_duration_s=1.0)
    write_operating_point(tmp_path / "postprocess.json", point)
    assert load_operating_point(tmp_path / "postprocess.json") == point
    with pytest.raises(ParamsError, match="not found .run aed calibrate"):
        load_operating_point(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ParamsError, match="bad.json: not a readable JSON"):
        load_operating_point(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text(json.dumps({**operating_point_dict(point), "off_threshold": 0.9}))
    with pytest.raises(ParamsError, match=r"wrong.json.off_threshold: 0.9 must be <= on_threshold"):
        load_operating_point(tmp_path / "wrong.json")
    (tmp_path / "extra.json").write_text(json.dumps({"threshold": 0.5}))
    with pytest.raises(ParamsError, match="unknown key"):
        load_operating_point(tmp_path / "extra.json")


PARAMS = """\
patch:
  n_mels: 64

detect:
  # how detect runs
  hop_s: 0.5                # seconds between windows
  smoothing_windows: 3      # moving average
  on_threshold: 0.6         # starts an event
  off_threshold: 0.4

export_firmware:
  golden_seed: 0
"""


def test_detect_section_written_in_place(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    point = operating_point_dict(PostProcessParams(smoothing_windows=2, on_threshold=0.8, off_threshold=0.56))
    update_params_section(path, "detect", point)
    text = path.read_text()
    data = yaml.safe_load(text)
    assert {key: data["detect"][key] for key in point} == point
    assert data["detect"]["hop_s"] == 0.5 and data["export_firmware"] == {"golden_seed": 0}
    assert "  smoothing_windows: 2      # moving average" in text and "# how detect runs" in text
    assert text.index("merge_gap_s") < text.index("export_firmware")  # the added keys stay in the section
    bare = tmp_path / "bare.yaml"
    bare.write_text("patch:\n  n_mels: 64\n")
    update_params_section(bare, "detect", point)
    assert yaml.safe_load(bare.read_text())["detect"] == point


def test_bad_grids() -> None:
    with pytest.raises(ParamsError, match="calibrate.on_threshold_grid"):
        from_dict(CalibrateParams, {"on_threshold_grid": [0.5, 1.5]}, "calibrate")
    with pytest.raises(ParamsError, match="calibrate.smoothing_grid"):
        from_dict(CalibrateParams, {"smoothing_grid": []}, "calibrate")
    with pytest.raises(ParamsError, match="calibrate.target_false_alarms_per_hour"):
        from_dict(CalibrateParams, {"target_false_alarms_per_hour": -1}, "calibrate")
