"""Per-file checks: the manifest path stays inside the raw dir; the samples decode, are finite, within full scale,
not silent, with enough sound after silence removal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from aed.audio import AudioError, load_audio, read_audio
from aed.features import FeatureConfig, remove_silence
from aed.params import bounded
from aed.validation.problems import Problem


@dataclass(frozen=True)
class AudioCheckConfig:
    """The per-file limits (validate.silent_peak_dbfs, validate.min_active_s; aed.validation.validate.ValidateParams
    is this class with the rest of the section)."""

    silent_peak_dbfs: float = bounded(-80.0, None, 0.0)  # a file whose peak is at or below this is all-silent
    min_active_s: float = bounded(0.1, 0.0)  # seconds of sound left after the reference silence removal


def check_clip(
    path: Path, config: AudioCheckConfig = AudioCheckConfig(), features: FeatureConfig = FeatureConfig()
) -> list[Problem]:
    """Reasons why the clip cannot be used (empty when it is fine), judged after decoding with the reference front
    end `features`. Never raises for a bad file."""
    if not Path(path).is_file():  # e.g. removed from the raw folder after ingest
        return [Problem("file missing", f"{path}: file not found")]
    try:
        signal = load_audio(path, features.sample_rate, features.max_duration_s)
    except AudioError as error:
        return [Problem("unreadable audio", str(error))]
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak > 1.0:  # resampling can overshoot a full-scale file a little: judge the file's own samples
        over = _file_peak_dbfs(path, features.max_duration_s)
        if over > 0.0:
            detail = f"{path}: peak {over:+.1f} dBFS above full scale (float samples beyond [-1, 1])"
            return [Problem("above full scale", detail)]
    if peak_dbfs <= config.silent_peak_dbfs:
        detail = f"{path}: silent (peak {peak_dbfs:.1f} dBFS <= {config.silent_peak_dbfs} dBFS)"
        return [Problem("silent", detail)]
    active = remove_silence(signal, features.silence_top_db, features.silence_frame)
    active_s = len(active) / features.sample_rate
    if active_s < config.min_active_s:
        detail = f"{path}: only {active_s:.3f} s of sound after silence removal (< {config.min_active_s} s)"
        return [Problem("too little sound after silence removal", detail)]
    return []


def _file_peak_dbfs(path: Path, max_duration_s: float) -> float:
    samples, _ = read_audio(path, max_duration_s)
    peak = float(np.max(np.abs(samples)))
    return 20.0 * float(np.log10(peak)) if peak > 0 else -np.inf


def path_problem(relative: str) -> str | None:
    """Why a manifest path may not be joined to the raw dir (it would read a file outside it), or None.

    Checked on the text, not on the resolved path: the raw dir itself may be a symlink to a mirror."""
    if not relative or not relative.strip():
        return "empty path"
    for flavour in (PurePosixPath, PureWindowsPath):
        pure = flavour(relative)
        if pure.is_absolute() or pure.anchor:
            return f"path {relative!r} is absolute (must be relative to the raw dir)"
        if ".." in pure.parts:
            return f"path {relative!r} contains '..' (leaves the raw dir)"
    if "\x00" in relative:
        return f"path {relative!r} contains a NUL byte"
    return None
