"""Small helpers the KFP task bodies share: params sections in, KFP metric metadata out.

They translate between KFP's world (one params dict, artifact paths, metadata) and a step's `run` signature; they
hold no step logic. Every step's params dataclasses are found from the annotations of its `run`, so the pipeline
validates exactly what `aed <step>` validates.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from aed.params import ParamsError, from_dict


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass in an annotation like `TrainParams` or `ModelsParams | None`."""
    if dataclasses.is_dataclass(hint):
        return hint
    for option in typing.get_args(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


def section_name(step: ModuleType) -> str:
    return getattr(step, "SECTION", step.__name__.rsplit(".", 1)[-1])


def params_sections(step: ModuleType) -> dict[str, tuple[str, type]]:
    """{run argument: (params.yaml section, dataclass)} for every dataclass-typed argument of `step.run`.

    `params` reads the step's own section; any other such argument reads the section of its name (train's
    `models: ModelsParams` reads `models`), exactly as the step's CLI handler does.
    """
    run = getattr(step, "run", None)
    if run is None:
        raise TypeError(f"{step.__name__} has no run()")
    found = {}
    for name, hint in typing.get_type_hints(run).items():
        cls = _dataclass_of(hint)
        if cls is not None:
            found[name] = (section_name(step) if name == "params" else name, cls)
    if "params" not in found:
        raise TypeError(f"{step.__name__}.run has no dataclass-typed 'params' argument")
    return found


def params_dict(params: str | dict[str, Any]) -> dict[str, Any]:
    """The pipeline's `params` parameter (params.yaml as JSON text) as a dict."""
    if isinstance(params, dict):
        return params
    try:
        data = json.loads(params)
    except json.JSONDecodeError as error:
        raise ParamsError(f"pipeline parameter 'params': not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise ParamsError("pipeline parameter 'params': expected a JSON object (the params.yaml sections)")
    return data


def section(params: str | dict[str, Any], name: str, cls: type) -> Any:
    """One params.yaml section as its dataclass, checked like `aed.params.load_section` does."""
    data = params_dict(params).get(name)
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{name}: expected a mapping, got {data!r}")
    return from_dict(cls, data, name)


def step_args(params: str | dict[str, Any], step: ModuleType) -> dict[str, Any]:
    """The params dataclasses `step.run` takes, by argument name (`params=`, and e.g. `models=`).

    An argument other than `params` is filled only when params.yaml has a section of that name; otherwise the
    step's own default applies (train's `models=None`), and non-params dataclasses (a FeatureConfig) are left
    to the caller."""
    data = params_dict(params)
    return {
        arg: section(data, name, cls)
        for arg, (name, cls) in params_sections(step).items()
        if arg == "params" or name in data
    }


def feature_config(params: str | dict[str, Any]) -> Any:
    """The front end's FeatureConfig from the `patch` section, as `aed export-firmware` builds it."""
    from components.patch import PatchParams

    return section(params, "patch", PatchParams).feature_config()


def class_names(params: str | dict[str, Any]) -> list[str] | None:
    """`validate.classes`: the model's output order, as `aed patch` and `aed export-firmware` read it."""
    classes = (params_dict(params).get("validate") or {}).get("classes")
    return list(classes) if classes else None


def validate_params(
    params: dict[str, Any], steps: typing.Iterable[str], models: typing.Iterable[str] = ()
) -> list[str]:
    """Check every step's sections before any task starts; ParamsError names the first bad key.

    Returns the steps that are not built yet (their tasks would fail on import)."""
    missing = []
    for name in steps:
        try:
            step = importlib.import_module(f"components.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"components.{name}":
                missing.append(name)
                continue
            raise
        for value in step_args(params, step).values():
            # Cross-field checks some params classes carry (e.g. volume_min <= volume_max, per-model overrides).
            for model in models if hasattr(value, "for_model") else ():
                value.for_model(model)
            if callable(getattr(value, "validate", None)):
                value.validate()
    return missing


# components.quantize.QUANTIZED_FILE's names (a test keeps them equal); importing it here would load TensorFlow
# in tasks that do not need it.
INT8_FILES = ("model_int8.tflite", "model_qdq.onnx")


def deployable_model(int8_dir: Path) -> Path:
    """The int8 model to convert, run on boards and promote, as the DVC stages pick it: the `final` split
    (trained on every clip) when there is one, else the first split (reduced runs without a final model)."""
    int8_dir = Path(int8_dir)
    candidates = [d for d in sorted(int8_dir.iterdir()) if d.is_dir()] if int8_dir.is_dir() else []
    chosen = next((d for d in candidates if d.name == "final"), candidates[0] if candidates else None)
    found = [chosen / name for name in INT8_FILES if (chosen / name).is_file()] if chosen else []
    if len(found) != 1:
        raise FileNotFoundError(f"{chosen or int8_dir}: expected exactly one of {', '.join(INT8_FILES)}")
    return found[0]


SKIPPED_METRICS = {"params", "tools", "inputs", "schema_version"}  # configuration, not figures


def log_scalars(artifact: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Copy the finite numbers (and booleans) of a step's metrics dict into a KFP Metrics artifact's metadata."""
    for key, value in values.items():
        if key in SKIPPED_METRICS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            log_scalars(artifact, value, prefix=f"{name}.")
        elif isinstance(value, bool):
            artifact.log_metric(name, float(value))
        elif isinstance(value, int | float) and math.isfinite(value):
            artifact.log_metric(name, value)
