"""Fault injection for the virtual board. Run-indexed faults fire during the N-th CMD_NETWORK_RUN (1-based) of the
board's lifetime, so that tests are deterministic and the fault hits mid-job."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

RUN_FAULTS = ("drop", "garble", "stop", "reset", "wrong_reqid", "stray", "error")


@dataclass(frozen=True)
class FaultPlan:
    drop: int | None = None  # drop the packet carrying run N's inference report
    garble: int | None = None  # corrupt the header and payload of run N's first output packet
    stop: int | None = None  # stop answering (for good) once run N's inputs are received
    reset: int | None = (
        None  # reset half-way through run N's input: in-flight request lost, link silent a while
    )
    wrong_reqid: int | None = None  # answer run N with another reqid
    stray: int | None = None  # write one stray byte after run N's last packet
    error: int | None = None  # answer run N with S_ERROR
    version: str | None = None  # protocol version reported by CMD_SYNC, e.g. "4.0"
    noise: float = 0.0  # relative std of the reported duration / cycles
    delay: float = 0.0  # extra seconds before each answer (a slow board)
    reset_pause: float = 0.5

    def at(self, fault: str, run: int) -> bool:
        return getattr(self, fault) == run

    @property
    def version_word(self) -> int | None:
        if self.version is None:
            return None
        major, _, minor = self.version.partition(".")
        return (int(major) << 8) | int(minor or 0)

    def describe(self) -> str:
        active = [
            f"{f.name}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name) != f.default
        ]
        return ",".join(active) or "none"


NO_FAULTS = FaultPlan()


# Inclusive limits of the float faults: a negative or NaN delay would crash time.sleep and an infinite one hang.
FLOAT_LIMITS = {"noise": (0.0, 10.0), "delay": (0.0, 600.0), "reset_pause": (0.0, 600.0)}


def parse_faults(specs: list[str] | None) -> FaultPlan:
    """`drop=3`, `version=4.0`, `noise=0.05`, ... (repeatable or comma separated). A bad name or value is a
    ValueError naming the item: run numbers are >= 1, versions MAJOR.MINOR with 0-255 each, floats finite and in
    FLOAT_LIMITS."""
    values: dict[str, object] = {}
    known = {f.name for f in fields(FaultPlan)}
    for spec in specs or []:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, value = item.partition("=")
            if name not in known or not sep:
                raise ValueError(f"--fault {item!r}: expected name=value with a name in {sorted(known)}")
            values[name] = _fault_value(item, name, value.strip())
    return FaultPlan(**values)  # type: ignore[arg-type]


def _fault_value(item: str, name: str, value: str) -> int | float | str:
    if name in RUN_FAULTS:
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"--fault {item!r}: bad value {value!r} ({name} takes a run number >= 1)")
        return int(value)
    if name == "version":
        major, _, minor = value.partition(".")
        if not all(part.isdigit() and int(part) <= 255 for part in (major, minor or "0")):
            raise ValueError(f"--fault {item!r}: bad value {value!r} (version is MAJOR.MINOR, 0-255 each)")
        return value
    low, high = FLOAT_LIMITS[name]
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"--fault {item!r}: bad value {value!r} ({name} takes a number)") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(
            f"--fault {item!r}: bad value {value!r} ({name}: a finite number in [{low:g}, {high:g}])"
        )
    return number
