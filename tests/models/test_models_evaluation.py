from __future__ import annotations

import numpy as np
import pytest

from aed.evaluation import (
    EvaluationError,
    agreement,
    clip_predictions,
    confusion_rows,
    per_class_report,
    score,
)


def test_clip_score_is_summed_softmax_not_a_vote() -> None:
    # Two patches vote class 0 weakly, one patch says class 1 strongly: the sum picks class 1.
    probs = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    true, pred, clips = clip_predictions(probs, np.array(["c", "c", "c"]), np.array([1, 1, 1]))
    assert list(pred) == [1] and list(true) == [1] and list(clips) == ["c"]


def test_ties_go_to_the_lowest_class_index() -> None:
    probs = np.array([[0.2, 0.4, 0.4], [0.2, 0.4, 0.4]])
    _, pred, _ = clip_predictions(probs, np.array(["x", "x"]), np.array([2, 2]))
    assert list(pred) == [1]


def test_score_and_confusion() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    result = score(probs, np.array(["a", "a", "b", "b"]), np.array([0, 0, 1, 1]), 2)
    assert result["patch_accuracy"] == 0.75
    assert result["clip_accuracy"] == 1.0  # b: 0.9 vs 1.1 -> class 1
    assert result["confusion"].tolist() == [[1, 0], [0, 1]]
    report = per_class_report(np.array([[3, 1], [0, 4]]), ["x", "y"])
    assert report["x"]["precision"] == 1.0 and report["x"]["recall"] == 0.75
    assert report["y"]["precision"] == 0.8
    assert len(confusion_rows(np.array([[3, 1], [0, 4]]), ["x", "y"])) == 8


def test_mixed_labels_in_a_clip_are_refused() -> None:
    with pytest.raises(EvaluationError, match="different labels"):
        clip_predictions(np.eye(2), np.array(["a", "a"]), np.array([0, 1]))


def test_agreement() -> None:
    a = np.array([[0.9, 0.1], [0.4, 0.6]])
    b = np.array([[0.8, 0.2], [0.6, 0.4]])
    result = agreement(a, b)
    assert result["top1_agreement"] == 0.5
    assert 0.8 < result["mean_cosine"] < 1.0
