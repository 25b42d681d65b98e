"""Streaming, event-level evaluation: a model's detections over soundscapes against their ground truth.

The figures (docs/detection.md):
- event-based F1 and error rate from sed_eval (onset and offset within `collar_s`, the offset also within
  `offset_fraction` of the event's length), micro-averaged over every event of the set;
- PSDS from psds_eval over the operating points of a threshold sweep (the calibrated point with on_threshold,
  and off_threshold in proportion, moved along `sweep_thresholds`);
- false alarms per hour: detections that overlap (within collar_s) no ground-truth event of their class, per hour
  of audio; miss rate: ground-truth events that no detection of their class overlaps; onset and offset error:
  mean absolute difference between a hit event and its most-overlapping detection.

A model's window scores are computed once per soundscape (`ScoredSet`); every operating point is then only
post-processing, so a sweep and a calibration cost little.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aed.detection.postprocess import EVENT_COLUMNS, PostProcessParams, detect_events, events_table
from aed.detection.soundscapes import SoundscapeParams, read_ground_truth
from aed.labels import background_classes
from aed.params import bounded

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class StreamingParams(SoundscapeParams):
    """The `streaming` section: how soundscapes are built (SoundscapeParams) and how detections are scored."""

    eval_per_split: int = bounded(2, 1, 1000)  # held-out soundscapes per split (the demo's seeded sample)
    calibration_per_split: int = bounded(2, 1, 1000)  # soundscapes from each split's training clips
    collar_s: float = bounded(1.0, 0.0, 10.0)  # onset / offset tolerance (windows are ~1 s long)
    offset_fraction: float = bounded(0.5, 0.0, 1.0)  # sed_eval percentage_of_length for the offset
    psds_dtc: float = bounded(0.5, 0.0, 1.0)
    psds_gtc: float = bounded(0.5, 0.0, 1.0)
    psds_cttc: float = bounded(0.3, 0.0, 1.0)
    psds_max_efpr: float = bounded(100.0, 1.0)  # false positives per hour where the PSD-ROC is cut
    sweep_thresholds: list[float] = field(default_factory=lambda: [round(0.05 * i, 2) for i in range(1, 20)])

    def __post_init__(self) -> None:
        super().__post_init__()
        bad = [t for t in self.sweep_thresholds if not 0.0 < t <= 1.0]
        if bad or not self.sweep_thresholds:
            raise ValueError(f"sweep_thresholds: expected thresholds in (0, 1], got {self.sweep_thresholds}")

    def soundscape_params(self) -> SoundscapeParams:
        names = [f.name for f in dataclasses.fields(SoundscapeParams)]
        return SoundscapeParams(**{name: getattr(self, name) for name in names})


@dataclass
class ScoredSet:
    """One soundscape set scored by one model: each file's window starts and (n_windows, n_classes) scores."""

    truth: pd.DataFrame  # DCASE layout
    durations: dict[str, float]
    starts_s: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    window_s: float
    class_names: list[str]

    @property
    def hours(self) -> float:
        return sum(self.durations.values()) / SECONDS_PER_HOUR

    def merged(self, other: ScoredSet) -> ScoredSet:
        """Both sets as one (their file names must differ: sets are named after their split)."""
        return ScoredSet(
            pd.concat([self.truth, other.truth], ignore_index=True),
            {**self.durations, **other.durations},
            {**self.starts_s, **other.starts_s},
            {**self.scores, **other.scores},
            self.window_s,
            self.class_names,
        )


def detections(
    scored: ScoredSet, params: PostProcessParams, background: Collection[str] = ()
) -> pd.DataFrame:
    """Every file's events at one operating point, in the DCASE layout (+ peak)."""
    events = []
    for name in sorted(scored.scores):
        if len(scored.scores[name]):
            events.extend(detect_events(scored.scores[name], scored.starts_s[name], scored.window_s,
                                        scored.class_names, params, name, background))  # fmt: skip
    return events_table(events)


def _overlap_matrix(refs: np.ndarray, hyps: np.ndarray, collar: float) -> np.ndarray:
    """(n_refs, n_hyps) seconds of overlap of each reference [onset, offset] with each detection widened by
    the collar; > 0 where they meet."""
    return np.minimum(refs[:, None, 1], hyps[None, :, 1] + collar) - np.maximum(
        refs[:, None, 0], hyps[None, :, 0] - collar
    )


def _by_file_and_label(table: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    return {
        (str(name), str(label)): group[["onset", "offset"]].to_numpy(np.float64)
        for (name, label), group in table.groupby(["filename", "event_label"], sort=True)
    }


def counts(truth: pd.DataFrame, found: pd.DataFrame, collar_s: float) -> dict:
    """False alarms, misses and onset / offset errors (module docstring), overall and per class."""
    refs, hyps = _by_file_and_label(truth), _by_file_and_label(found)
    labels = sorted(set(truth["event_label"]) | set(found["event_label"]))
    per_class = {label: {"events": 0, "missed": 0, "false_alarms": 0} for label in labels}
    onset_errors, offset_errors = [], []
    empty = np.zeros((0, 2))
    for key in sorted(set(refs) | set(hyps)):
        ref, hyp = refs.get(key, empty), hyps.get(key, empty)
        overlap = _overlap_matrix(ref, hyp, collar_s)
        meets = overlap > 0
        row = per_class[key[1]]
        row["events"] += len(ref)
        row["missed"] += int((~meets.any(axis=1)).sum()) if len(ref) else 0
        row["false_alarms"] += int((~meets.any(axis=0)).sum()) if len(hyp) else 0
        for i in np.flatnonzero(meets.any(axis=1)) if len(hyp) else []:
            best = hyp[int(np.argmax(overlap[i]))]
            onset_errors.append(abs(best[0] - ref[i, 0]))
            offset_errors.append(abs(best[1] - ref[i, 1]))
    return {
        "events": len(truth),
        "missed": sum(c["missed"] for c in per_class.values()),
        "false_alarms": sum(c["false_alarms"] for c in per_class.values()),
        "onset_error_s": float(np.mean(onset_errors)) if onset_errors else None,
        "offset_error_s": float(np.mean(offset_errors)) if offset_errors else None,
        "per_class": per_class,
    }


def false_alarms(truth: pd.DataFrame, found: pd.DataFrame, collar_s: float) -> pd.DataFrame:
    """The detections `counts` calls false alarms: those meeting no ground-truth event of their class within the
    collar (the rows of `found`, in its order, for tracing each one to what played)."""
    refs = _by_file_and_label(truth)
    unmatched = []
    for (name, label), group in found.groupby(["filename", "event_label"], sort=True):
        ref = refs.get((str(name), str(label)), np.zeros((0, 2)))
        meets = _overlap_matrix(ref, group[["onset", "offset"]].to_numpy(np.float64), collar_s) > 0
        unmatched.append(group[~meets.any(axis=0)])
    return pd.concat(unmatched).sort_index() if unmatched else found.iloc[:0]


def rates(tally: dict, hours: float) -> dict:
    """False alarms per hour and miss rate from `counts`."""
    return {
        "false_alarms_per_hour": tally["false_alarms"] / hours if hours else None,
        "miss_rate": tally["missed"] / tally["events"] if tally["events"] else None,
    }


def sed_eval_figures(truth: pd.DataFrame, found: pd.DataFrame, files: Sequence[str], labels: Sequence[str],
                     params: StreamingParams) -> dict:  # fmt: skip
    """Event-based F1 and error rate (sed_eval), micro-averaged over the files."""
    with warnings.catch_warnings():  # dcase_util imports pkg_resources (deprecated): not ours to fix
        warnings.simplefilter("ignore")
        import sed_eval
        from dcase_util.containers import MetaDataContainer

    metric = sed_eval.sound_event.EventBasedMetrics(
        list(labels), t_collar=params.collar_s, percentage_of_length=params.offset_fraction
    )
    for name in files:
        ref = truth[truth["filename"] == name][list(EVENT_COLUMNS)].to_dict("records")
        est = found[found["filename"] == name][list(EVENT_COLUMNS)].to_dict("records")
        metric.evaluate(MetaDataContainer(ref), MetaDataContainer(est))
    overall = metric.results_overall_metrics()
    f1, error_rate = float(overall["f_measure"]["f_measure"]), float(overall["error_rate"]["error_rate"])
    # sed_eval gives NaN where a ratio has no denominator: no detection at all (F1 is 0 when there were events
    # to find), no reference event (the error rate is undefined). JSON has no NaN: None says "undefined".
    if np.isnan(f1) and len(truth):
        f1 = 0.0
    return {
        "event_f1": None if np.isnan(f1) else f1,
        "error_rate": None if np.isnan(error_rate) else error_rate,
    }


def psds(truth: pd.DataFrame, durations: dict[str, float], operating_points: list[pd.DataFrame],
         params: StreamingParams) -> float | None:  # fmt: skip
    """PSDS (psds_eval) over the operating points; None without ground-truth events."""
    if truth.empty:
        return None
    metadata = pd.DataFrame({"filename": list(durations), "duration": list(durations.values())})
    with warnings.catch_warnings():  # psds_eval warns for every sweep point that repeats an earlier one
        warnings.simplefilter("ignore")
        evaluator = _psds_evaluator()(params.psds_dtc, params.psds_gtc, params.psds_cttc,
                                      ground_truth=truth[list(EVENT_COLUMNS)], metadata=metadata)  # fmt: skip
        for found in operating_points:
            evaluator.add_operating_point(found[list(EVENT_COLUMNS)])
        return float(evaluator.psds(alpha_ct=0.0, alpha_st=0.0, max_efpr=params.psds_max_efpr).value)


def _psds_evaluator() -> type:
    """psds_eval's PSDSEval with two small static methods redone in numpy, because psds_eval 0.5.3 fails on our
    lock: its step interpolation calls `DataFrame.fillna(method="ffill")` (removed in pandas 3) and its area
    takes `int()` of a 2-D array (an error in numpy 2). The rules are psds_eval's: the curve at x is the highest
    TP ratio of any operating point whose FP rate is <= x (0 before the first); the area is that step curve's
    from its first point to max_x."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from psds_eval import PSDSEval

    class _PSDSEval(PSDSEval):
        @staticmethod
        def step_curve(x: np.ndarray, xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
            order = np.argsort(xp, kind="stable")
            xs, best = np.asarray(xp)[order], np.maximum.accumulate(np.asarray(yp, np.float64)[order])
            last = np.searchsorted(xs, x, side="right") - 1
            return np.where(last >= 0, best[np.clip(last, 0, None)], 0.0)

        @staticmethod
        def _auc(
            x: np.ndarray, y: np.ndarray, max_x: float | None = None, decreasing_y: bool = False
        ) -> float:
            x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
            limit = float(x.max()) if max_x is None else float(max_x)
            inside = x <= limit
            edges = np.append(x[inside], limit)  # the last step runs on to max_x
            return float(np.sum(np.diff(edges) * y[inside]))

    return _PSDSEval


def swept(point: PostProcessParams, threshold: float) -> PostProcessParams:
    """The operating point with on_threshold moved to `threshold` and off_threshold kept in proportion."""
    ratio = point.off_threshold / point.on_threshold if point.on_threshold else 1.0
    return dataclasses.replace(point, on_threshold=threshold, off_threshold=threshold * ratio)


def evaluate_scored(scored: ScoredSet, point: PostProcessParams, params: StreamingParams,
                    background: Collection[str] = ()) -> dict:  # fmt: skip
    """Every figure of one set at the operating point, the PSDS over the sweep, and the per-class DET rows."""
    found = detections(scored, point, background)
    tally = counts(scored.truth, found, params.collar_s)
    labels = [name for name in scored.class_names if name not in set(background)]
    figures = {**sed_eval_figures(scored.truth, found, sorted(scored.durations), labels, params),
               **rates(tally, scored.hours), **{k: tally[k] for k in ("onset_error_s", "offset_error_s")},
               "events": tally["events"], "detections": len(found), "hours": scored.hours}  # fmt: skip
    sweep, det_rows = [], []
    for threshold in params.sweep_thresholds:
        at = detections(scored, swept(point, threshold), background)
        sweep.append(at)
        per_class = counts(scored.truth, at, params.collar_s)["per_class"]
        for label in labels:
            row = per_class.get(label, {"events": 0, "missed": 0, "false_alarms": 0})
            det_rows.append({"class": label, "threshold": threshold,
                             "false_alarms_per_hour": row["false_alarms"] / scored.hours,
                             "miss_rate": row["missed"] / row["events"] if row["events"] else None})  # fmt: skip
    figures["psds"] = psds(scored.truth, scored.durations, sweep, params)
    return {"figures": figures, "per_class": tally["per_class"], "det": det_rows, "events": found}


def mean_figures(per_split: dict[str, dict]) -> dict:
    """The mean over splits of every numeric figure (None where no split has one)."""
    names = sorted({key for figures in per_split.values() for key in figures})
    means = {}
    for name in names:
        values = [f[name] for f in per_split.values() if isinstance(f.get(name), int | float)]
        means[name] = float(np.mean(values)) if values else None
    return means


def soundscape_classes(class_names: Sequence[str], params: StreamingParams) -> tuple[list[str], list[str]]:
    """(target classes: the ground truth's labels, background classes: non-target sound) of a model's sets."""
    background = list(dict.fromkeys([*params.background_classes, *background_classes(class_names)]))
    # A model class named as background sound is no target: its detections count as false alarms.
    targets = [name for name in class_names if name not in background]
    if not targets:
        raise ValueError(f"streaming.background_classes: {params.background_classes} leaves no target class")
    return targets, background


def score_set(folder: Path, scorer, detect, config, class_names: Sequence[str]) -> ScoredSet:
    """Runs the model over every soundscape of a set as `aed detect` does (aed.detection.detect.detect_file:
    the reference front end streamed, no silence removal, detect.hop_s)."""
    from aed.detection.detect import detect_file

    truth, durations = read_ground_truth(folder)
    starts, scores, window_s = {}, {}, 0.0
    for name in durations["filename"]:
        found = detect_file(scorer, Path(folder) / name, class_names, detect, config=config, filename=name)
        starts[name], scores[name], window_s = found.starts_s, found.scores, found.window_s
    return ScoredSet(truth, dict(zip(durations["filename"], durations["duration"], strict=True)), starts,
                     scores, window_s, list(class_names))  # fmt: skip


def split_model(int8_dir: Path, split: str) -> Path:
    """The int8 model file of one split (models/<model>/int8/<split>/)."""
    from aed.artifacts import int8_models_in

    found = list(int8_models_in(Path(int8_dir) / split).values())
    if len(found) != 1:
        raise FileNotFoundError(f"{Path(int8_dir) / split}: expected one int8 model file, found {len(found)}")
    return found[0]


def score_splits(validated: Path, raw_dir: Path, splits_file: Path, int8_dir: Path, out_root: Path, part: str,
                 params: StreamingParams, detect, config) -> tuple[dict[str, ScoredSet], list[str]]:  # fmt: skip
    """For each held-out split of the model: its soundscape set of `part` (test: its held-out clips; train: its
    training clips) built under out_root, scored by the split's own int8 model. ({split: set}, class names)"""
    from aed.detection.detect import check_class_count, load_scorer
    from aed.detection.soundscapes import build_split_set, read_splits, read_validated

    class_names, splits = read_splits(splits_file)
    table = read_validated(validated)
    targets, background = soundscape_classes(class_names, params)
    count = params.eval_per_split if part == "test" else params.calibration_per_split
    scored = {}
    for split in splits:
        folder = build_split_set(table, raw_dir, out_root, split, part, count, params.soundscape_params(),
                                 targets, background, config.sample_rate)  # fmt: skip
        scorer = load_scorer(split_model(int8_dir, split.name), detect.reference_kernels, detect.threads)
        check_class_count(scorer, class_names, str(splits_file))
        scored[split.name] = score_set(folder, scorer, detect, config, class_names)
    return scored, class_names


def pooled(scored: dict[str, ScoredSet]) -> ScoredSet:
    """Every split's set as one (the operating point is chosen over all of them)."""
    sets = list(scored.values())
    total = sets[0]
    for other in sets[1:]:
        total = total.merged(other)
    return total


def save_det_png(rows: list[dict], path: Path) -> Path:
    """Per class, miss rate against false alarms per hour along the threshold sweep (a DET curve), one line
    each, the thresholds marked; matplotlib without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 5))
    for label in sorted({row["class"] for row in rows}):
        points = sorted((r["false_alarms_per_hour"], r["miss_rate"]) for r in rows
                        if r["class"] == label and r["miss_rate"] is not None)  # fmt: skip
        if points:
            axis.plot(*zip(*points, strict=True), marker=".", linewidth=1, label=label)
    axis.set_xscale("symlog", linthresh=1.0)
    axis.set_xlabel("false alarms per hour")
    axis.set_ylabel("miss rate")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    if axis.lines:  # no curve at all when no class had an event to miss
        axis.legend(fontsize=7, ncol=2)
    axis.set_title("Per-class DET along the on_threshold sweep (held-out soundscapes)")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)
