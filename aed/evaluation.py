"""Clip-level evaluation: patch softmax summed per clip, argmax (ties -> lowest class index), and metrics.

Summing equals averaging for the argmax. numpy's argmax returns the first maximum, which is the documented
deterministic tie rule (the reference breaks ties at random).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


class EvaluationError(ValueError):
    pass


def clip_predictions(
    probs: np.ndarray, clip_ids: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true label, predicted label, clip id) per clip, clips in sorted order."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(clip_ids) or len(probs) != len(labels):
        raise EvaluationError(
            f"probs {probs.shape}, {len(clip_ids)} clip ids and {len(labels)} labels disagree"
        )
    clips, inverse = np.unique(np.asarray(clip_ids), return_inverse=True)
    sums = np.zeros((len(clips), probs.shape[1]))
    np.add.at(sums, inverse, probs)
    true = np.full(len(clips), -1, dtype=np.int64)
    true[inverse] = labels
    first_label = np.zeros(len(clips), dtype=np.int64)
    first_label[inverse[::-1]] = np.asarray(labels)[::-1]
    if np.any(true != first_label):
        raise EvaluationError("a clip has patches with different labels")
    return true, sums.argmax(axis=1), clips


def confusion_matrix(true: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def per_class_report(matrix: np.ndarray, class_names: list[str]) -> dict[str, dict[str, float]]:
    report = {}
    for i, name in enumerate(class_names):
        tp = float(matrix[i, i])
        predicted, actual = float(matrix[:, i].sum()), float(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[name] = {"precision": precision, "recall": recall, "f1": f1, "support": int(actual)}
    return report


def score(probs: np.ndarray, clip_ids: np.ndarray, labels: np.ndarray, n_classes: int) -> dict:
    """Patch and clip accuracy plus the clip confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    true, pred, clips = clip_predictions(probs, clip_ids, labels)
    return {
        "patch_accuracy": float(np.mean(np.asarray(probs).argmax(axis=1) == labels)) if len(labels) else 0.0,
        "clip_accuracy": float(np.mean(true == pred)) if len(true) else 0.0,
        "n_clips": int(len(clips)),
        "n_patches": int(len(labels)),
        "confusion": confusion_matrix(true, pred, n_classes),
        "clip_true": true,
        "clip_pred": pred,
        "clip_ids": clips,
    }


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Float vs quantized: top-1 agreement over patches and mean cosine similarity of the output vectors."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise EvaluationError(f"output shapes differ: {reference.shape} vs {other.shape}")
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    cosine = np.sum(reference * other, axis=1) / np.maximum(norms, 1e-12)
    return {
        "top1_agreement": float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1))),
        "mean_cosine": float(np.mean(cosine)),
        "max_abs_diff": float(np.max(np.abs(reference - other))) if reference.size else 0.0,
    }


def confusion_rows(matrix: np.ndarray, class_names: list[str]) -> list[dict[str, str]]:
    """DVC `confusion` plot rows: one {actual, predicted} per clip."""
    rows = []
    for i, actual in enumerate(class_names):
        for j, predicted in enumerate(class_names):
            rows += [{"actual": actual, "predicted": predicted}] * int(matrix[i, j])
    return rows


def save_confusion_png(matrix: np.ndarray, class_names: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 6))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(class_names)), class_names, rotation=60, ha="right")
    axes.set_yticks(range(len(class_names)), class_names)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if matrix[i, j]:
                colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
                axes.text(j, i, int(matrix[i, j]), ha="center", va="center", color=colour)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def per_patch_frame(index: pd.DataFrame, probs: np.ndarray, class_names: list[str]) -> pd.DataFrame:
    """Patch predictions next to the index rows (for reports and debugging)."""
    frame = index[["clip_id", "patch", "label", "label_index", "fold"]].copy()
    frame["predicted"] = [class_names[i] for i in probs.argmax(axis=1)]
    frame["score"] = probs.max(axis=1)
    return frame
