"""Per-file checks that need the samples: decodes, finite, not silent, enough sound after silence removal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aed.audio import AudioError, load_audio
from aed.features import FeatureConfig, remove_silence


@dataclass(frozen=True)
class AudioCheckConfig:
    silent_peak_dbfs: float = -80.0
    min_active_s: float = 0.1
    features: FeatureConfig = FeatureConfig()


def check_clip(path: Path, config: AudioCheckConfig = AudioCheckConfig()) -> list[str]:
    """Reasons why the clip cannot be used (empty when it is fine). Never raises for a bad file."""
    try:
        signal = load_audio(path, config.features.sample_rate, config.features.max_duration_s)
    except AudioError as error:
        return [str(error)]
    peak = float(np.max(np.abs(signal))) if signal.size else 0.0
    peak_dbfs = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if peak_dbfs <= config.silent_peak_dbfs:
        return [f"{path}: silent (peak {peak_dbfs:.1f} dBFS <= {config.silent_peak_dbfs} dBFS)"]
    active = remove_silence(signal, config.features.silence_top_db, config.features.silence_frame)
    active_s = len(active) / config.features.sample_rate
    if active_s < config.min_active_s:
        return [f"{path}: only {active_s:.3f} s of sound after silence removal (< {config.min_active_s} s)"]
    return []
