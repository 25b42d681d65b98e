"""Firmware export: the C tables reproduce the reference log-mel front end when read back in plain numpy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from aed import firmware
from aed.features import FeatureConfig, log_mel
from aed.firmware import ExportFirmwareParams
from components.export_firmware import run

CLASSES = ["chainsaw", "clock_tick", "crackling_fire", "crying_baby", "dog",
           "helicopter", "rain", "rooster", "sea_waves", "sneezing"]  # fmt: skip


def _c_array(text: str, name: str) -> np.ndarray:
    body = re.search(rf"{name}\[[^\]]*\](?:\[[^\]]*\])?\s*=\s*\{{(.*?)\}};", text, re.S)
    assert body, f"{name} not found"
    return np.array([float(v.rstrip("f")) for v in re.findall(r"-?[\d.]+(?:e[-+]\d+)?f?", body.group(1))])


@pytest.fixture(scope="module")
def exported(yamnet256_int8: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("firmware")
    run(ExportFirmwareParams(), FeatureConfig(), CLASSES, yamnet256_int8, out, out / "record.json")
    return out


def _firmware_front_end(audio: np.ndarray, source: str, offset: float | None) -> np.ndarray:
    """The firmware's per-frame steps, from the exported C tables only (plain numpy, no aed.features)."""
    window = _c_array(source, "user_win")
    lut = _c_array(source, "user_melFiltersLut")
    start = _c_array(source, "user_melFiltersStartIndices").astype(int)
    stop = _c_array(source, "user_melFiltersStopIndices").astype(int)
    signal = audio.astype(np.float64) / 32768.0
    pad = (512 - window.size) // 2
    columns = []
    for k in range(96):
        frame = np.zeros(512)
        frame[pad : pad + window.size] = signal[160 * k + pad : 160 * k + pad + window.size] * window
        magnitude = np.abs(np.fft.rfft(frame))
        mel, position = np.zeros(start.size), 0
        for m in range(start.size):
            width = stop[m] - start[m] + 1
            mel[m] = np.dot(lut[position : position + width], magnitude[start[m] : stop[m] + 1])
            position += width
        columns.append(np.log(mel + offset) if offset is not None else np.log(np.maximum(mel, 1.1754944e-38)))
    return np.stack(columns, axis=1)


def test_tables_reproduce_reference_log_mel(exported: Path) -> None:
    source = (exported / "user_mel_tables.c").read_text()
    audio = np.load(exported / "golden" / "audio_int16.npy")
    assert audio.size == firmware.patch_samples() == 15_712
    from_tables = _firmware_front_end(audio, source, offset=1e-4)
    reference = log_mel(audio.astype(np.float64) / 32768.0, FeatureConfig())[:, :96]
    np.testing.assert_allclose(from_tables, reference, atol=2e-4)
    np.testing.assert_allclose(np.load(exported / "golden" / "logmel_patch.npy"), reference, atol=1e-6)


def test_table_shapes_match_the_reference_deployment(exported: Path) -> None:
    source = (exported / "user_mel_tables.c").read_text()
    lut = _c_array(source, "user_melFiltersLut")
    start = _c_array(source, "user_melFiltersStartIndices")
    stop = _c_array(source, "user_melFiltersStopIndices")
    assert lut.size == 461 and start.min() == 5 and stop.max() == 239
    assert int(np.sum(stop - start + 1)) == lut.size
    assert _c_array(source, "user_win").size == 400


def test_header_and_golden_vectors(exported: Path) -> None:
    header = (exported / "ai_model_config.h").read_text()
    assert (
        "CTRL_X_CUBE_AI_SPECTROGRAM_NMEL  (64)" in header and "CTRL_X_CUBE_AI_MODE_CLASS_NUMBER 10" in header
    )
    assert '"crying_baby"' in header
    scale = float(re.search(r"INPUT_SCALE\s+\(([-\d.e+]+)F\)", header).group(1))
    zero_point = int(re.search(r"INPUT_ZERO_POINT\s+\((-?\d+)\)", header).group(1))
    patch = np.load(exported / "golden" / "logmel_patch.npy")
    expected_input = np.clip(np.round(patch / scale + zero_point), -128, 127)
    np.testing.assert_array_equal(np.load(exported / "golden" / "input_int8.npy"), expected_input)
    golden = (exported / "golden_vectors.h").read_text()
    np.testing.assert_array_equal(_c_array(golden, "golden_input"), expected_input.ravel())
    output = np.load(exported / "golden" / "output.npy")
    np.testing.assert_allclose(_c_array(golden, "golden_output"), output, rtol=1e-6)
    assert output.shape == (10,) and output.sum() == pytest.approx(1.0, abs=0.02)


def test_firmware_log_without_offset_differs_on_silence(exported: Path) -> None:
    """Documented difference: the firmware's logf(mel) has no +1e-4, so silent bins go far below ln(1e-4)."""
    source = (exported / "user_mel_tables.c").read_text()
    silence = np.zeros(firmware.patch_samples(), dtype=np.int16)
    assert _firmware_front_end(silence, source, offset=None).max() < -80
    assert _firmware_front_end(silence, source, offset=1e-4).min() == pytest.approx(np.log(1e-4))


def test_bad_settings_and_model(yamnet256_int8: Path, tmp_path: Path) -> None:
    with pytest.raises(firmware.FirmwareExportError, match="22050"):
        firmware.mel_tables(FeatureConfig(sample_rate=22050))
    with pytest.raises(firmware.FirmwareExportError, match="power of two"):
        firmware.mel_tables(FeatureConfig(n_fft=500))
    with pytest.raises(ValueError, match="10 outputs but 3 class names"):
        run(ExportFirmwareParams(), FeatureConfig(), CLASSES[:3], yamnet256_int8, tmp_path / "o", None)


def test_class_order_is_the_patch_stores(yamnet256_int8: Path, tmp_path: Path) -> None:
    """validate.classes in any order: the header lists them as the patch store and the model do (sorted)."""
    figures = run(
        ExportFirmwareParams(), FeatureConfig(), CLASSES[::-1], yamnet256_int8, tmp_path / "o", None
    )
    header = (tmp_path / "o" / "ai_model_config.h").read_text()
    listed = re.search(r"CLASS_LIST\s+\{(.*)\}", header).group(1)
    assert re.findall(r'"(\w+)"', listed) == CLASSES == figures["classes"]
    with pytest.raises(ValueError, match=r"classes: \['dog'\] listed more than once"):
        run(
            ExportFirmwareParams(),
            FeatureConfig(),
            [*CLASSES[:9], "dog"],
            yamnet256_int8,
            tmp_path / "p",
            None,
        )
