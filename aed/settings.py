"""Effective settings: a params section merged with the defaults of the class that owns it, each value with where it
comes from. `aed params show` prints every section this way and `aed train` prints its own section per model, so
a per-model override that beats a top-level value is never a surprise.

Sources: `default` (the owning class's value; the params file does not set the key), the params file's name (its
section sets the key), `<section>.overrides.<model>` (a per-model override, e.g. train.overrides.yamnet_256).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aed.params import ParamsError, from_dict

DEFAULT = "default"


@dataclass(frozen=True)
class Setting:
    """One row of the table: `section.key` (nested classes dotted further), its effective value, its source."""

    key: str
    value: Any
    source: str


def effective_settings(
    section: str,
    cls: type,
    data: Mapping[str, Any] | None,
    model: str | None = None,
    file_label: str = "params.yaml",
) -> list[Setting]:
    """The rows of `section` as read into `cls` from `data` (the section as the params file has it, or None).

    With `model`, a class with per-model overrides (`for_model`, e.g. TrainParams) has the model's overrides
    applied and its `overrides` row left out (it is folded into the values). The section is validated as the
    step validates it, so a bad value raises the step's one-line ParamsError."""
    value = from_dict(cls, data, section)  # refuses a section that is not a mapping, naming it
    per_model = model is not None and hasattr(value, "for_model")
    override: dict[str, Any] = {}
    if hasattr(value, "for_model"):
        for name in value.overrides:
            value.for_model(name)  # every model's overrides are checked as its training would check them
    if per_model:
        override = _override_of(value, section, model)
        value = value.for_model(model)
    rows = []
    for row in _rows(section, value, dict(data or {}), file_label):
        name = row.key.removeprefix(f"{section}.").split(".")[0]
        if per_model and name == "overrides":
            continue  # folded into the values above
        if name in override:
            row = dataclasses.replace(row, source=f"{section}.overrides.{model}")
        rows.append(row)
    return rows


def _override_of(value: Any, section: str, model: str) -> dict[str, Any]:
    override = getattr(value, "overrides", {}).get(model) or {}
    if not isinstance(override, dict):
        raise ParamsError(f"{section}.overrides.{model}: expected a mapping of keys, got {override!r}")
    return override


def _rows(prefix: str, value: Any, given: Mapping[str, Any], file_label: str) -> list[Setting]:
    """Every field of the dataclass `value`; a nested dataclass (ingest.fsd50k) gives one row per own field."""
    rows = []
    for field in dataclasses.fields(value):
        key, current = f"{prefix}.{field.name}", getattr(value, field.name)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            nested = given.get(field.name)
            rows += _rows(key, current, nested if isinstance(nested, Mapping) else {}, file_label)
            continue
        rows.append(Setting(key, current, file_label if field.name in given else DEFAULT))
    return rows


def given_from_values(value: Any) -> dict[str, Any]:
    """The section as a params file would have to set it to give `value`: the fields that differ from the class's
    defaults. For a caller that holds only the loaded object (a library call, not a params file)."""
    defaults = type(value)()
    return {
        field.name: getattr(value, field.name)
        for field in dataclasses.fields(value)
        if getattr(value, field.name) != getattr(defaults, field.name)
    }


def show_value(value: Any) -> str:
    """A value as params.yaml spells it: null, true, 0.001, [a, b], {key: value}."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return value if value.strip() == value and value else json.dumps(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {show_value(item)}" for key, item in value.items()) + "}"
    return str(value)


def format_settings(rows: list[Setting]) -> list[str]:
    """One aligned line per setting: key, value, source."""
    if not rows:
        return []
    shown = [(row.key, show_value(row.value), row.source) for row in rows]
    key_width = max(len(key) for key, _, _ in shown)
    value_width = min(40, max(len(value) for _, value, _ in shown))
    return [f"  {key:<{key_width}}  {value:<{value_width}}  ({source})" for key, value, source in shown]
