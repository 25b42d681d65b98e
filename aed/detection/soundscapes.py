"""Seeded soundscapes for streaming evaluation: long recordings built from clips a model never trained on.

Why our own generator: scaper (the usual soundscape library) does not install cleanly with our lock; its
soxbindings dependency compiles against the libsox headers, which the images do not have. What scaper would do
is small enough to write here, in numpy, and to test exactly:

- Target events are whole clips of the target classes, cropped to their own non-silent span (frame RMS within
  `event_top_db` of the clip's loudest frame) and placed at random times, never overlapping, at least
  `min_gap_s` apart. The ground truth of an event is exactly where its cropped span lies in the recording.
- The background is a pink-noise bed at `noise_dbfs` plus clips of `background_classes` (non-target sound) at
  random times. Each target and background clip is scaled to a signal-to-noise ratio drawn uniformly from its
  range (mean power over the clip's non-silent span against the noise bed's power).
- Every random draw comes from a generator seeded by (seed, the set's name, the soundscape's index), so the first
  N soundscapes of a set are the same whatever the set's size: the demo's sample is a prefix of the full set.

Each set is a folder: `<name>-<i>.wav` (16-bit PCM), `ground_truth.csv` (DCASE layout: filename, onset, offset,
event_label), `durations.csv` (filename, duration) and `soundscapes.json` (the settings, each event's clip, and
where each background clip was placed: never ground truth, but what a false alarm can be traced to).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile
from scipy.signal import lfilter

from aed.audio import load_audio
from aed.params import bounded
from aed.records import write_json

GROUND_TRUTH_FILE = "ground_truth.csv"
DURATIONS_FILE = "durations.csv"
SOUNDSCAPES_RECORD = "soundscapes.json"
GROUND_TRUTH_COLUMNS = ["filename", "onset", "offset", "event_label"]
# Span of the event detector: 25 ms frames every 10 ms (the front end's STFT framing at 16 kHz).
SPAN_FRAME_S, SPAN_HOP_S = 0.025, 0.010
# A pinking filter (-3 dB / octave within 0.1 dB over the audio band): three poles, three zeros on white noise.
PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
PEAK_CEILING = 0.99  # a mix louder than this is scaled down as a whole (every SNR kept)


class SoundscapeError(ValueError):
    """A set that cannot be built; the message names the setting or the clip."""


@dataclass(frozen=True)
class SoundscapeParams:
    """How soundscapes are built (part of the `streaming` section of params.yaml)."""

    duration_s: float = bounded(60.0, 5.0, 3600.0)
    events_per_minute: float = bounded(6.0, 0.0, 60.0)
    min_gap_s: float = bounded(1.0, 0.0, 60.0)  # silence (noise only) between target events, and at both ends
    event_snr_db_min: float = bounded(10.0, -30.0, 60.0)
    event_snr_db_max: float = bounded(30.0, -30.0, 60.0)
    # RMS of the pink-noise bed; events then lie at noise_dbfs + SNR (-40 to -20 dBFS by default: ESC-10 clips'
    # non-silent spans have a median RMS of -20 dBFS). A louder bed is heard as rain by ESC-10 models.
    noise_dbfs: float = bounded(-50.0, -120.0, -6.0)
    background_classes: list[str] = field(default_factory=list)  # non-target sound, never ground truth
    background_per_minute: float = bounded(3.0, 0.0, 60.0)
    background_snr_db_min: float = bounded(0.0, -30.0, 60.0)
    background_snr_db_max: float = bounded(10.0, -30.0, 60.0)
    event_top_db: float = bounded(60.0, 1.0, 120.0)  # an event's span: frames within this of its loudest
    seed: int = bounded(120, 0)

    def __post_init__(self) -> None:
        for kind in ("event", "background"):
            low, high = getattr(self, f"{kind}_snr_db_min"), getattr(self, f"{kind}_snr_db_max")
            if low > high:
                raise ValueError(f"{kind}_snr_db_min: {low} is above {kind}_snr_db_max {high}")
        if len(set(self.background_classes)) != len(self.background_classes):
            raise ValueError(f"background_classes: {self.background_classes} names a class twice")


@dataclass(frozen=True)
class Clip:
    clip_id: str
    label: str
    audio: np.ndarray  # float32, the clip's non-silent span only

    @property
    def power(self) -> float:
        return float(np.mean(np.square(self.audio, dtype=np.float64)))


@dataclass(frozen=True)
class ClipSource:
    clip_id: str
    label: str
    path: Path


class ClipLoader:
    """Decodes a clip the first time a soundscape uses it (a split's training clips are many; a set uses few)
    and crops it to its non-silent span; None for a silent clip, which is never placed."""

    def __init__(self, sample_rate: int, top_db: float) -> None:
        self.sample_rate, self.top_db = sample_rate, top_db
        self._cache: dict[str, Clip | None] = {}
        self.silent: list[str] = []

    def __call__(self, source: ClipSource) -> Clip | None:
        if source.clip_id not in self._cache:
            signal = load_audio(source.path, self.sample_rate, max_duration_s=None)
            span = non_silent_span(signal, self.sample_rate, self.top_db)
            if span is None:
                self.silent.append(source.clip_id)
            clip = (
                None if span is None else Clip(source.clip_id, source.label, signal[span[0] : span[1]].copy())
            )
            self._cache[source.clip_id] = clip
        return self._cache[source.clip_id]


def clip_sources(table: pd.DataFrame, raw_dir: Path) -> list[ClipSource]:
    """The clips of a table (clip_id, path, label), in clip_id order (the draws depend on the order only)."""
    rows = table.sort_values("clip_id")
    return [ClipSource(str(r.clip_id), str(r.label), Path(raw_dir) / str(r.path)) for r in rows.itertuples()]


def non_silent_span(signal: np.ndarray, sample_rate: int, top_db: float) -> tuple[int, int] | None:
    """[start, stop) samples from the first to the last frame whose RMS is within top_db of the loudest frame;
    None for a silent clip."""
    frame, hop = int(round(SPAN_FRAME_S * sample_rate)), int(round(SPAN_HOP_S * sample_rate))
    if signal.size == 0 or not np.any(signal):
        return None
    padded = np.pad(signal.astype(np.float64), (0, max(0, frame - signal.size)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]
    power = np.mean(frames * frames, axis=1)
    active = np.flatnonzero(power > power.max() * 10.0 ** (-top_db / 10.0))
    start, stop = int(active[0]) * hop, min(int(active[-1]) * hop + frame, signal.size)
    return start, stop


def pink_noise(samples: int, rms: float, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(samples + 2048)  # 2048 samples of filter warm-up dropped
    pink = lfilter(PINK_B, PINK_A, white)[2048:]
    return (pink * (rms / max(float(np.sqrt(np.mean(pink * pink))), 1e-12))).astype(np.float32)


def _rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def _gain(clip: Clip, noise_power: float, snr_db: float) -> float:
    return float(np.sqrt(noise_power * 10.0 ** (snr_db / 10.0) / max(clip.power, 1e-20)))


def _pick(pool: list[ClipSource], count: int, rng: np.random.Generator, load: ClipLoader) -> list[Clip]:
    """`count` clips of the pool in a seeded order, without repeats while the pool lasts; silent clips are
    passed over (another clip takes their place)."""
    picked: list[Clip] = []
    while pool and len(picked) < count:
        found = [clip for i in rng.permutation(len(pool)) if (clip := load(pool[i])) is not None]
        if not found:  # every clip of the pool is silent
            break
        picked.extend(found[: count - len(picked)])
    return picked


def _event_starts(lengths: list[int], total: int, gap: int, rng: np.random.Generator) -> list[int]:
    """Sample positions of events of `lengths`, in order, non-overlapping, >= gap apart and from both ends."""
    free = total - sum(lengths) - gap * (len(lengths) + 1)
    offsets = np.sort(rng.integers(0, free + 1, size=len(lengths)))
    starts, used = [], gap
    for offset, length in zip(offsets, lengths, strict=True):
        starts.append(int(offset) + used)
        used += length + gap
    return starts


def _fit(chosen: list[Clip], total: int, gap: int) -> list[Clip]:
    """The chosen events that fit in the recording (the last ones dropped when they do not)."""
    while chosen and sum(c.audio.size for c in chosen) + gap * (len(chosen) + 1) > total:
        chosen = chosen[:-1]
    return chosen


def render(
    targets: list[ClipSource],
    background: list[ClipSource],
    load: ClipLoader,
    params: SoundscapeParams,
    sample_rate: int,
    name: str,
    index: int,
) -> tuple[np.ndarray, list[dict], list[dict]]:
    """One soundscape: (float32 audio, its events, its background clips), each placement a dict with onset /
    offset in seconds, label, clip and SNR."""
    rng = _rng(params.seed, name, index)
    total = int(round(params.duration_s * sample_rate))
    gap = int(round(params.min_gap_s * sample_rate))
    noise_rms = 10.0 ** (params.noise_dbfs / 20.0)
    mix = pink_noise(total, noise_rms, rng).astype(np.float64)
    wanted = int(round(params.events_per_minute * params.duration_s / 60.0))
    events = _fit(_pick(targets, wanted, rng, load), total, gap)
    starts = _event_starts([c.audio.size for c in events], total, gap, rng)
    placed = []
    for clip, start in zip(events, starts, strict=True):
        snr = float(rng.uniform(params.event_snr_db_min, params.event_snr_db_max))
        mix[start : start + clip.audio.size] += _gain(clip, noise_rms**2, snr) * clip.audio
        placed.append({"onset": start / sample_rate, "offset": (start + clip.audio.size) / sample_rate,
                       "event_label": clip.label, "clip_id": clip.clip_id, "snr_db": round(snr, 3)})  # fmt: skip
    wanted = int(round(params.background_per_minute * params.duration_s / 60.0))
    sounds = []
    for clip in _pick(background, wanted, rng, load):
        length = min(clip.audio.size, total)
        start = int(rng.integers(0, total - length + 1))
        snr = float(rng.uniform(params.background_snr_db_min, params.background_snr_db_max))
        mix[start : start + length] += _gain(clip, noise_rms**2, snr) * clip.audio[:length]
        sounds.append({"onset": start / sample_rate, "offset": (start + length) / sample_rate,
                       "label": clip.label, "clip_id": clip.clip_id, "snr_db": round(snr, 3)})  # fmt: skip
    peak = float(np.max(np.abs(mix)))
    gain = (
        PEAK_CEILING / peak if peak > PEAK_CEILING else 1.0
    )  # one gain for the whole mix: SNRs stay as drawn
    for placement in (*placed, *sounds):
        placement["mix_gain_db"] = round(20 * np.log10(gain), 2)
    return (mix * gain).astype(np.float32), placed, sounds


def split_pools(
    clips: list[ClipSource], target_classes: Sequence[str], background_classes: Sequence[str]
) -> tuple[list[ClipSource], list[ClipSource]]:
    overlap = sorted(set(target_classes) & set(background_classes))
    if overlap:
        raise SoundscapeError(f"streaming.background_classes: {overlap} are also target classes")
    targets = [c for c in clips if c.label in set(target_classes)]
    background = [c for c in clips if c.label in set(background_classes)]
    return targets, background


def build_set(
    clips: list[ClipSource],
    out_dir: Path,
    name: str,
    count: int,
    params: SoundscapeParams,
    target_classes: Sequence[str],
    background_classes: Sequence[str],
    sample_rate: int = 16000,
) -> pd.DataFrame:
    """Writes `count` soundscapes named `<name>-<i>.wav` and their ground truth into `out_dir`; returns the
    ground-truth table (DCASE layout)."""
    targets, background = split_pools(clips, target_classes, background_classes)
    load = ClipLoader(sample_rate, params.event_top_db)
    if not targets:
        raise SoundscapeError(f"{name}: no clip of the target classes {list(target_classes)} to place")
    out_dir = Path(out_dir)
    _clear(out_dir)
    out_dir.mkdir(parents=True)
    rows, durations, events_by_file, background_by_file = [], [], {}, {}
    for index in range(count):
        filename = f"{name}-{index}.wav"
        audio, events, sounds = render(targets, background, load, params, sample_rate, name, index)
        soundfile.write(str(out_dir / filename), audio, sample_rate, subtype="PCM_16")
        durations.append({"filename": filename, "duration": audio.size / sample_rate})
        rows.extend({"filename": filename, **{k: e[k] for k in ("onset", "offset", "event_label")}}
                    for e in events)  # fmt: skip
        events_by_file[filename], background_by_file[filename] = events, sounds
    truth = pd.DataFrame(rows, columns=GROUND_TRUTH_COLUMNS)
    if truth.empty and round(params.events_per_minute * params.duration_s / 60.0) > 0:
        shortest = min(c.audio.size for c in map(load, targets) if c is not None) / sample_rate
        raise SoundscapeError(
            f"{name}: no event fits: streaming.duration_s {params.duration_s:g} s cannot hold a {shortest:.2f} s "
            f"event with streaming.min_gap_s {params.min_gap_s:g} s on both sides"
        )
    truth.to_csv(out_dir / GROUND_TRUTH_FILE, index=False, float_format="%.6f")
    pd.DataFrame(durations).to_csv(out_dir / DURATIONS_FILE, index=False)
    write_json(out_dir / SOUNDSCAPES_RECORD, {
        "name": name, "count": count, "sample_rate": sample_rate, "params": asdict(params),
        "target_classes": list(target_classes), "background_classes": list(background_classes),
        "clips": len(clips), "silent_clips_left_out": load.silent, "events": events_by_file,
        "background": background_by_file,
    })  # fmt: skip
    return truth


def _clear(out_dir: Path) -> None:
    """Removes an earlier set (files of a larger set would linger); refuses any other non-empty folder."""
    import shutil

    if not out_dir.exists():
        return
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / SOUNDSCAPES_RECORD).is_file()):
        raise SoundscapeError(f"{out_dir}: exists and is not a soundscape set; not overwriting it")
    shutil.rmtree(out_dir)


def read_ground_truth(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(ground truth, durations) of a set `build_set` wrote."""
    folder = Path(folder)
    for name in (GROUND_TRUTH_FILE, DURATIONS_FILE):
        if not (folder / name).is_file():
            raise SoundscapeError(f"{folder / name}: not found (not a soundscape set?)")
    truth = pd.read_csv(folder / GROUND_TRUTH_FILE, dtype={"filename": str, "event_label": str})
    return truth, pd.read_csv(folder / DURATIONS_FILE, dtype={"filename": str})


# -- the sets of a model's splits -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitClips:
    """One split of a model's splits.json: the clips it trained on and those it was tested on."""

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]


def read_splits(splits_file: Path) -> tuple[list[str], list[SplitClips]]:
    """(class names, the splits that test on held-out clips) of a splits.json that train wrote."""
    import json

    splits_file = Path(splits_file)
    try:
        data = json.loads(splits_file.read_text(encoding="utf-8"))
        classes = [str(name) for name in data["class_names"]]
        splits = [SplitClips(str(name), tuple(map(str, split.get("train", ()))) + tuple(map(str, split.get("val", ()))),
                             tuple(map(str, split.get("test", ()))))
                  for name, split in data["splits"].items()]  # fmt: skip
    except FileNotFoundError:
        raise SoundscapeError(
            f"{splits_file}: not found (train writes it into the float model folder)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise SoundscapeError(
            f"{splits_file}: not a readable splits file ({type(error).__name__}: {error})"
        ) from None
    held_out = [split for split in splits if split.test]
    if not held_out:
        raise SoundscapeError(
            f"{splits_file}: no split has test clips (a final model alone cannot be evaluated)"
        )
    return classes, held_out


def read_validated(path: Path) -> pd.DataFrame:
    """The validated clip table (clip_id, path, label), the clips that passed validation only."""
    path = Path(path)
    if not path.is_file():
        raise SoundscapeError(f"{path}: validated clip table not found")
    try:
        table = pd.read_csv(path, dtype={"clip_id": str, "path": str, "label": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SoundscapeError(f"{path}: not a readable CSV table ({' '.join(str(error).split())})") from None
    missing = sorted({"clip_id", "path", "label"} - set(table.columns))
    if missing:
        raise SoundscapeError(f"{path}: missing column(s) {missing}")
    if "problem" in table.columns:
        table = table[table["problem"].isna() | (table["problem"].astype(str).str.strip() == "")]
    return table


def build_split_set(
    validated: pd.DataFrame,
    raw_dir: Path,
    out_root: Path,
    split: SplitClips,
    part: str,
    count: int,
    params: SoundscapeParams,
    target_classes: Sequence[str],
    background_classes: Sequence[str],
    sample_rate: int = 16000,
) -> Path:
    """The set `<split>-<part>` (part: test = the split's held-out clips, train = its training clips) in
    out_root/<split>-<part>/; returns the folder."""
    ids = set(split.test if part == "test" else split.train)
    table = validated[validated["clip_id"].isin(ids)]
    absent = len(ids) - table["clip_id"].nunique()
    if absent:
        raise SoundscapeError(f"{split.name}: {absent} of its {part} clips are not in the validated table")
    name = f"{split.name}-{part}"
    build_set(clip_sources(table, raw_dir), Path(out_root) / name, name, count, params, target_classes,
              background_classes, sample_rate)  # fmt: skip
    return Path(out_root) / name
