"""A PNG of each class's score over time, with the detected events shaded (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from aed.detection.detect import Detection
from aed.detection.postprocess import PostProcessParams, smooth_scores

# matplotlib's default cycle without its grey (C7), which marks background classes here
PALETTE = tuple(f"C{i}" for i in (0, 1, 2, 3, 4, 5, 6, 8, 9))


def save_scores_png(
    detection: Detection,
    class_names: Sequence[str],
    params: PostProcessParams,
    path: Path,
    background: Collection[str] = (),
) -> Path:
    """One row per class: the raw window scores (thin), the smoothed score that decides (bold), the on / off
    thresholds (dashed) and the class's events (shaded). Background classes are drawn grey, never shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    centres = detection.starts_s + detection.window_s / 2
    smoothed = smooth_scores(detection.scores, params.smoothing_windows)
    rows = len(class_names)
    figure, axes = plt.subplots(rows, 1, figsize=(10, 0.9 * rows + 1.2), sharex=True, squeeze=False)
    for row, (axis, label) in enumerate(zip(axes[:, 0], class_names, strict=True)):
        colour = "0.6" if label in background else PALETTE[row % len(PALETTE)]
        axis.plot(centres, detection.scores[:, row], color=colour, linewidth=0.5, alpha=0.5)
        axis.plot(centres, smoothed[:, row], color=colour, linewidth=1.2)
        for event in (e for e in detection.events if e.label == label):
            axis.axvspan(event.onset, event.offset, color=colour, alpha=0.25, linewidth=0)
        for threshold in {params.on_threshold, params.off_threshold}:
            axis.axhline(threshold, color="0.3", linestyle="--", linewidth=0.6)
        axis.set_ylim(-0.02, 1.02)
        axis.set_yticks([0, 1])
        axis.set_ylabel(label + (" (bg)" if label in background else ""), rotation=0, ha="right", va="center")
    end = float(max(detection.duration_s, centres[-1] if len(centres) else 0.0))
    axes[-1, 0].set_xlim(0, end)
    axes[-1, 0].set_xlabel("time (s)")
    axes[0, 0].set_title(f"{Path(detection.filename).name}: {len(detection.events)} event(s)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80 if len(centres) > 20000 else 100)
    plt.close(figure)
    return path
