"""What the KFP task bodies (components/<step>/task.py) share: params.yaml sections in, KFP metric metadata out.

KFP ships a task body's source to the task's container, where it imports the installed project and calls its step's
`run`, the same entry point as `aed <step>` and the dvc.yaml stage. A body only maps its artifact paths and the
params (params.yaml as JSON text) onto `run`'s arguments and copies the returned figures into KFP metadata; it
imports its own step and these helpers, never another step.

These helpers hold no step logic. Every step's params dataclasses are found from the annotations of its `run`, so a
task validates exactly what `aed <step>` validates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from aed.params import ParamsError, from_dict


def _dataclass_of(hint: Any) -> type | None:
    """The dataclass in an annotation like `TrainParams` or `ModelsParams | None`; not in `list[ModelFolders]`,
    a list of inputs rather than a params section."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return None
    for option in typing.get_args(hint):
        if dataclasses.is_dataclass(option):
            return option
    return None


class _StepNames(dict):
    """The names `run`'s annotations may use: the step module's own, also those it imports on first use (a module
    __getattr__, PEP 562, for a params class whose module loads pandas, which `aed --help` must not pay for)."""

    def __init__(self, step: ModuleType) -> None:
        super().__init__()
        self.step = step

    def __missing__(self, name: str) -> Any:
        try:
            return getattr(self.step, name)
        except AttributeError:
            raise KeyError(name) from None  # not the step's: the module globals and builtins are tried next


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
    for name, hint in typing.get_type_hints(run, localns=_StepNames(step)).items():
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
    """One params.yaml section as its dataclass, checked like `aed.params.load_section` does (from_dict refuses
    a section that is not a mapping)."""
    return from_dict(cls, params_dict(params).get(name), name)


def step_args(params: str | dict[str, Any], step: ModuleType) -> dict[str, Any]:
    """The params dataclasses `step.run` takes, by argument name (`params=`, and e.g. `models=`).

    An argument other than `params` is filled only when params.yaml has a section of that name; otherwise the
    step's own default applies (train's `models=None`), and non-params dataclasses (a FeatureConfig) are left
    to the caller. A path value that is still relative is refused (`require_absolute_paths`)."""
    data = params_dict(params)
    args = {
        arg: section(data, name, cls)
        for arg, (name, cls) in params_sections(step).items()
        if arg == "params" or name in data
    }
    for arg, (name, _cls) in params_sections(step).items():
        if arg in args:
            require_absolute_paths(name, args[arg])
    return args


# Params values that name a local file or folder. In `aed <step>` and `dvc repro` a relative one is relative to
# the project folder (where params.yaml is, the commands' working directory). A pipeline task has no such folder:
# `aed pipeline` resolves them against params.yaml's folder (run-local) or the image's project folder
# (compile, submit), and a task refuses any that is still relative instead of reading its working directory.
PATH_FIELDS = (
    "ingest.source",
    "ingest.cache_dir",
    "ingest.fsd50k.ontology",
    "models.yamnet_1024_h5",
    "models.weights_cache_dir",
    "convert.stedgeai",
    "hil.inventory",
    "hil.lock_dir",
    "hil.workdir",
    "hil.firmware",
    "gate.baseline",
    "promote.registry",
)


def is_local_relative(value: Any) -> bool:
    """A relative local path (URLs like https:// or s3:// and empty values are not paths here)."""
    if value is None or value == "":
        return False
    text = str(value)
    return "://" not in text and not Path(text).expanduser().is_absolute()


def field_at(obj: Any, keys: list[str]) -> Any:
    for key in keys:
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
        if obj is None:
            return None
    return obj


def require_absolute_paths(section_name: str, value: Any) -> None:
    """Refuse a params section whose path fields are relative: in a task they would be read in the working
    directory, which is nobody's input."""
    for dotted in PATH_FIELDS:
        name, *keys = dotted.split(".")
        if name != section_name:
            continue
        found = field_at(value, keys)
        if is_local_relative(found):
            raise ParamsError(
                f"{dotted}: relative path {str(found)!r} in a pipeline task, which has no project folder; "
                "give an absolute path (aed pipeline resolves params.yaml's relative paths)"
            )


def feature_config(params: str | dict[str, Any]) -> Any:
    """The front end's FeatureConfig from the `patch` section, as `aed export-firmware` builds it."""
    from aed.patching import PatchParams

    return section(params, "patch", PatchParams).feature_config()


def class_names(params: str | dict[str, Any]) -> list[str]:
    """`validate.classes` as `aed patch` and `aed export-firmware` read it (the steps order it with
    aed.patching.class_order)."""
    from aed.validation.validate import ValidateParams

    return section(params, "validate", ValidateParams).classes


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
