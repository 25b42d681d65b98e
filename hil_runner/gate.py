"""The regression gate: compare a HIL record with the baseline of the same key; fail closed.

Exit codes: 0 pass, 1 regression (a check failed), 2 undecidable (missing record/metric, key mismatch, source not
allowed for promotion). A baseline only changes through an explicit `accept`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aed.records import sha256_file, write_json
from hil_runner.boards.profiles import PROFILES

PASS, FAIL, UNDECIDABLE = "pass", "fail", "undecidable"
EXIT_CODES = {"pass": 0, "regression": 1, "undecidable": 2}
DEFAULT_KEY_FIELDS = ("profile", "device_id", "sclock_hz", "runtime_version", "tool_version", "kernels", "host_litert",
                      "source")  # fmt: skip


@dataclass(frozen=True)
class GateThresholds:
    allow_virtual: bool = True  # true for the embedded default; false for a release (board evidence only)
    max_accuracy_drop: float = 0.02  # absolute clip-accuracy drop allowed vs baseline
    min_top1_agreement: float = 0.99
    min_cosine: float = 0.999
    max_l2r: float = 0.01
    max_latency_increase: float = 0.03  # relative, on the median
    max_ram_increase_bytes: int = 0
    max_flash_increase_bytes: int = 0
    check_budgets: bool = True
    key_fields: tuple[str, ...] = DEFAULT_KEY_FIELDS


@dataclass
class Check:
    name: str
    status: str
    baseline: Any = None
    candidate: Any = None
    limit: str = ""
    detail: str = ""


@dataclass
class Verdict:
    verdict: str
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def _load(path: Path | None, what: str, checks: list[Check]) -> dict | None:
    if path is None or not Path(path).exists():
        checks.append(Check(f"{what} present", UNDECIDABLE, detail=f"{path}: not found"))
        return None
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        checks.append(Check(f"{what} readable", UNDECIDABLE, detail=f"{path}: {error}"))
        return None
    if not isinstance(data, dict) or data.get("kind") != "hil":
        checks.append(
            Check(f"{what} is a HIL record", UNDECIDABLE, detail=f"{path}: kind {data.get('kind')!r}")
        )
        return None
    return data


def _metric(record: dict, name: str) -> float | None:
    value = (record.get("metrics") or {}).get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return None
    return value


def evaluate(record_path: Path, baseline_path: Path | None, thresholds: GateThresholds) -> Verdict:
    checks: list[Check] = []
    record = _load(record_path, "record", checks)
    baseline = _load(baseline_path, "baseline", checks)
    if record is not None:
        allowed = {"board", "cloud"} | ({"virtual"} if thresholds.allow_virtual else set())
        source = record.get("source")
        checks.append(
            Check("source allowed", PASS if source in allowed else UNDECIDABLE, candidate=source,
                  limit=" | ".join(sorted(allowed)),
                  detail="" if source in allowed else "simulated results are not board evidence"),
        )  # fmt: skip
    if record is not None and baseline is not None:
        checks += _key_checks(record, baseline, thresholds)
        if all(check.status == PASS for check in checks):
            checks += _comparisons(record, baseline, thresholds)
    if record is not None and thresholds.check_budgets:
        checks += _budget_checks(record)
    statuses = {check.status for check in checks}
    verdict = (
        "regression"
        if FAIL in statuses
        else "undecidable"
        if UNDECIDABLE in statuses or not checks
        else "pass"
    )
    return Verdict(verdict, checks)


def _key_checks(record: dict, baseline: dict, thresholds: GateThresholds) -> list[Check]:
    checks = []
    for name in thresholds.key_fields:
        ours, theirs = (record.get("key") or {}).get(name), (baseline.get("key") or {}).get(name)
        ok = ours is not None and ours == theirs
        checks.append(Check(f"key {name}", PASS if ok else UNDECIDABLE, theirs, ours, "equal",
                            "" if ok else "records with different keys are never compared"))  # fmt: skip
    return checks


def _comparisons(record: dict, baseline: dict, t: GateThresholds) -> list[Check]:
    specs = [
        # name, metric, compare(candidate, baseline) -> ok, limit text, needs baseline
        ("clip accuracy", "clip_accuracy", lambda c, b: c >= b - t.max_accuracy_drop, f">= baseline - {t.max_accuracy_drop}", True),
        ("top-1 agreement", "top1_agreement", lambda c, b: c >= t.min_top1_agreement, f">= {t.min_top1_agreement}", False),
        ("cosine (min)", "cosine_min", lambda c, b: c >= t.min_cosine, f">= {t.min_cosine}", False),
        ("l2r (max)", "l2r_max", lambda c, b: c <= t.max_l2r, f"<= {t.max_l2r}", False),
        ("latency median ms", "latency_median_ms", lambda c, b: c <= b * (1 + t.max_latency_increase),
         f"<= baseline x {1 + t.max_latency_increase:g}", True),
        ("RAM bytes", "activations_bytes", lambda c, b: c - b <= t.max_ram_increase_bytes,
         f"<= baseline + {t.max_ram_increase_bytes}", True),
        ("flash bytes", "weights_bytes", lambda c, b: c - b <= t.max_flash_increase_bytes,
         f"<= baseline + {t.max_flash_increase_bytes}", True),
    ]  # fmt: skip
    checks = []
    for name, metric, compare, limit, needs_baseline in specs:
        ours, theirs = _metric(record, metric), _metric(baseline, metric)
        if ours is None or (needs_baseline and theirs is None):
            missing = "candidate" if ours is None else "baseline"
            checks.append(
                Check(name, UNDECIDABLE, theirs, ours, limit, f"metric {metric} missing in the {missing}")
            )
            continue
        ok = compare(ours, theirs if theirs is not None else 0.0)
        checks.append(Check(name, PASS if ok else FAIL, theirs, ours, limit))
    return checks


def _budget_checks(record: dict) -> list[Check]:
    profile = PROFILES.get((record.get("key") or {}).get("profile", ""))
    weights, activations = _metric(record, "weights_bytes"), _metric(record, "activations_bytes")
    if profile is None or weights is None or activations is None:
        return [Check("device budgets", UNDECIDABLE, detail="profile or memory figures missing")]
    flash_need = weights + profile.code_flash_bytes
    ram_need = activations + profile.runtime_ram_bytes
    return [
        Check("flash budget (weights + code)", PASS if flash_need <= profile.flash_bytes else FAIL,
              None, int(flash_need), f"<= {profile.flash_bytes}"),
        Check("RAM budget (activations + runtime)", PASS if ram_need <= profile.ram_bytes else FAIL,
              None, int(ram_need), f"<= {profile.ram_bytes}"),
    ]  # fmt: skip


def render_table(verdict: Verdict) -> str:
    rows = [("check", "baseline", "candidate", "limit", "result")]
    for check in verdict.checks:
        result = check.status.upper() + (f" ({check.detail})" if check.detail else "")
        rows.append((check.name, _fmt(check.baseline), _fmt(check.candidate), check.limit, result))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)) for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  ------")
    lines.append(f"verdict: {verdict.verdict.upper()} (exit {verdict.exit_code})")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_verdict(
    path: Path,
    verdict: Verdict,
    record: Path,
    baseline: Path | None,
    t: GateThresholds,
    evidence: dict | None = None,
) -> dict:
    payload = {
        "kind": "gate-verdict",
        "verdict": verdict.verdict,
        "exit_code": verdict.exit_code,
        "promotable": verdict.verdict == "pass",
        "reasons": [f"{c.name}: {c.status}" + (f" ({c.detail})" if c.detail else "") for c in verdict.checks
                    if c.status != PASS],  # fmt: skip
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "record": {"path": str(record), "sha256": sha256_file(record) if Path(record).exists() else None},
        "baseline": {"path": str(baseline) if baseline else None,
                     "sha256": sha256_file(baseline) if baseline and Path(baseline).exists() else None},
        "evidence": evidence or {},
        "thresholds": asdict(t),
        "checks": [asdict(check) for check in verdict.checks],
    }  # fmt: skip
    write_json(path, payload)
    return payload


def accept(record_path: Path, baseline_path: Path) -> dict:
    """Make the record the new baseline for its key (explicit approval; overwrites atomically)."""
    checks: list[Check] = []
    record = _load(record_path, "record", checks)
    if record is None:
        raise ValueError(f"cannot accept {record_path}: {checks[-1].detail}")
    missing = [name for name in ("clip_accuracy", "latency_median_ms", "weights_bytes", "activations_bytes")
               if _metric(record, name) is None]  # fmt: skip
    if missing or not record.get("key"):
        raise ValueError(f"cannot accept {record_path}: missing key or metrics {missing}")
    baseline = {**record, "accepted": {"from": str(record_path), "sha256": sha256_file(record_path),
                                       "at": datetime.now(UTC).isoformat(timespec="seconds")}}  # fmt: skip
    write_json(baseline_path, baseline)
    return baseline
