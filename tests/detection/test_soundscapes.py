"""The soundscape generator: its ground truth is where the events really are, from held-out clips only, seeded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from aed.detection.soundscapes import (
    SOUNDSCAPES_RECORD,
    SoundscapeError,
    SoundscapeParams,
    SplitClips,
    build_set,
    build_split_set,
    clip_sources,
    non_silent_span,
    read_ground_truth,
    read_splits,
)
from aed.params import ParamsError, from_dict

SR = 16000
# One burst per clip: (label, seconds of sound, tone Hz), inside 1 s of digital silence on each side.
BURSTS = {"a1": ("dog", 0.8, 500.0), "a2": ("dog", 1.3, 700.0), "b1": ("rooster", 1.1, 2000.0),
          "b2": ("rooster", 0.6, 2500.0), "n1": ("rain", 2.0, 0.0), "s1": ("dog", 0.0, 0.0)}  # fmt: skip
# A quiet noise bed (-60 dBFS, peaks under 0.006) and loud events (SNR 20 to 30 dB: RMS 0.01 to 0.03).
QUIET = SoundscapeParams(duration_s=30.0, events_per_minute=8.0, noise_dbfs=-60.0, background_per_minute=0.0,
                         event_snr_db_min=20.0, event_snr_db_max=30.0)  # fmt: skip
LOUD = 0.008


def _burst(seconds: float, hz: float, seed: int) -> np.ndarray:
    n = int(seconds * SR)
    if hz:
        return 0.5 * np.sin(2 * np.pi * hz * np.arange(n) / SR)
    return 0.3 * np.random.default_rng(seed).standard_normal(n)  # noise-like background sound


@pytest.fixture
def clips(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for seed, (clip_id, (label, seconds, hz)) in enumerate(BURSTS.items()):
        audio = np.concatenate([np.zeros(SR), _burst(seconds, hz, seed), np.zeros(SR)])
        soundfile.write(tmp_path / f"{clip_id}.wav", audio.astype(np.float32), SR, subtype="PCM_16")
        rows.append({"clip_id": clip_id, "path": f"{clip_id}.wav", "label": label})
    return pd.DataFrame(rows)


def test_non_silent_span_is_the_burst() -> None:
    audio = np.concatenate([np.zeros(SR), _burst(0.8, 500.0, 0), np.zeros(SR)])
    start, stop = non_silent_span(audio, SR, 60.0)
    assert abs(start - SR) <= 0.025 * SR and abs(stop - int(1.8 * SR)) <= 0.025 * SR
    assert non_silent_span(np.zeros(SR), SR, 60.0) is None


def test_ground_truth_is_where_the_events_are(clips: pd.DataFrame, tmp_path: Path) -> None:
    truth = build_set(clip_sources(clips, tmp_path), tmp_path / "set", "t", 3, QUIET, ["dog", "rooster"], [])
    durations = {label: seconds for label, seconds, _ in BURSTS.values()}
    assert len(truth) == 3 * 4  # 8 per minute over 30 s, in each of 3 files
    assert set(truth["event_label"]) <= {"dog", "rooster"}
    for name, events in truth.groupby("filename"):
        audio, rate = soundfile.read(tmp_path / "set" / name)
        assert rate == SR and audio.size == 30 * SR
        loud = np.abs(audio) > LOUD  # only events rise above the noise bed
        inside = np.zeros(audio.size, bool)
        events = events.sort_values("onset")
        for row in events.itertuples():
            first, last = int(round(row.onset * SR)), int(round(row.offset * SR))
            inside[first:last] = True
            assert loud[first : first + 400].any() and loud[last - 400 : last].any()  # sound at both ends
            lengths = [s for label, s, _ in BURSTS.values() if label == row.event_label and s]
            # the burst's own span, to one 25 ms analysis frame at each end
            assert min(abs(row.offset - row.onset - s) for s in lengths) <= 0.05
        assert not (loud & ~inside).any()  # nothing loud outside the ground truth
        gaps = events["onset"].to_numpy()[1:] - events["offset"].to_numpy()[:-1]
        assert (gaps >= QUIET.min_gap_s - 1e-6).all() and events["onset"].min() >= QUIET.min_gap_s - 1e-6
        assert events["offset"].max() <= 30.0 - QUIET.min_gap_s + 1e-6
    assert durations  # the table's layout is DCASE's
    assert list(pd.read_csv(tmp_path / "set" / "ground_truth.csv").columns) == [
        "filename", "onset", "offset", "event_label"
    ]  # fmt: skip


def test_event_snr_is_the_drawn_one(clips: pd.DataFrame, tmp_path: Path) -> None:
    params = SoundscapeParams(duration_s=20.0, events_per_minute=6.0, noise_dbfs=-40.0, background_per_minute=0,
                              event_snr_db_min=10.0, event_snr_db_max=10.0)  # fmt: skip
    truth = build_set(clip_sources(clips, tmp_path), tmp_path / "set", "t", 1, params, ["dog", "rooster"], [])
    audio, _ = soundfile.read(tmp_path / "set" / "t-0.wav")
    noise_power = 10 ** (-40 / 10)
    for row in truth.itertuples():
        part = audio[int(row.onset * SR) : int(row.offset * SR)]
        snr = 10 * np.log10((np.mean(part**2) - noise_power) / noise_power)
        assert abs(snr - 10.0) < 0.5


def test_background_sound_is_never_ground_truth(clips: pd.DataFrame, tmp_path: Path) -> None:
    params = SoundscapeParams(duration_s=30.0, background_per_minute=10.0, noise_dbfs=-60.0,
                              background_snr_db_min=20.0, background_snr_db_max=20.0)  # fmt: skip
    truth = build_set(
        clip_sources(clips, tmp_path), tmp_path / "set", "t", 2, params, ["dog", "rooster"], ["rain"]
    )
    assert "rain" not in set(truth["event_label"])
    audio, _ = soundfile.read(tmp_path / "set" / "t-0.wav")
    inside = np.zeros(audio.size, bool)
    for row in truth[truth["filename"] == "t-0.wav"].itertuples():
        inside[int(row.onset * SR) : int(row.offset * SR)] = True
    assert (np.abs(audio[~inside]) > LOUD).any()  # the rain is there, outside the events
    # ... and exactly where the record says: loud samples outside the events lie inside a placed background clip
    placed = json.loads((tmp_path / "set" / SOUNDSCAPES_RECORD).read_text())["background"]["t-0.wav"]
    assert len(placed) == 5 and {p["label"] for p in placed} == {"rain"}
    heard = np.zeros(audio.size, bool)
    for sound in placed:
        assert 0 <= sound["onset"] < sound["offset"] <= params.duration_s
        heard[int(sound["onset"] * SR) : int(np.ceil(sound["offset"] * SR))] = True
    assert not (np.abs(audio[~inside & ~heard]) > LOUD).any()
    with pytest.raises(SoundscapeError, match="also target"):
        build_set(clip_sources(clips, tmp_path), tmp_path / "x", "t", 1, params, ["dog", "rain"], ["rain"])


def test_seeded_and_a_sample_is_a_prefix(clips: pd.DataFrame, tmp_path: Path) -> None:
    sources = clip_sources(clips, tmp_path)
    small = build_set(sources, tmp_path / "small", "fold-1-test", 2, QUIET, ["dog", "rooster"], [])
    large = build_set(sources, tmp_path / "large", "fold-1-test", 4, QUIET, ["dog", "rooster"], [])
    assert small.equals(large[large["filename"].isin(small["filename"])].reset_index(drop=True))
    for name in small["filename"].unique():
        assert (tmp_path / "small" / name).read_bytes() == (tmp_path / "large" / name).read_bytes()
    other = build_set(sources, tmp_path / "other", "fold-2-test", 2, QUIET, ["dog", "rooster"], [])
    assert not np.allclose(other["onset"].to_numpy()[:3], small["onset"].to_numpy()[:3])


def test_silent_clip_is_left_out_and_recorded(clips: pd.DataFrame, tmp_path: Path) -> None:
    build_set(clip_sources(clips, tmp_path), tmp_path / "set", "t", 2, QUIET, ["dog"], [])
    record = json.loads((tmp_path / "set" / SOUNDSCAPES_RECORD).read_text())
    assert record["silent_clips_left_out"] == ["s1"]
    placed = {e["clip_id"] for events in record["events"].values() for e in events}
    assert placed <= {"a1", "a2"}


def test_split_sets_use_only_the_splits_clips(clips: pd.DataFrame, tmp_path: Path) -> None:
    split = SplitClips("fold-1", train=("a1", "b1", "n1"), test=("a2", "b2"))
    for part, allowed in (("test", {"a2", "b2"}), ("train", {"a1", "b1"})):
        folder = build_split_set(clips, tmp_path, tmp_path / "sets", split, part, 3, QUIET, ["dog", "rooster"],
                                 ["rain"])  # fmt: skip
        record = json.loads((folder / SOUNDSCAPES_RECORD).read_text())
        placed = {e["clip_id"] for events in record["events"].values() for e in events}
        assert placed and placed <= allowed, part
        truth, durations = read_ground_truth(folder)
        assert set(durations["filename"]) == {f"fold-1-{part}-{i}.wav" for i in range(3)}
    missing = SplitClips("fold-2", train=(), test=("zz",))
    with pytest.raises(SoundscapeError, match="not in the validated table"):
        build_split_set(clips, tmp_path, tmp_path / "sets", missing, "test", 1, QUIET, ["dog"], [])


def test_an_earlier_set_is_replaced_but_no_other_folder(clips: pd.DataFrame, tmp_path: Path) -> None:
    sources = clip_sources(clips, tmp_path)
    build_set(sources, tmp_path / "set", "t", 3, QUIET, ["dog"], [])
    build_set(sources, tmp_path / "set", "t", 1, QUIET, ["dog"], [])
    assert sorted(p.name for p in (tmp_path / "set").glob("*.wav")) == ["t-0.wav"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SoundscapeError, match="not a soundscape set"):
        build_set(sources, tmp_path / "mine", "t", 1, QUIET, ["dog"], [])
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_bad_splits_and_params(tmp_path: Path) -> None:
    with pytest.raises(SoundscapeError, match="not found"):
        read_splits(tmp_path / "splits.json")
    (tmp_path / "splits.json").write_text("{not json")
    with pytest.raises(SoundscapeError, match="not a readable splits file"):
        read_splits(tmp_path / "splits.json")
    (tmp_path / "splits.json").write_text(
        json.dumps({"class_names": ["dog"], "splits": {"final": {"train": ["a"]}}})
    )
    with pytest.raises(SoundscapeError, match="no split has test clips"):
        read_splits(tmp_path / "splits.json")
    with pytest.raises(ParamsError, match="streaming.event_snr_db_min: 40.0 is above"):
        from_dict(SoundscapeParams, {"event_snr_db_min": 40.0}, "streaming")
    with pytest.raises(ParamsError, match="streaming.duration_s"):
        from_dict(SoundscapeParams, {"duration_s": 1.0}, "streaming")


@pytest.mark.slow
def test_whole_esc10_set_ground_truth(esc10_dir: Path, tmp_path: Path) -> None:
    """Every fold's held-out set at the size a bench uses (10 soundscapes of 60 s per fold): every event comes
    from its own fold, lies on real sound, never overlaps another, and the first 2 are the demo's sample."""
    meta = pd.read_csv(esc10_dir / "meta.csv")
    meta = meta[meta["esc10"].astype(str) == "True"]
    table = pd.DataFrame({"clip_id": meta["filename"].str.removesuffix(".flac"), "label": meta["category"],
                          "path": "audio/" + meta["filename"], "fold": meta["fold"]})  # fmt: skip
    classes = sorted(table["label"].unique())
    params = SoundscapeParams()
    for fold in sorted(table["fold"].unique()):
        split = SplitClips(f"fold-{fold}", train=(), test=tuple(table[table["fold"] == fold]["clip_id"]))
        folder = build_split_set(table, esc10_dir, tmp_path / "all", split, "test", 10, params, classes, [])
        truth, durations = read_ground_truth(folder)
        assert len(durations) == 10 and len(truth) == 10 * 6
        record = json.loads((folder / SOUNDSCAPES_RECORD).read_text())
        placed = [e for events in record["events"].values() for e in events]
        assert {e["clip_id"].split("-")[0] for e in placed} == {str(fold)}
        for name, events in truth.groupby("filename"):
            events = events.sort_values("onset")
            assert (events["onset"].to_numpy()[1:] >= events["offset"].to_numpy()[:-1] + 1.0 - 1e-6).all()
            audio, _ = soundfile.read(folder / name)
            inside = np.zeros(audio.size, bool)
            for row in events.itertuples():
                inside[int(row.onset * 16000) : int(row.offset * 16000)] = True
            noise = np.sqrt(np.mean(audio[~inside] ** 2))  # the bed as written (a loud mix is scaled down)
            for row in events.itertuples():
                part = audio[int(row.onset * 16000) : int(row.offset * 16000)]
                assert np.sqrt(np.mean(part**2)) > 2 * noise  # the event is there, above the bed
        sample = build_split_set(table, esc10_dir, tmp_path / "demo", split, "test", 2, params, classes, [])
        demo, _ = read_ground_truth(sample)
        assert demo.equals(truth[truth["filename"].isin(demo["filename"])].reset_index(drop=True))
