"""Clip-level evaluation: patch softmax summed per clip, argmax (ties -> lowest class index), and metrics.

Summing equals averaging for the argmax. numpy's argmax returns the first maximum, which is the documented
deterministic tie rule (the reference breaks ties at random).

`evaluate_model` evaluates one model's test splits in named phases: read the split layout, predict each split
with the float model and its int8 model, score the predictions, and summarize them per format. `write_reports`
writes the per-model report files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aed.artifacts import EVALUATION_FILE, FLOAT_FORMAT, FLOAT_MODEL_FILE, SPLITS_FILE, int8_models_in
from aed.models.runners import load_keras, predict_keras, predict_onnx, predict_tflite
from aed.patchstore import PatchStore
from aed.records import write_json


class EvaluationError(ValueError):
    pass


@dataclass(frozen=True)
class EvaluateParams:
    """The `evaluate` section of params.yaml."""

    reference_kernels: bool = True  # LiteRT BUILTIN_REF: bit-exact with TFLite Micro (slower than XNNPACK)
    int8: bool = True  # also evaluate the quantized models


@dataclass(frozen=True)
class ModelFolders:
    """One model's inputs: its float models (train's output) and its int8 models (quantize's), one subfolder
    per split in each."""

    name: str
    float_dir: Path
    int8_dir: Path

    def __post_init__(self) -> None:
        # the name is also the model's reports folder: one plain folder name, never a way out of the reports
        if not self.name or self.name in (".", "..") or "/" in self.name or "\\" in self.name:
            raise EvaluationError(f"model name {self.name!r}: expected a plain folder name")

    @classmethod
    def under(cls, models_root: Path, name: str) -> ModelFolders:
        """The DVC layout: <models_root>/<name>/float and <models_root>/<name>/int8."""
        return cls(name, Path(models_root) / name / "float", Path(models_root) / name / "int8")

    @property
    def splits_file(self) -> Path:
        return Path(self.float_dir) / SPLITS_FILE


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


@dataclass(frozen=True)
class Score:
    """One model's outputs on one split, scored: patch and clip accuracy and the clip confusion matrix."""

    patch_accuracy: float
    clip_accuracy: float
    n_clips: int
    n_patches: int
    confusion: np.ndarray
    clip_true: np.ndarray
    clip_pred: np.ndarray
    clip_ids: np.ndarray


def score(probs: np.ndarray, clip_ids: np.ndarray, labels: np.ndarray, n_classes: int) -> Score:
    """Patch and clip accuracy plus the clip confusion matrix."""
    labels = np.asarray(labels, dtype=np.int64)
    true, pred, clips = clip_predictions(probs, clip_ids, labels)
    return Score(
        patch_accuracy=float(np.mean(np.asarray(probs).argmax(axis=1) == labels)) if len(labels) else 0.0,
        clip_accuracy=float(np.mean(true == pred)) if len(true) else 0.0,
        n_clips=int(len(clips)),
        n_patches=int(len(labels)),
        confusion=confusion_matrix(true, pred, n_classes),
        clip_true=true,
        clip_pred=pred,
        clip_ids=clips,
    )


@dataclass(frozen=True)
class Agreement:
    """Float vs quantized outputs on the same patches."""

    top1_agreement: float
    mean_cosine: float
    max_abs_diff: float

    def to_dict(self) -> dict[str, float]:
        return {
            "top1_agreement": self.top1_agreement,
            "mean_cosine": self.mean_cosine,
            "max_abs_diff": self.max_abs_diff,
        }


def agreement(reference: np.ndarray, other: np.ndarray) -> Agreement:
    """Float vs quantized: top-1 agreement over patches and mean cosine similarity of the output vectors."""
    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise EvaluationError(f"output shapes differ: {reference.shape} vs {other.shape}")
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(other, axis=1)
    cosine = np.sum(reference * other, axis=1) / np.maximum(norms, 1e-12)
    return Agreement(
        top1_agreement=float(np.mean(reference.argmax(axis=1) == other.argmax(axis=1))),
        mean_cosine=float(np.mean(cosine)),
        max_abs_diff=float(np.max(np.abs(reference - other))) if reference.size else 0.0,
    )


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


# -- one model's evaluation, in phases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitLayout:
    """What train's splits.json says: the split scheme, and the test clips of every split that has some."""

    scheme: str
    tested: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class SplitPredictions:
    """One split's test patches through the float model and, when evaluated, its int8 model."""

    labels: np.ndarray
    clip_ids: np.ndarray
    outputs: dict[str, np.ndarray]  # format -> (patches, classes) outputs, float32 first


@dataclass(frozen=True)
class SplitScores:
    scores: dict[str, Score]  # format -> score, float32 first
    agreement: Agreement | None  # int8 vs float, when the int8 model was evaluated


@dataclass(frozen=True)
class FormatSummary:
    """One format's figures over every tested split."""

    clip_accuracy: dict[str, float]  # split -> accuracy
    patch_accuracy: dict[str, float]
    n_clips: int
    n_patches: int
    confusion: np.ndarray  # clip confusion matrix of all test splits together

    def metrics(self, scheme: str) -> dict[str, Any]:
        return {
            "clip_accuracy": {
                **self.clip_accuracy,
                "mean": float(np.mean(list(self.clip_accuracy.values()))),
            },
            "patch_accuracy": {
                **self.patch_accuracy,
                "mean": float(np.mean(list(self.patch_accuracy.values()))),
            },
            "n_clips": self.n_clips,
            "n_patches": self.n_patches,
            "split": scheme,
        }


@dataclass(frozen=True)
class ModelEvaluation:
    name: str
    class_names: list[str]
    scheme: str
    formats: dict[str, FormatSummary]  # float32 first
    agreements: dict[str, Agreement]  # split -> int8 vs float; empty when int8 was not evaluated

    def metrics(self) -> dict[str, Any]:
        """The model's entry in reports/metrics.json."""
        metrics: dict[str, Any] = {fmt: summary.metrics(self.scheme) for fmt, summary in self.formats.items()}
        if self.agreements:
            found = self.agreements.values()
            metrics["int8_vs_float"] = {
                "top1_agreement": float(np.mean([a.top1_agreement for a in found])),
                "mean_cosine": float(np.mean([a.mean_cosine for a in found])),
                "per_split": {split: a.to_dict() for split, a in self.agreements.items()},
            }
        return metrics

    def details(self) -> dict[str, Any]:
        """The model's evaluation.json: per-class report and confusion matrix per format."""
        formats = {
            fmt: {
                "per_class": per_class_report(summary.confusion, self.class_names),
                "confusion": summary.confusion.tolist(),
            }
            for fmt, summary in self.formats.items()
        }
        return {"model": self.name, "class_names": self.class_names, "formats": formats}


def evaluate_model(store: PatchStore, folders: ModelFolders, params: EvaluateParams) -> ModelEvaluation:
    """Every tested split of one model through its float and int8 models, scored and summarized."""
    layout = read_layout(folders)
    n_classes = len(store.class_names)
    results = {
        split: score_split(predict_split(store, folders, split, clips, params), n_classes)
        for split, clips in layout.tested.items()
    }
    return summarize(folders.name, layout.scheme, results, store.class_names)


def read_layout(folders: ModelFolders) -> SplitLayout:
    path = folders.splits_file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; run `aed train --model-name {folders.name}` first")
    try:
        layout = json.loads(path.read_text())
        tested = {name: _test_clips(split) for name, split in layout["splits"].items()}
        scheme = layout["split"]
    except KeyError as error:
        raise EvaluationError(f"{path}: not the splits.json `aed train` writes (no key {error})") from None
    except (ValueError, TypeError, AttributeError) as error:
        raise EvaluationError(f"{path}: not the splits.json `aed train` writes ({error})") from None
    tested = {name: clips for name, clips in tested.items() if clips}
    if not tested:
        raise EvaluationError(f"{path}: no split has test clips")
    return SplitLayout(scheme, tested)


def _test_clips(split: dict[str, Any]) -> tuple[str, ...]:
    clips = split["test"]
    if not isinstance(clips, list) or not all(isinstance(clip, str) for clip in clips):
        raise TypeError(f"'test' must be a list of clip ids, got {clips!r:.60}")
    return tuple(clips)


def predict_split(
    store: PatchStore, folders: ModelFolders, split: str, clips: tuple[str, ...], params: EvaluateParams
) -> SplitPredictions:
    """The split's test patches through its float model and, when `params.int8`, its int8 model (in its own
    runtime: LiteRT for .tflite, onnxruntime for QDQ .onnx)."""
    rows = _test_rows(store, folders, split, clips)
    patches = store.patches(rows)
    n_classes = len(store.class_names)
    float_file = Path(folders.float_dir) / split / FLOAT_MODEL_FILE
    outputs = {FLOAT_FORMAT: _checked(predict_keras(load_keras(float_file), patches), float_file, n_classes)}
    if params.int8:
        fmt, int8_file = _int8_model(Path(folders.int8_dir) / split)
        if fmt == "tflite":
            probs = predict_tflite(int8_file, patches, params.reference_kernels)
        else:
            probs = predict_onnx(int8_file, patches)
        outputs[fmt] = _checked(probs, int8_file, n_classes)
    return SplitPredictions(store.labels(rows), rows["clip_id"].to_numpy(), outputs)


def _test_rows(store: PatchStore, folders: ModelFolders, split: str, clips: tuple[str, ...]) -> pd.DataFrame:
    """The store's patches of the split's test clips; a clip the store does not hold would silently shrink
    the test set, so it is refused."""
    rows = store.index[store.index["clip_id"].isin(set(clips))]
    missing = sorted(set(clips) - set(rows["clip_id"]))
    if missing:
        raise EvaluationError(
            f"{folders.splits_file}: split {split}: {len(missing)} test clip(s) are not in the patch store "
            f"{store.root} (first: {missing[0]!r}); the models were trained on another store"
        )
    return rows


def _int8_model(split_dir: Path) -> tuple[str, Path]:
    """(format, file) of the split's quantized model; the first format of INT8_MODEL_FILE that is there."""
    for fmt, path in int8_models_in(split_dir).items():
        return fmt, path
    raise FileNotFoundError(f"{split_dir}: no quantized model; run `aed quantize` first")


def _checked(probs: np.ndarray, model_file: Path, n_classes: int) -> np.ndarray:
    """A model whose output width is not the store's class count would be scored against the wrong classes."""
    if np.ndim(probs) != 2 or np.shape(probs)[1] != n_classes:
        raise EvaluationError(
            f"{model_file}: outputs of shape {np.shape(probs)[1:]}, but the patch store has {n_classes} classes"
        )
    return probs


def score_split(predictions: SplitPredictions, n_classes: int) -> SplitScores:
    """Every format's outputs scored per clip, and the int8 outputs compared with the float ones."""
    outputs = predictions.outputs
    scores = {
        fmt: score(probs, predictions.clip_ids, predictions.labels, n_classes)
        for fmt, probs in outputs.items()
    }
    int8 = [fmt for fmt in outputs if fmt != FLOAT_FORMAT]
    compared = agreement(outputs[FLOAT_FORMAT], outputs[int8[0]]) if int8 else None
    return SplitScores(scores, compared)


def summarize(
    name: str, scheme: str, results: dict[str, SplitScores], class_names: list[str]
) -> ModelEvaluation:
    """Per format: accuracies per split, counts and the confusion matrix over all splits together."""
    by_format: dict[str, dict[str, Score]] = {}
    for split, result in results.items():
        for fmt, found in result.scores.items():
            by_format.setdefault(fmt, {})[split] = found
    formats = {
        fmt: FormatSummary(
            clip_accuracy={split: s.clip_accuracy for split, s in scores.items()},
            patch_accuracy={split: s.patch_accuracy for split, s in scores.items()},
            n_clips=int(sum(s.n_clips for s in scores.values())),
            n_patches=int(sum(s.n_patches for s in scores.values())),
            confusion=sum(s.confusion for s in scores.values()),
        )
        for fmt, scores in by_format.items()
    }
    agreements = {split: r.agreement for split, r in results.items() if r.agreement is not None}
    return ModelEvaluation(name, list(class_names), scheme, formats, agreements)


def write_reports(evaluation: ModelEvaluation, reports_dir: Path) -> None:
    """reports_dir/confusion_<format>.json (DVC confusion plot rows) and .png per format, and evaluation.json."""
    names, reports_dir = evaluation.class_names, Path(reports_dir)
    for fmt, summary in evaluation.formats.items():
        write_json(reports_dir / f"confusion_{fmt}.json", confusion_rows(summary.confusion, names))
        title = f"{evaluation.name} {fmt} (all test folds)"
        save_confusion_png(summary.confusion, names, reports_dir / f"confusion_{fmt}.png", title)
    write_json(reports_dir / EVALUATION_FILE, evaluation.details())
