"""Audio decoding as the reference does it (librosa.load(sr=16000, mono=True, duration=10)), with clear errors.

soundfile decodes WAV/FLAC/OGG/MP3 (libsndfile); soxr resamples with the same 'HQ' quality librosa uses by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe(path: Path) -> AudioInfo:
    """Header facts without decoding the samples."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file")
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # libsndfile raises several types for unreadable files
        raise AudioError(f"{path}: cannot read audio header ({_short(error)})") from error
    return AudioInfo(sample_rate=int(info.samplerate), channels=int(info.channels), frames=int(info.frames))


def read_audio(path: Path, max_duration_s: float | None = None) -> tuple[np.ndarray, AudioInfo]:
    """Decode (frames, channels) float32 samples at the file's own rate; optionally only the first seconds."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: zero-length file")
    # One open for the header and the samples (probe + read opened the file twice: a tenth of the decode time of
    # 5 s FLAC clips, the patcher's floor).
    try:
        sound = soundfile.SoundFile(str(path))
    except Exception as error:  # libsndfile raises several types for unreadable files
        raise AudioError(f"{path}: cannot read audio header ({_short(error)})") from error
    with sound:
        _check_riff_length(path)
        info = AudioInfo(
            sample_rate=int(sound.samplerate), channels=int(sound.channels), frames=int(sound.frames)
        )
        frames = -1 if max_duration_s is None else int(round(max_duration_s * info.sample_rate))
        try:
            samples = sound.read(frames, dtype="float32", always_2d=True)
        except Exception as error:
            raise AudioError(f"{path}: cannot decode audio ({_short(error)})") from error
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no audio samples")
    return samples, info


def load_audio(path: Path, sample_rate: int = 16000, max_duration_s: float | None = 10.0) -> np.ndarray:
    """Mono float32 waveform at sample_rate: first max_duration_s seconds, channels averaged, resampled."""
    samples, info = read_audio(path, max_duration_s)
    return to_mono_at_rate(samples, info, sample_rate, path)


def to_mono_at_rate(samples: np.ndarray, info: AudioInfo, sample_rate: int, path: Path) -> np.ndarray:
    """read_audio's samples as one channel at sample_rate (the channel mean, soxr 'HQ'); non-finite refused."""
    if not np.isfinite(samples).all():
        bad = int(np.size(samples) - np.count_nonzero(np.isfinite(samples)))
        raise AudioError(f"{path}: {bad} non-finite sample(s) (NaN or inf)")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if info.sample_rate != sample_rate:
        mono = soxr.resample(mono, info.sample_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def _check_riff_length(path: Path) -> None:
    """libsndfile quietly shortens a truncated WAV to what is on disk; the RIFF data chunk says what should be."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return
            size = int.from_bytes(chunk[4:], "little")
            if chunk[:4] == b"data":
                available = path.stat().st_size - handle.tell()
                if size != 0xFFFFFFFF and available < size:  # 0xFFFFFFFF: streamed WAV of unknown length
                    raise AudioError(
                        f"{path}: truncated WAV: header declares {size} bytes of audio, file holds {available}"
                    )
                return
            handle.seek(size + (size & 1), 1)


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
