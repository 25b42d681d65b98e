"""A small dataset of the kind a new user brings: three classes, 36 WAV files (a third of them 44.1 kHz stereo)
and a `filename,label,fold` CSV. Built from the ESC-10 mirror's crying_baby, dog and rooster clips (CC BY 3.0:
ATTRIBUTION.txt goes with the copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
from scipy.signal import resample_poly

CLASSES = ("crying_baby", "dog", "rooster")
FOLDS = (1, 2, 3)
PER_CLASS_AND_FOLD = 4


def make_own_dataset(esc10_dir: Path, target: Path) -> Path:
    """Writes target/audio/*.wav and target/labels.csv; returns target."""
    meta = pd.read_csv(esc10_dir / "meta.csv").sort_values("filename")
    chosen = meta[meta["category"].isin(CLASSES) & meta["fold"].isin(FOLDS)]
    chosen = chosen.groupby(["category", "fold"]).head(PER_CLASS_AND_FOLD)
    (target / "audio").mkdir(parents=True)
    rows = []
    for number, row in enumerate(chosen.itertuples()):
        audio, rate = sf.read(esc10_dir / "audio" / row.filename, dtype="float32")
        name = f"{row.category}_{number:02d}.wav"
        if number % 3 == 0:  # 44.1 kHz stereo, as a phone or a field recorder writes it
            upsampled = resample_poly(audio, 441, 160).astype(np.float32)
            sf.write(target / "audio" / name, np.stack([upsampled, 0.8 * upsampled], axis=1), 44100)
        else:
            sf.write(target / "audio" / name, audio, rate)
        rows.append({"filename": f"audio/{name}", "label": row.category, "fold": row.fold})
    pd.DataFrame(rows).to_csv(target / "labels.csv", index=False)
    shutil.copyfile(esc10_dir / "ATTRIBUTION.txt", target / "ATTRIBUTION.txt")
    return target
