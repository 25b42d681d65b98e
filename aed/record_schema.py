"""Schemas of the HIL record and the gate verdict, checked by plain code (no extra dependency).

A schema is a dict of field name -> rule, nested for objects. A rule is a function that returns the problem with a
value (or None when it is fine). Every check raises RecordError naming the file and the dotted field, on one line,
so that the gate and promote turn any malformed or impossible evidence into exit 2 instead of a traceback or a
silent pass. Values must be finite and physically possible (an accuracy in [0, 1], a latency > 0 ms, ...).

`record_is_virtual` is the one place that decides whether a HIL record comes from a virtual board.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aed.fingerprints import short

Rule = Callable[[Any], str | None]
HEX64 = re.compile(r"[0-9a-f]{64}")
SOURCES = ("board", "cloud", "virtual")
MODEL_FORMATS = ("tflite", "onnx_qdq")
VERDICTS = {"pass": 0, "regression": 1, "undecidable": 2}
CHECK_STATUSES = ("pass", "fail", "undecidable")
VIRTUAL_RUNTIME_PREFIX = "virtual board"
INT64_MAX = 2**63 - 1  # no figure in a record is larger; a bigger JSON integer is not a measurement


class RecordError(ValueError):
    """A record, baseline or verdict that is malformed, impossible or inconsistent: one line, file and field."""


@dataclass(frozen=True)
class MayBeMissing:
    """A field that may be absent (a present value is still checked)."""

    rule: Any


def _describe(value: Any) -> str:
    return short(value, 40) if not isinstance(value, float) else repr(value)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    above: float | None = None,
    integer: bool = False,
    nullable: bool = False,
) -> Rule:
    """A finite number in [low, high] (and > above); integer: an int (JSON integers only)."""

    def rule(value: Any) -> str | None:
        if value is None and nullable:
            return None
        kinds = int if integer else int | float
        if isinstance(value, bool) or not isinstance(value, kinds):
            return f"expected {'an integer' if integer else 'a number'}, got {_describe(value)}"
        if isinstance(value, int) and abs(value) > INT64_MAX:
            return f"{_describe(value)} is outside the 64-bit integer range"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if low is not None and value < low or high is not None and value > high:
            return (
                f"{value!r} is outside [{'-inf' if low is None else low}, {'inf' if high is None else high}]"
            )
        if above is not None and value <= above:
            return f"{value!r} must be > {above}"
        return None

    return rule


def text(
    choices: tuple[str, ...] | None = None, pattern: re.Pattern | None = None, nullable: bool = False
) -> Rule:
    def rule(value: Any) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value:
            return f"expected a non-empty string, got {_describe(value)}"
        if choices is not None and value not in choices:
            return f"expected one of {list(choices)}, got {_describe(value)}"
        if pattern is not None and not pattern.fullmatch(value):
            return f"{_describe(value)} is not a valid value (expected {pattern.pattern})"
        return None

    return rule


def sha256_hex(nullable: bool = False) -> Rule:
    return text(pattern=HEX64, nullable=nullable)


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"expected true or false, got {_describe(value)}"


def names(value: Any) -> str | None:
    """A non-empty list of distinct non-empty strings (class names, in model output order)."""
    if not isinstance(value, list) or not value:
        return f"expected a non-empty list of names, got {_describe(value)}"
    if not all(isinstance(item, str) and item for item in value):
        return f"expected non-empty strings, got {_describe(value)}"
    if len(set(value)) != len(value):
        return f"names repeat: {_describe(value)}"
    return None


def list_of(item_schema: Any) -> Any:
    return ("list", item_schema)


def check(value: Any, schema: Any, field: str = "") -> None:
    """Check value against schema; raise RecordError(field: problem) on the first problem (no file name)."""
    if isinstance(schema, MayBeMissing):
        schema = schema.rule
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            raise RecordError(f"{field or 'top level'}: expected an object, got {_describe(value)}")
        for name, rule in schema.items():
            where = f"{field}.{name}" if field else name
            if name not in value:
                if isinstance(rule, MayBeMissing):
                    continue
                raise RecordError(f"{where}: missing")
            check(value[name], rule, where)
        return
    if isinstance(schema, tuple) and schema[:1] == ("list",):
        if not isinstance(value, list):
            raise RecordError(f"{field}: expected a list, got {_describe(value)}")
        for number_, item in enumerate(value):
            check(item, schema[1], f"{field}[{number_}]")
        return
    problem = schema(value)
    if problem:
        raise RecordError(f"{field}: {problem}")


PROBABILITY = number(0.0, 1.0)
BYTES = number(0, integer=True)

KEY_SCHEMA: dict[str, Any] = {
    "profile": text(),
    "device_id": text(pattern=re.compile(r"0x[0-9a-f]{1,8}")),
    "sclock_hz": number(above=0, integer=True),
    "runtime_version": text(),
    "tool_version": text(),
    "kernels": text(),
    "host_litert": text(),
    "source": text(SOURCES),
    "board": text(),
    "class_names": names,
    "eval_set_sha256": sha256_hex(),
    "eval_patches": number(1, integer=True),
    "frontend_sha256": sha256_hex(),
    "dataset_sha256": sha256_hex(),
    "model_format": text(MODEL_FORMATS),
    "runtime": text(),
}

HIL_RECORD_SCHEMA: dict[str, Any] = {
    "kind": text(("hil",)),
    "source": text(SOURCES),
    "model_sha256": sha256_hex(),
    "inputs": {"model": sha256_hex()},
    "model": {"path": text()},
    "board": {
        "name": text(),
        "profile": text(),
        "device_id": text(),
        "sclock_hz": number(above=0, integer=True),
        "virtual": boolean,
    },  # fmt: skip
    "firmware": {"runtime_desc": text()},
    "key": KEY_SCHEMA,
    "metrics": {
        "clip_accuracy": PROBABILITY,
        "host_clip_accuracy": PROBABILITY,
        "top1_agreement": PROBABILITY,
        "cosine_min": number(-1.0, 1.0),
        "l2r_max": number(0.0),
        "latency_median_ms": number(above=0.0),
        "cycles_median": number(0, integer=True, nullable=True),
        "weights_bytes": BYTES,
        "activations_bytes": BYTES,
        "macs": MayBeMissing(number(0, integer=True, nullable=True)),
    },
    "accuracy": {
        "n_clips": number(1, integer=True),
        "n_patches": number(1, integer=True),
        "class_names": names,
    },
    "latency": {"source": text(SOURCES)},
    "memory": {"source": text(SOURCES)},
}

# Fields that the HIL job writes twice; a record whose copies disagree was edited by hand.
HIL_SAME_FIELDS = (
    ("model_sha256", "inputs.model"),
    ("key.profile", "board.profile"),
    ("key.device_id", "board.device_id"),
    ("key.sclock_hz", "board.sclock_hz"),
    ("key.board", "board.name"),
    ("key.runtime", "firmware.runtime_desc"),
    ("key.class_names", "accuracy.class_names"),
    ("key.eval_patches", "accuracy.n_patches"),
    ("metrics.clip_accuracy", "accuracy.clip_accuracy"),
    ("metrics.host_clip_accuracy", "accuracy.host_clip_accuracy"),
)

FILE_REF = {"path": text(), "sha256": sha256_hex()}
NULLABLE_FILE_REF = {"path": text(nullable=True), "sha256": sha256_hex(nullable=True)}

VERDICT_SCHEMA: dict[str, Any] = {
    "kind": text(("gate-verdict",)),
    "verdict": text(tuple(VERDICTS)),
    "exit_code": number(0, 2, integer=True),
    "promotable": boolean,
    "created": text(),
    "reasons": list_of(text()),
    "checks": list_of({"name": text(), "status": text(CHECK_STATUSES)}),
    "record": NULLABLE_FILE_REF,
    "model": NULLABLE_FILE_REF,
    "baseline": NULLABLE_FILE_REF,
}


def _get(record: dict, dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _located(where: str | Path, error: RecordError) -> RecordError:
    return RecordError(f"{where}: {error}")


def validate_hil_record(record: Any, where: str | Path) -> dict:
    """The record if it is a well-formed, self-consistent HIL record; else RecordError naming file and field."""
    try:
        check(record, HIL_RECORD_SCHEMA)
    except RecordError as error:
        raise _located(where, error) from None
    for first, second in HIL_SAME_FIELDS:
        a, b = _get(record, first), _get(record, second)
        if b is not None and a != b:
            raise RecordError(f"{where}: {first} ({short(a, 30)}) differs from {second} ({short(b, 30)})")
    record_is_virtual(record, where)
    return record


def record_is_virtual(record: dict, where: str | Path) -> bool:
    """Whether a (schema-valid) HIL record comes from a virtual board: the one source of truth.

    The record's source, its key's source, the latency and memory sources, the board's `virtual` flag and the
    runtime (a virtual board's runtime describes itself as "virtual board (...)") must all agree; a record where
    they do not, e.g. only the top-level source edited to "board", is rejected as inconsistent.
    """
    signals = {
        "source": record.get("source") == "virtual",
        "key.source": _get(record, "key.source") == "virtual",
        "latency.source": _get(record, "latency.source") == "virtual",
        "memory.source": _get(record, "memory.source") == "virtual",
        "board.virtual": _get(record, "board.virtual") is True,
        "key.runtime": is_virtual_runtime(_get(record, "key.runtime")),
        "firmware.runtime_desc": is_virtual_runtime(_get(record, "firmware.runtime_desc")),
    }
    if len(set(signals.values())) != 1:
        virtual = [name for name, flag in signals.items() if flag]
        real = [name for name, flag in signals.items() if not flag]
        raise RecordError(
            f"{where}: inconsistent board evidence: {', '.join(virtual)} say virtual board but "
            f"{', '.join(real)} say real board"
        )
    return signals["source"]


def is_virtual_runtime(runtime: Any) -> bool:
    return isinstance(runtime, str) and runtime.lower().startswith(VIRTUAL_RUNTIME_PREFIX)


def validate_verdict(verdict: Any, where: str | Path) -> dict:
    """The verdict if it is a well-formed gate verdict whose fields agree with each other; else RecordError."""
    try:
        check(verdict, VERDICT_SCHEMA)
    except RecordError as error:
        raise _located(where, error) from None
    name = verdict["verdict"]
    if verdict["exit_code"] != VERDICTS[name]:
        raise RecordError(f"{where}: exit_code {verdict['exit_code']} does not match verdict {name!r}")
    if verdict["promotable"] != (name == "pass"):
        raise RecordError(f"{where}: promotable {verdict['promotable']} does not match verdict {name!r}")
    if name == "pass":
        for ref in ("record", "model", "baseline"):
            try:
                check(verdict[ref], FILE_REF, ref)
            except RecordError as error:
                raise RecordError(f"{where}: a passing verdict must name its {ref}: {error}") from None
        failed = [c["name"] for c in verdict["checks"] if c["status"] != "pass"]
        if not verdict["checks"] or failed or verdict["reasons"]:
            raise RecordError(f"{where}: verdict 'pass' with failed or missing checks {failed}")
    return verdict


def read_json(path: Path, what: str) -> tuple[Any, bytes]:
    """(parsed JSON, raw bytes) of a file; RecordError on a missing, unreadable or non-JSON file."""
    path = Path(path)
    if not path.is_file():
        raise RecordError(f"{path}: {what} not found" + (" (a directory)" if path.is_dir() else ""))
    try:
        raw = path.read_bytes()
        return json.loads(raw), raw
    except OSError as error:
        raise RecordError(f"{path}: {what} unreadable ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise RecordError(f"{path}: {what} is not valid JSON ({str(error).splitlines()[0]})") from None
    except RecursionError:
        raise RecordError(f"{path}: {what} is nested too deeply") from None
