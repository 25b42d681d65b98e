"""Small helpers the KFP task bodies share: params sections in, KFP metric metadata out.

They translate between KFP's world (one params dict, artifact paths, metadata) and a step's `run` signature; they
hold no step logic. Every step's params dataclass is found from the annotation of its `run(params: ...)`, so the
pipeline validates exactly what `aed <step>` validates.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import typing
from types import ModuleType
from typing import Any

from aed.params import ParamsError, from_dict


def params_class(step: ModuleType) -> type:
    """The dataclass annotated on `step.run`'s `params` argument."""
    run = getattr(step, "run", None)
    if run is None:
        raise TypeError(f"{step.__name__} has no run()")
    hints = typing.get_type_hints(run)
    cls = hints.get("params")
    if cls is None or not dataclasses.is_dataclass(cls):
        raise TypeError(f"{step.__name__}.run has no dataclass-typed 'params' argument")
    return cls


def section_name(step: ModuleType) -> str:
    return getattr(step, "SECTION", step.__name__.rsplit(".", 1)[-1])


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


def step_params(params: str | dict[str, Any], step: ModuleType) -> Any:
    """The step's params dataclass, filled and checked from its section of the pipeline's params."""
    params = params_dict(params)
    section = section_name(step)
    data = params.get(section)
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{section}: expected a mapping, got {data!r}")
    return from_dict(params_class(step), data, section)


def validate_params(params: dict[str, Any], steps: typing.Iterable[str]) -> dict[str, Any]:
    """Check every step's section before any task starts; ParamsError names the first bad key."""
    checked = {}
    for name in steps:
        try:
            step = importlib.import_module(f"components.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"components.{name}":
                continue  # not built yet: its task fails with a clear import error if it is reached
            raise
        checked[name] = step_params(params, step)
    return checked


def log_scalars(artifact: Any, values: dict[str, Any], prefix: str = "") -> None:
    """Copy the finite numbers (and booleans) of a step's metrics dict into a KFP Metrics artifact's metadata."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            log_scalars(artifact, value, prefix=f"{name}.")
        elif isinstance(value, bool):
            artifact.log_metric(name, float(value))
        elif isinstance(value, int | float) and math.isfinite(value):
            artifact.log_metric(name, value)
