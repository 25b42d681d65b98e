"""Pipeline-wide params handling for `aed pipeline`: every step's sections checked before any task starts, relative
paths made absolute, and the teacher of each distilled model."""

from __future__ import annotations

import copy
import importlib
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from aed.params import from_dict
from components.taskio import PATH_FIELDS, field_at, is_local_relative, params_sections, section, step_args


def resolve_paths(params: dict[str, Any], root: Path, classes: dict[str, type]) -> dict[str, Any]:
    """A copy of params whose PATH_FIELDS are absolute: a relative value, or a relative default of the section's
    dataclass in `classes` (section name -> dataclass), is joined to `root`. The tasks then read only what these
    absolute paths name, whatever their working directory."""
    resolved = copy.deepcopy(params)
    for dotted in PATH_FIELDS:
        name, *keys = dotted.split(".")
        if name not in classes or not isinstance(resolved.get(name) or {}, dict):
            continue  # no step reads it, or a bad section (the params check names it)
        data = resolved.get(name) or {}
        parent = field_at(data, keys[:-1]) if len(keys) > 1 else data
        if not isinstance(parent, dict):
            continue
        leaf = keys[-1]
        value = parent[leaf] if leaf in parent else field_at(from_dict(classes[name], None, name), keys)
        if is_local_relative(value):
            parent[leaf] = str(Path(root) / str(value))
            resolved[name] = data  # a section that was absent (its defaults) is written out
    return resolved


def step_modules(steps: typing.Iterable[str]) -> tuple[dict[str, ModuleType], list[str]]:
    """({step: its components module} for the steps that are built, [the steps that are not])."""
    modules: dict[str, ModuleType] = {}
    missing: list[str] = []
    for name in steps:
        try:
            modules[name] = importlib.import_module(f"components.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"components.{name}":
                raise  # the step exists but one of its own imports is missing
            missing.append(name)
    return modules, missing


def validate_params(
    params: dict[str, Any], steps: typing.Iterable[str], models: typing.Iterable[str] = ()
) -> list[str]:
    """Check every step's sections before any task starts; ParamsError names the first bad key.

    Returns the steps that are not built yet (their tasks would fail on import)."""
    modules, missing = step_modules(steps)
    for step in modules.values():
        for value in step_args(params, step).values():
            # Cross-field checks some params classes carry (e.g. volume_min <= volume_max, per-model overrides).
            for model in models if hasattr(value, "for_model") else ():
                value.for_model(model)
                if hasattr(value, "teacher_for"):  # train: the teacher must be a known model, not itself
                    value.teacher_for(model)
            if callable(getattr(value, "validate", None)):
                value.validate()
    return missing


def section_classes(steps: typing.Iterable[str]) -> dict[str, type]:
    """{params.yaml section: its dataclass} for every section the given steps read (steps not built are skipped)."""
    found: dict[str, type] = {}
    for step in step_modules(steps)[0].values():
        for section_name, cls in params_sections(step).values():
            found.setdefault(section_name, cls)
    return found


def teachers(params: str | dict[str, Any], models: typing.Iterable[str]) -> dict[str, str]:
    """{student: teacher} for the models of `models` whose teacher (train.teacher, per-model overrides) is among
    them too. A teacher left out of models.names is not trained: its student trains without distillation and says
    so (aed train), as in dvc.yaml (pipelines/dvc_yaml.py)."""
    from aed.training.params import TrainParams

    train_params = section(params, "train", TrainParams)
    names = list(models)
    return {model: teacher for model in names if (teacher := train_params.teacher_for(model)) in names}
