"""Streaming metrics against hand-worked examples: false alarms per hour, misses, onset / offset error, the DCASE
tools' F1, error rate and PSDS (psds_eval runs on pandas 3 and numpy 2 through our two replacements)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aed.detection.postprocess import PostProcessParams
from aed.detection.streaming_eval import (
    ScoredSet,
    StreamingParams,
    counts,
    evaluate_scored,
    false_alarms,
    mean_figures,
    psds,
    rates,
    sed_eval_figures,
    soundscape_classes,
    swept,
)
from aed.params import ParamsError, from_dict

COLUMNS = ["filename", "onset", "offset", "event_label"]
TRUTH = pd.DataFrame(
    [("a.wav", 2.0, 3.0, "dog"), ("a.wav", 10.0, 11.5, "cat"), ("b.wav", 5.0, 6.0, "dog")], columns=COLUMNS
)


def _table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def test_counts_hand_worked() -> None:
    found = _table([
        ("a.wav", 2.5, 3.5, "dog"),  # hits a's dog: onset off by 0.5, offset by 0.5
        ("a.wav", 20.0, 21.0, "dog"),  # nothing there: a false alarm
        ("a.wav", 10.2, 11.0, "dog"),  # a cat, called dog: a false alarm, and the cat is missed
        ("b.wav", 2.0, 4.5, "dog"),  # 0.5 s before b's dog: within the 1 s collar, a hit
    ])  # fmt: skip
    tally = counts(TRUTH, found, collar_s=1.0)
    assert (tally["events"], tally["missed"], tally["false_alarms"]) == (3, 1, 2)
    assert tally["per_class"]["cat"] == {"events": 1, "missed": 1, "false_alarms": 0}
    assert tally["per_class"]["dog"] == {"events": 2, "missed": 0, "false_alarms": 2}
    assert tally["onset_error_s"] == pytest.approx((0.5 + 3.0) / 2)
    assert tally["offset_error_s"] == pytest.approx((0.5 + 1.5) / 2)
    assert rates(tally, hours=0.5) == {"false_alarms_per_hour": 4.0, "miss_rate": pytest.approx(1 / 3)}
    strict = counts(TRUTH, found, collar_s=0.0)  # without a collar b's detection ends before its dog starts
    assert (strict["missed"], strict["false_alarms"]) == (2, 3)
    # the false alarms themselves (in the detections' order): the same ones counts tallies
    assert false_alarms(TRUTH, found, 1.0)[["onset", "event_label"]].values.tolist() == [
        [20.0, "dog"], [10.2, "dog"]]  # fmt: skip
    assert len(false_alarms(TRUTH, found, 0.0)) == strict["false_alarms"]
    assert false_alarms(TRUTH, found.iloc[:0], 1.0).empty


def test_sed_eval_perfect_and_empty() -> None:
    params = StreamingParams()
    perfect = sed_eval_figures(TRUTH, TRUTH, ["a.wav", "b.wav"], ["cat", "dog"], params)
    assert perfect == {"event_f1": 1.0, "error_rate": 0.0}
    nothing = sed_eval_figures(TRUTH, _table([]), ["a.wav", "b.wav"], ["cat", "dog"], params)
    assert nothing["event_f1"] == 0.0 and nothing["error_rate"] == pytest.approx(1.0)


def test_psds_runs_on_our_lock_and_is_right_on_hand_cases() -> None:
    params = StreamingParams()
    durations = {"a.wav": 1800.0, "b.wav": 1800.0}
    assert psds(TRUTH, durations, [TRUTH], params) == pytest.approx(1.0)
    half = _table([("a.wav", 2.0, 3.0, "dog"), ("b.wav", 5.0, 6.0, "dog")])  # every dog, no cat
    assert psds(TRUTH, durations, [half], params) == pytest.approx(0.5)
    assert psds(TRUTH.iloc[:0], durations, [half], params) is None


def _scored() -> ScoredSet:
    """20 s, two classes; dog scores 0.9 over its event, cat 0.8 over the wrong place."""
    starts = np.arange(0.0, 20.0, 0.5)
    scores = np.full((starts.size, 2), 0.05)
    scores[(starts >= 1.5) & (starts < 3.0), 1] = 0.9
    scores[(starts >= 15.0) & (starts < 16.0), 0] = 0.8
    truth = _table([("a.wav", 2.0, 3.0, "dog"), ("a.wav", 10.0, 11.5, "cat")])
    return ScoredSet(truth, {"a.wav": 20.0}, {"a.wav": starts}, {"a.wav": scores}, 0.96, ["cat", "dog"])


def test_evaluate_scored_hand_worked() -> None:
    params = StreamingParams(sweep_thresholds=[0.5, 0.85])
    result = evaluate_scored(_scored(), PostProcessParams(on_threshold=0.5, off_threshold=0.5), params)
    figures = result["figures"]
    assert figures["miss_rate"] == 0.5  # the cat
    assert figures["false_alarms_per_hour"] == pytest.approx(1 / (20 / 3600))  # the cat at 15 s
    assert figures["onset_error_s"] == pytest.approx(0.5) and figures["offset_error_s"] == pytest.approx(0.46)
    assert figures["event_f1"] == pytest.approx(0.5)  # 1 of 2 detections right, 1 of 2 events found
    assert figures["psds"] == pytest.approx(0.5)  # dog: all at no false positive; cat: never
    det = {(row["class"], row["threshold"]): row for row in result["det"]}
    assert det[("cat", 0.85)]["false_alarms_per_hour"] == 0.0  # 0.8 no longer crosses
    assert det[("cat", 0.5)]["false_alarms_per_hour"] == pytest.approx(180.0)
    ignored = evaluate_scored(
        _scored(), PostProcessParams(on_threshold=0.5, off_threshold=0.5), params, ["cat"]
    )
    assert ignored["figures"]["false_alarms_per_hour"] == 0.0  # a background class never makes events


def test_sweep_keeps_the_hysteresis_ratio() -> None:
    point = PostProcessParams(smoothing_windows=3, on_threshold=0.8, off_threshold=0.4, merge_gap_s=1.0)
    moved = swept(point, 0.5)
    assert (moved.on_threshold, moved.off_threshold, moved.smoothing_windows, moved.merge_gap_s) == (
        0.5, 0.25, 3, 1.0
    )  # fmt: skip


def test_mean_over_splits_skips_missing_figures() -> None:
    means = mean_figures({"fold-1": {"psds": 0.2, "onset_error_s": None}, "fold-2": {"psds": 0.4}})
    assert means == {"psds": pytest.approx(0.3), "onset_error_s": None}


def test_background_and_targets() -> None:
    params = StreamingParams(background_classes=["rain"])
    assert soundscape_classes(["dog", "other", "rain"], params) == (["dog"], ["rain", "other"])
    with pytest.raises(ValueError, match="leaves no target class"):
        soundscape_classes(["rain"], params)


def test_bad_streaming_params() -> None:
    with pytest.raises(ParamsError, match="streaming.sweep_thresholds"):
        from_dict(StreamingParams, {"sweep_thresholds": [0.5, 1.5]}, "streaming")
    with pytest.raises(ParamsError, match="streaming.background_classes"):
        from_dict(StreamingParams, {"background_classes": ["rain", "rain"]}, "streaming")
    with pytest.raises(ParamsError, match="streaming.eval_per_split"):
        from_dict(StreamingParams, {"eval_per_split": 0}, "streaming")
