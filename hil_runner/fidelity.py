"""Device-vs-reference fidelity (as ST's validate reports it) and clip accuracy (summed softmax per clip)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def fidelity(device: np.ndarray, host: np.ndarray) -> dict[str, float]:
    """device, host: (n_patches, n_outputs) float arrays of the same model's outputs."""
    device = device.reshape(len(device), -1).astype(np.float64)
    host = host.reshape(len(host), -1).astype(np.float64)
    if device.shape != host.shape or not len(device):
        raise ValueError(f"fidelity: device outputs {device.shape} and host outputs {host.shape} must match")
    norms = np.linalg.norm(device, axis=1) * np.linalg.norm(host, axis=1)
    cosine = np.where(norms > 0, np.sum(device * host, axis=1) / np.maximum(norms, 1e-30), 1.0)
    host_norm = np.linalg.norm(host, axis=1)
    l2r = np.linalg.norm(device - host, axis=1) / np.maximum(host_norm, 1e-30)
    return {
        "top1_agreement": float(np.mean(device.argmax(axis=1) == host.argmax(axis=1))),
        "cosine_mean": float(np.mean(cosine)),
        "cosine_min": float(np.min(cosine)),
        "l2r_mean": float(np.mean(l2r)),
        "l2r_max": float(np.max(l2r)),
        "max_abs_diff": float(np.max(np.abs(device - host))),
        "bit_exact_fraction": float(np.mean(np.all(device == host, axis=1))),
    }


def clip_accuracy(scores: np.ndarray, clip_ids: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """Sum the patch scores per clip, argmax, compare with the clip label. Returns (accuracy, n_clips)."""
    frame = pd.DataFrame(scores.reshape(len(scores), -1))
    frame["clip"] = clip_ids
    summed = frame.groupby("clip", sort=False).sum()
    truth = pd.Series(labels, index=clip_ids).groupby(level=0, sort=False).first().loc[summed.index]
    predicted = summed.to_numpy().argmax(axis=1)
    return float(np.mean(predicted == truth.to_numpy())), len(summed)


def latency_stats(durations_ms: list[float]) -> dict[str, float]:
    values = np.asarray(durations_ms, dtype=np.float64)
    return {
        "median_ms": float(np.median(values)),
        "mean_ms": float(np.mean(values)),
        "min_ms": float(np.min(values)),
        "max_ms": float(np.max(values)),
        "std_ms": float(np.std(values)),
        "repeats": len(values),
    }
