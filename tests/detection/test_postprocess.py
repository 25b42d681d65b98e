"""Post-processing on hand-worked examples: smoothing, hysteresis, gap merging, minimum duration, background."""

from __future__ import annotations

import numpy as np
import pytest

from aed.detection.postprocess import (
    Event,
    PostProcessParams,
    detect_events,
    events_table,
    hysteresis_runs,
    smooth_scores,
)
from aed.params import ParamsError, from_dict

# One class over 7 windows, 0.5 s apart, each 0.5 s long (so an event's span is easy to work out by hand).
DOG = [0.1, 0.7, 0.5, 0.45, 0.2, 0.65, 0.1]
STARTS = np.arange(7) * 0.5


def events(column, params, window_s=0.5, starts=STARTS, **kwargs):
    scores = np.array(column, dtype=float)[:, None]
    return [
        (e.onset, e.offset, e.label, e.peak)
        for e in detect_events(scores, starts, window_s, ["dog"], params, **kwargs)
    ]


def test_smoothing_is_a_centred_mean_over_n_windows():
    scores = np.array([[0, 0, 1, 1, 0, 0], [3, 0, 0, 0, 0, 3]], dtype=float).T
    smoothed = smooth_scores(scores, 2)
    # N=2: windows i-1 and i: (0)/1, (0+0)/2, (0+1)/2, (1+1)/2, (1+0)/2, (0+0)/2; the first has only itself
    assert smoothed[:, 0].tolist() == [0.0, 0.0, 0.5, 1.0, 0.5, 0.0]
    assert smoothed[:, 1].tolist() == [3.0, 1.5, 0.0, 0.0, 0.0, 1.5]
    # N=3: windows i-1, i, i+1; at the ends only the two that exist
    assert smooth_scores(scores, 3)[:, 0].tolist() == [0.0, 1 / 3, 2 / 3, 2 / 3, 1 / 3, 0.0]
    assert smooth_scores(scores, 3)[:, 1].tolist() == [1.5, 1.0, 0.0, 0.0, 1.0, 1.5]
    assert smooth_scores(scores, 1).tolist() == scores.tolist()


def test_hysteresis_turns_on_at_on_threshold_and_off_below_off_threshold():
    assert hysteresis_runs(np.array(DOG), on=0.6, off=0.4) == [(1, 3), (5, 5)]
    # on == off: a plain threshold
    assert hysteresis_runs(np.array(DOG), on=0.6, off=0.6) == [(1, 1), (5, 5)]
    # an event still on at the end of the stream ends with the last window
    assert hysteresis_runs(np.array([0.0, 0.9, 0.9]), on=0.5, off=0.5) == [(1, 2)]


def test_events_span_first_window_start_to_last_window_end_with_raw_peak():
    params = PostProcessParams(on_threshold=0.6, off_threshold=0.4)
    # windows 1..3 -> 0.5 s to 1.5 + 0.5 s; window 5 -> 2.5 s to 3.0 s; gap 0.5 s > merge_gap_s 0
    assert events(DOG, params) == [(0.5, 2.0, "dog", 0.7), (2.5, 3.0, "dog", 0.65)]
    plain = PostProcessParams(on_threshold=0.6, off_threshold=0.6)
    assert events(DOG, plain) == [(0.5, 1.0, "dog", 0.7), (2.5, 3.0, "dog", 0.65)]


def test_overlapping_windows_give_the_window_length_not_the_hop():
    params = PostProcessParams(on_threshold=0.6, off_threshold=0.6)
    # 0.96 s windows every 0.5 s: window 1 spans 0.5 .. 1.46
    assert events(DOG, params, window_s=0.96)[0][:2] == (0.5, 1.46)


def test_gap_merging_joins_events_of_one_class_at_most_merge_gap_apart():
    assert events(DOG, PostProcessParams(on_threshold=0.6, off_threshold=0.4, merge_gap_s=0.5)) == [
        (0.5, 3.0, "dog", 0.7)
    ]
    assert len(events(DOG, PostProcessParams(on_threshold=0.6, off_threshold=0.4, merge_gap_s=0.49))) == 2


def test_min_duration_drops_short_events_after_merging():
    params = PostProcessParams(on_threshold=0.6, off_threshold=0.4, min_duration_s=1.0)
    assert events(DOG, params) == [(0.5, 2.0, "dog", 0.7)]  # 1.5 s kept, 0.5 s dropped
    # merged first (0.5 .. 3.0 = 2.5 s), then the duration is checked: kept although each part is short
    merged = PostProcessParams(on_threshold=0.6, off_threshold=0.6, merge_gap_s=1.5, min_duration_s=2.0)
    assert events(DOG, merged) == [(0.5, 3.0, "dog", 0.7)]
    assert events(DOG, PostProcessParams(on_threshold=0.6, off_threshold=0.4, min_duration_s=1.6)) == []


def test_smoothing_suppresses_a_one_window_spike_but_not_a_sustained_event():
    spike = [0.0, 0.0, 0.9, 0.0, 0.0, 0.0, 0.0]
    assert len(events(spike, PostProcessParams(on_threshold=0.6, off_threshold=0.6))) == 1
    assert events(spike, PostProcessParams(smoothing_windows=3, on_threshold=0.6, off_threshold=0.6)) == []
    sustained = [0.0, 0.9, 0.9, 0.9, 0.0, 0.0, 0.0]
    # smoothed (N=3, centred): .45, .6, .9, .6, .3, 0, 0 -> on at window 1, off at window 4 (0.3 < 0.4): the
    # event keeps the span of the loud windows (0.5 .. 1.5 + 0.5 s), not shifted late by the smoothing
    params = PostProcessParams(smoothing_windows=3, on_threshold=0.6, off_threshold=0.4)
    assert events(sustained, params) == [(0.5, 2.0, "dog", 0.9)]


def test_background_classes_never_make_events_and_events_are_sorted():
    scores = np.array([[0.9, 0.1, 0.0], [0.9, 0.0, 0.8], [0.1, 0.9, 0.0]])
    names = ["crying_baby", "rain", "dog"]
    params = PostProcessParams(on_threshold=0.5, off_threshold=0.5)
    found = detect_events(scores, np.arange(3.0), 1.0, names, params, "a.wav", background={"rain"})
    assert found == [Event("a.wav", 0.0, 2.0, "crying_baby", 0.9), Event("a.wav", 1.0, 2.0, "dog", 0.8)]
    with_rain = detect_events(scores, np.arange(3.0), 1.0, names, params, "a.wav")
    assert [e.label for e in with_rain] == ["crying_baby", "dog", "rain"]


@pytest.mark.parametrize(
    ("scores", "starts", "names", "background", "message"),
    [
        (
            np.zeros((3, 2)),
            np.arange(3.0),
            ["a", "b", "c"],
            (),
            "the model gives 2 classes, the class map names 3",
        ),
        (np.zeros((3, 1)), np.arange(2.0), ["a"], (), "starts_s: 2 window starts for 3 windows"),
        (np.full((3, 1), np.nan), np.arange(3.0), ["a"], (), "NaN or inf"),
        (np.zeros((3, 1)), np.array([0.0, 1.0, 1.0]), ["a"], (), "window starts must increase"),
        (np.zeros(3), np.arange(3.0), ["a"], (), "expected (n_windows, n_classes)"),
        (np.zeros((3, 1)), np.arange(3.0), ["a"], {"rain"}, "background: ['rain'] not in the class map"),
    ],
)
def test_inputs_that_would_give_wrong_events_are_refused(scores, starts, names, background, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        detect_events(scores, starts, 1.0, names, PostProcessParams(), background=background)


def test_no_windows_give_no_events():
    assert detect_events(np.zeros((0, 2)), np.zeros(0), 1.0, ["a", "b"], PostProcessParams()) == []


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"on_threshold": 0.4, "off_threshold": 0.6},
            "detect.off_threshold: 0.6 must be <= on_threshold 0.4",
        ),
        ({"smoothing_windows": 0}, "detect.smoothing_windows"),
        ({"on_threshold": 1.5}, "detect.on_threshold"),
        ({"merge_gap_s": -1}, "detect.merge_gap_s"),
        ({"min_duration_s": "long"}, "detect.min_duration_s: expected a number"),
        ({"smoothing": 3}, "detect: unknown key"),
    ],
)
def test_bad_settings_name_the_field(section, message):
    with pytest.raises(ParamsError, match=message):
        from_dict(PostProcessParams, section, "detect")
    with pytest.raises(ValueError):
        PostProcessParams(**{"on_threshold": float("nan")})


def test_events_table_has_the_dcase_columns():
    table = events_table([Event("a.wav", 0.5, 2.0, "dog", 0.7)])
    assert list(table.columns) == ["filename", "onset", "offset", "event_label", "peak"]
    assert table.iloc[0].tolist() == ["a.wav", 0.5, 2.0, "dog", 0.7]
    assert list(events_table([]).columns)[:4] == ["filename", "onset", "offset", "event_label"]
