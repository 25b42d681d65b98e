"""Typed, validated access to params.yaml sections.

Each step declares its parameters as a dataclass; `load_section` checks every key's type and range and names the
key in the error (`train.epochs: expected int >= 1, got 'ten'`), before any work starts.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ParamsError(ValueError):
    pass


def read_params(path: Path) -> dict[str, Any]:
    """The params file as a dict of sections; any problem is one ParamsError line naming the file (and line)."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: params file not found")
    if not path.is_file():
        raise ParamsError(f"{path}: params file is not a regular file")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except OSError as error:
        raise ParamsError(f"{path}: cannot read the params file ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ParamsError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: {yaml_problem(error)}") from None
    if not isinstance(data, dict):
        raise ParamsError(
            f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}"
        )
    return data


def yaml_problem(error: yaml.YAMLError) -> str:
    """`line L, column C: problem` from a PyYAML error (its own str() spans several lines)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    problem = getattr(error, "problem", None) or getattr(error, "context", None) or type(error).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}invalid YAML: {' '.join(str(problem).split())}"


def bounded(default: Any, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A dataclass field with an inclusive numeric range."""
    return dataclasses.field(default=default, metadata={"min": minimum, "max": maximum})


def from_dict(cls: type[T], data: dict[str, Any] | None, prefix: str) -> T:
    """`cls` from one params section; type, range and cross-field errors name the key (`patch.fmax: ...`).

    A dataclass may check its cross-field limits in `__post_init__` by raising ValueError("field: problem");
    the section's prefix is added here."""
    if data is not None and not isinstance(data, dict):
        raise ParamsError(f"{prefix}: expected a mapping of keys, got {type(data).__name__} {data!r:.60}")
    data = dict(data or {})
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(key) for key in set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{prefix}: unknown key(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name not in data:
            continue
        key = f"{prefix}.{name}"
        value = _coerce(data[name], hints[name], key)
        _check_range(value, field.metadata, key)
        values[name] = value
    try:
        return cls(**values)
    except ParamsError:
        raise
    except ValueError as error:
        raise ParamsError(f"{prefix}.{error}") from None


def load_section(path: Path, section: str, cls: type[T]) -> T:
    """One section of the params file as `cls`; an error names the file and the key."""
    data = read_params(path).get(section)
    try:
        return from_dict(cls, data, section)
    except ParamsError as error:
        raise ParamsError(f"{path}: {error}") from None


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, key)
            except ParamsError as error:
                errors.append(str(error))
        raise ParamsError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {args}")
    if origin is Literal:
        if value not in args:
            raise ParamsError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        item_hint = args[0] if args else Any
        items = [_coerce(item, item_hint, f"{key}[{i}]") for i, item in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        key_hint, value_hint = args if len(args) == 2 else (Any, Any)
        return {
            _coerce(name, key_hint, f"{key} key {name!r}"): _coerce(item, value_hint, f"{key}.{name}")
            for name, item in value.items()
        }
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ParamsError(f"{key}: {value} is too large for a number") from None
        if not math.isfinite(number):
            # NaN passes every comparison-based range check and inf poisons what it touches: refuse both.
            raise ParamsError(f"{key}: expected a finite number, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {value!r}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a path string, got {value!r}")
        return Path(value)
    return value


def _check_range(value: Any, metadata: Any, key: str) -> None:
    low, high = metadata.get("min"), metadata.get("max")
    if value is None or (low is None and high is None):
        return
    if low is not None and value < low or high is not None and value > high:
        span = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ParamsError(f"{key}: {value!r} is out of range {span}")
