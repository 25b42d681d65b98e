"""The file names inside the steps' output folders, in one place.

A model folder holds one subfolder per split (`fold-1` ... and `final`, trained on every clip); each holds the
split's model file. The steps, the Kubeflow task bodies and `dvc.yaml` (its generated blocks: pipelines/dvc_yaml.py)
all take the names from here.
"""

from __future__ import annotations

from pathlib import Path

FLOAT_MODEL_FILE = "model.keras"
# int8 model file per quantize format (quantize.formats)
INT8_MODEL_FILE = {"tflite": "model_int8.tflite", "onnx_qdq": "model_qdq.onnx"}
SPLITS_FILE = "splits.json"  # in a float model folder: the clips of every split (train writes it)
TRAIN_RECORD_FILE = "train.json"
QUANTIZE_RECORD_FILE = "quantize.json"
EVALUATION_FILE = "evaluation.json"
# models/<model>/postprocess.json: the calibrated post-processing (`aed calibrate`; aed.detection.calibrate)
OPERATING_POINT_FILE = "postprocess.json"
FINAL_SPLIT = "final"
# The board stream check and what promotion requires with it (dvc.yaml, the KFP DAG): `aed hil run --stream` on
# the model's held-out soundscapes (the first split's set: its first recording and its ground_truth.csv), and the
# model's streaming evaluation (`aed evaluate --streaming` writes both folders).
STREAM_SOUNDSCAPES = "artifacts/soundscapes/{name}/evaluation"
STREAM_RECORD = "reports/hil_stream_{name}.json"
STREAMING_EVAL_RECORD = "reports/{name}/streaming.json"
# the float model's format name in evaluate's reports (reports/<model>/confusion_float32.json)
FLOAT_FORMAT = "float32"


def deployable_model(int8_dir: Path) -> Path:
    """The int8 model to convert, run on boards and promote: the `final` split's (trained on every clip) when
    there is one, else the first split's (reduced runs without a final model)."""
    int8_dir = Path(int8_dir)
    candidates = [d for d in sorted(int8_dir.iterdir()) if d.is_dir()] if int8_dir.is_dir() else []
    chosen = next((d for d in candidates if d.name == FINAL_SPLIT), candidates[0] if candidates else None)
    found = list(int8_models_in(chosen).values()) if chosen else []
    if len(found) != 1:
        names = ", ".join(INT8_MODEL_FILE.values())
        raise FileNotFoundError(f"{chosen or int8_dir}: expected exactly one of {names}")
    return found[0]


def int8_models_in(split_dir: Path) -> dict[str, Path]:
    """{quantize format: file} of the int8 models one split folder holds, in INT8_MODEL_FILE's order."""
    files = {fmt: Path(split_dir) / name for fmt, name in INT8_MODEL_FILE.items()}
    return {fmt: path for fmt, path in files.items() if path.is_file()}
