"""The regression gate: compare a HIL record with the baseline of the same key; fail closed.

Exit codes: 0 pass, 1 regression (a check failed), 2 undecidable (missing record or baseline, key mismatch, source
not allowed for promotion). A record or baseline that is malformed, impossible (NaN, an accuracy of 7.5, a negative
latency) or inconsistent raises RecordError (exit 2 from the CLI, one line). A baseline only changes through an
explicit `accept`, and an accept never silently replaces a baseline of another key.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aed.fingerprints import short
from aed.params import bounded
from aed.record_schema import (
    KEY_SCHEMA,
    RecordError,
    boolean,
    list_of,
    names,
    number,
    read_json,
    record_is_virtual,
    sha256_hex,
    text,
    validate_hil_record,
    validate_verdict,
)
from aed.record_schema import (
    check as check_schema,
)
from aed.records import write_json
from hil_runner.boards.profiles import PROFILES

PASS, FAIL, UNDECIDABLE = "pass", "fail", "undecidable"
EXIT_CODES = {"pass": 0, "regression": 1, "undecidable": 2}
# What makes two records comparable, whatever gate.key_fields says: the same board profile and kind of board, the
# same classes in the same order, the same evaluated clips and patches made by the same front end from the same
# patch store, and the same model format on the same runtime.
REQUIRED_KEY_FIELDS = ("profile", "source", "class_names", "eval_set_sha256", "eval_patches", "frontend_sha256",
                       "dataset_sha256", "model_format", "runtime")  # fmt: skip
DEFAULT_KEY_FIELDS = ("profile", "device_id", "sclock_hz", "runtime_version", "tool_version", "kernels", "host_litert",
                      *REQUIRED_KEY_FIELDS[1:])  # fmt: skip


@dataclass(frozen=True)
class GateParams:
    """The `gate` section: what may be promoted, the regression thresholds, the key and the baseline's path."""

    allow_virtual: bool = True  # true for the embedded default; false for a release (board evidence only)
    max_accuracy_drop: float = bounded(0.02, 0.0, 1.0)  # absolute clip-accuracy drop allowed vs baseline
    min_top1_agreement: float = bounded(0.99, 0.0, 1.0)
    min_cosine: float = bounded(0.999, -1.0, 1.0)
    max_l2r: float = bounded(0.01, 0.0)
    max_latency_increase: float = bounded(0.03, 0.0)  # relative, on the median
    max_ram_increase_bytes: int = bounded(0, 0)
    max_flash_increase_bytes: int = bounded(0, 0)
    check_budgets: bool = True
    # The stream check (`aed hil run --stream`): the board's events against host detect's, same model and
    # recording. require_stream: no pass (so no promotion) without the stream record and the streaming evaluation.
    require_stream: bool = False
    max_stream_unmatched_events: int = bounded(0, 0)  # events found on one side only
    max_stream_boundary_s: float = bounded(0.0, 0.0)  # onset and offset difference of matched events
    # compared between record and baseline; REQUIRED_KEY_FIELDS are compared in any case
    key_fields: tuple[str, ...] = DEFAULT_KEY_FIELDS
    # {model_name} and {profile} are filled in from the record
    baseline: str = "baselines/hil-{model_name}-{profile}.json"

    def __post_init__(self) -> None:
        # A NaN threshold makes every comparison false in one direction: refuse it instead of deciding on it.
        for name, value in asdict(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: {value!r} is not a finite number")
        unknown = [name for name in self.key_fields if name not in KEY_SCHEMA]
        if unknown:
            raise ValueError(f"key_fields: unknown field(s) {unknown}; known: {sorted(KEY_SCHEMA)}")
        try:
            self.baseline.format(model_name="m", profile="p")
        except (KeyError, IndexError, ValueError) as error:  # a placeholder the path cannot be filled with
            raise ValueError(
                f"baseline: {self.baseline!r} is not a path pattern with only {{model_name}} and {{profile}} "
                f"({type(error).__name__}: {error})"
            ) from None

    def thresholds(self) -> dict[str, Any]:
        """What the verdict records as its thresholds (everything but where the baseline is)."""
        values = asdict(self)
        values.pop("baseline")
        return values

    def baseline_path(self, record: Path, model_name: str | None) -> Path:
        """`baseline` filled in; the profile comes from the record's key ("unknown" when it has none)."""
        try:
            data = json.loads(Path(record).read_text())
        except (OSError, ValueError, RecursionError):
            data = None
        key = data.get("key") if isinstance(data, dict) else None
        profile = key.get("profile") if isinstance(key, dict) else None
        # The profile becomes part of a path: only a plain name is used, anything else is "unknown".
        if (
            not isinstance(profile, str)
            or not profile
            or not all(ch.isalnum() or ch in "-_." for ch in profile)
        ):
            profile = "unknown"
        if profile in (".", ".."):
            profile = "unknown"
        return Path(self.baseline.format(model_name=model_name or "model", profile=profile))

    def compared_fields(self) -> tuple[str, ...]:
        """The key fields compared: the required ones plus those gate.key_fields adds, in a stable order."""
        return tuple(dict.fromkeys((*REQUIRED_KEY_FIELDS, *self.key_fields)))


# What the gate reads from a stream record (hil_runner.stream writes it): kind, model, source, classes and the
# agreement figures, each finite and in range.
EVENT_SCHEMA = {"onset": number(0.0), "offset": number(0.0), "label": text(), "peak": number(0.0, 1.0)}
STREAM_RECORD_SCHEMA: dict[str, Any] = {
    "kind": text(("hil-stream",)),
    "source": text(("board", "virtual")),
    "model_sha256": sha256_hex(),
    "key": {"profile": text(), "source": text(("board", "virtual")), "class_names": names},
    "metrics": {
        "board_events": number(0, integer=True),
        "host_events": number(0, integer=True),
        "matched_events": number(0, integer=True),
        "unmatched_events": number(0, integer=True),
        "max_onset_diff_s": number(0.0),
        "max_offset_diff_s": number(0.0),
        "max_score_diff": number(0.0),
        "windows": number(1, integer=True),
        "identical_events": boolean,
    },
    "events": {"board": list_of(EVENT_SCHEMA), "host": list_of(EVENT_SCHEMA)},
}


@dataclass
class Check:
    name: str
    status: str
    baseline: Any = None
    candidate: Any = None
    limit: str = ""
    detail: str = ""


@dataclass(frozen=True)
class Evidence:
    """A validated HIL record (or baseline) and the sha256 of the exact bytes that were judged."""

    path: Path
    data: dict
    sha256: str

    @property
    def key(self) -> dict:
        return self.data["key"]

    @property
    def metrics(self) -> dict:
        return self.data["metrics"]


@dataclass
class Verdict:
    verdict: str
    checks: list[Check] = field(default_factory=list)
    record: Evidence | None = None
    baseline: Evidence | None = None
    record_path: Path | None = None
    baseline_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]

    def key_mismatches(self) -> list[Check]:
        return [c for c in self.checks if c.name.startswith("key ") and c.status != PASS]


def load_record(path: Path, what: str = "HIL record") -> Evidence:
    """Read and validate a HIL record; RecordError (one line, file and field) when it cannot be trusted."""
    data, raw = read_json(path, what)
    validate_hil_record(data, path)
    return Evidence(Path(path), data, hashlib.sha256(raw).hexdigest())


def _present(path: Path | None, what: str, checks: list[Check]) -> Evidence | None:
    """The validated record, or None with an undecidable check when there is no file (no baseline yet)."""
    if path is None or not Path(path).exists():
        checks.append(Check(f"{what} present", UNDECIDABLE, detail=f"{path}: not found"))
        return None
    try:
        return load_record(path, what)
    except RecordError as error:
        if what != "baseline":
            raise
        # Most often a baseline written before a field was added to records: say how to renew it.
        raise RecordError(
            f"{error} (renew the baseline: aed gate --record <record> --accept --replace)"
        ) from None


def evaluate(
    record_path: Path | None,
    baseline_path: Path | None,
    thresholds: GateParams,
    *,
    convert_record: Path | None = None,
    stream_path: Path | None = None,
    streaming_evaluation: Path | None = None,
) -> Verdict:
    """The verdict on a HIL record (against its baseline); with `convert_record`, also its TFLM plan proof
    (`tflm_proof_check`); and, when given or required, the stream record of the same model (against host
    detect's events) and the streaming evaluation's presence."""
    checks: list[Check] = []
    tflm = tflm_proof_check(convert_record) if convert_record is not None else None
    if tflm is not None:
        checks.append(tflm)
    record = _present(record_path, "record", checks)
    baseline = _present(baseline_path, "baseline", checks)
    if record is not None:
        virtual = record_is_virtual(record.data, record.path)
        allowed = thresholds.allow_virtual or not virtual
        limit = "board | cloud | virtual" if thresholds.allow_virtual else "board | cloud"
        checks.append(Check("source allowed", PASS if allowed else UNDECIDABLE, candidate=record.data["source"],
                            limit=limit, detail="" if allowed else "simulated results are not board evidence"))  # fmt: skip
    if record is not None and baseline is not None:
        checks += key_checks(record.key, baseline.key, thresholds.compared_fields())
        if all(check.status == PASS for check in checks):
            checks += _comparisons(record.metrics, baseline.metrics, thresholds)
    if record is not None and thresholds.check_budgets:
        checks += _budget_checks(record)
    checks += stream_checks(record, stream_path, streaming_evaluation, thresholds)
    statuses = {check.status for check in checks}
    verdict = (
        "regression"
        if FAIL in statuses
        else "undecidable"
        if UNDECIDABLE in statuses or not checks
        else "pass"
    )
    return Verdict(verdict, checks, record, baseline, record_path, baseline_path)


def tflm_proof_check(convert_record: Path) -> Check | None:
    """The TFLM key: a model whose offline memory plan failed its in-step proof (convert.runtime tflm | both) is
    not promoted. None when the convert record has no TFLM deployment (not requested, or an ONNX model)."""
    data, _ = read_json(convert_record, "convert record")
    if not isinstance(data, dict):
        raise RecordError(f"{convert_record}: convert record is not a JSON object")
    tflm = data.get("tflm")
    if not isinstance(tflm, dict) or set(tflm) <= {"status"}:
        return None
    proof = tflm.get("proof")
    passed = isinstance(proof, dict) and proof.get("passed") is True
    arena = tflm.get("arena", {}).get("arena_bytes") if isinstance(tflm.get("arena"), dict) else None
    detail = (
        "verified with TFLM's reference kernels, not CMSIS-NN"
        if passed
        else f"{convert_record}: tflm.proof.passed is {proof.get('passed') if isinstance(proof, dict) else None!r}"
    )
    return Check("TFLM plan proof", PASS if passed else FAIL, None, arena,
                 "bit-exact at the reported arena; 16 B less fails", detail)  # fmt: skip


def load_stream_record(path: Path) -> dict:
    """Read and validate a stream record; RecordError (one line, file and field) when it cannot be trusted."""
    data, _ = read_json(path, "stream record")
    try:
        check_schema(data, STREAM_RECORD_SCHEMA)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from None
    metrics = data["metrics"]
    if metrics["board_events"] != len(data["events"]["board"]) or metrics["host_events"] != len(
        data["events"]["host"]
    ):
        raise RecordError(f"{path}: metrics.board_events / host_events do not count the events it lists")
    if metrics["matched_events"] > min(metrics["board_events"], metrics["host_events"]):
        raise RecordError(
            f"{path}: metrics.matched_events {metrics['matched_events']} exceeds the events listed"
        )
    if data["key"]["source"] != data["source"]:
        raise RecordError(
            f"{path}: inconsistent source: {data['source']!r} but key.source {data['key']['source']!r}"
        )
    return data


def stream_checks(
    record: Evidence | None, stream_path: Path | None, evaluation: Path | None, t: GateParams
) -> list[Check]:
    """The stream record against host detect (same model, same classes, events within the thresholds), and the
    streaming evaluation's presence. Nothing given and nothing required: no check."""
    checks: list[Check] = []
    if t.require_stream or evaluation is not None:
        present = evaluation is not None and Path(evaluation).is_file()
        if present:
            read_json(Path(evaluation), "streaming evaluation")  # RecordError when it is not JSON
        checks.append(Check("streaming evaluation present", PASS if present else UNDECIDABLE,
                            candidate=str(evaluation) if evaluation else None,
                            detail="" if present else f"{evaluation or 'none given'}: not found"))  # fmt: skip
    if stream_path is None or not Path(stream_path).exists():
        if t.require_stream or stream_path is not None:
            checks.append(
                Check(
                    "stream record present", UNDECIDABLE, detail=f"{stream_path or 'none given'}: not found"
                )
            )
        return checks
    stream = load_stream_record(Path(stream_path))
    checks += _stream_identity(record, stream, t)
    if any(check.status != PASS for check in checks if check.name.startswith("stream ")):
        return checks
    m = stream["metrics"]
    boundary = max(m["max_onset_diff_s"], m["max_offset_diff_s"])
    checks += [
        Check("stream unmatched events", PASS if m["unmatched_events"] <= t.max_stream_unmatched_events else FAIL,
              None, m["unmatched_events"], f"<= {t.max_stream_unmatched_events}",
              f"board {m['board_events']}, host {m['host_events']}, matched {m['matched_events']}"),
        Check("stream boundary diff s", PASS if boundary <= t.max_stream_boundary_s else FAIL,
              None, boundary, f"<= {t.max_stream_boundary_s}"),
    ]  # fmt: skip
    return checks


def _stream_identity(record: Evidence | None, stream: dict, t: GateParams) -> list[Check]:
    """The stream record belongs to the model and classes the HIL record judged, from an allowed source."""
    virtual = stream["source"] == "virtual"
    allowed = t.allow_virtual or not virtual
    checks = [Check("stream source allowed", PASS if allowed else UNDECIDABLE, candidate=stream["source"],
                    detail="" if allowed else "simulated results are not board evidence")]  # fmt: skip
    if record is None:
        return checks
    same_model = stream["model_sha256"] == record.data["model_sha256"]
    same_classes = stream["key"]["class_names"] == record.key["class_names"]
    checks.append(Check("stream model", PASS if same_model else UNDECIDABLE, record.data["model_sha256"],
                        stream["model_sha256"], "equal", "" if same_model else "a stream of another model"))  # fmt: skip
    checks.append(Check("stream classes", PASS if same_classes else UNDECIDABLE, record.key["class_names"],
                        stream["key"]["class_names"], "equal", "" if same_classes else "another class map"))  # fmt: skip
    return checks


def key_checks(candidate: dict, baseline: dict, fields: tuple[str, ...]) -> list[Check]:
    checks = []
    for name in fields:
        ours, theirs = candidate.get(name), baseline.get(name)
        ok = ours is not None and ours == theirs
        checks.append(Check(f"key {name}", PASS if ok else UNDECIDABLE, theirs, ours, "equal",
                            "" if ok else "records with different keys are never compared"))  # fmt: skip
    return checks


def mismatch_lines(checks: list[Check]) -> list[str]:
    """One line per differing key field: field, baseline value, candidate value (long hashes shortened)."""
    return [
        f"key mismatch: {check.name[len('key ') :]}: baseline {short(check.baseline)}, "
        f"candidate {short(check.candidate)}"
        for check in checks
        if check.name.startswith("key ") and check.status != PASS
    ]


def _comparisons(record: dict, baseline: dict, t: GateParams) -> list[Check]:
    # Both metric dicts passed the schema: every value compared here is a finite number in its physical range.
    specs = [
        # name, metric, compare(candidate, baseline) -> ok, limit text, shows the baseline
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
    for name, metric, compare, limit, shows_baseline in specs:
        ours, theirs = record[metric], baseline[metric]
        ok = compare(ours, theirs)
        checks.append(Check(name, PASS if ok else FAIL, theirs if shows_baseline else None, ours, limit))
    return checks


def _budget_checks(record: Evidence) -> list[Check]:
    profile = PROFILES.get(record.key["profile"])
    if profile is None:
        return [
            Check("device budgets", UNDECIDABLE, detail=f"unknown board profile {record.key['profile']!r}")
        ]
    flash_need = record.metrics["weights_bytes"] + profile.code_flash_bytes
    ram_need = record.metrics["activations_bytes"] + profile.runtime_ram_bytes
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
    return value if isinstance(value, str) and len(value) != 64 else short(value, 40).strip('"')


def _file_ref(evidence: Evidence | None, path: Path | None) -> dict[str, str | None]:
    if evidence is None:
        return {"path": str(path) if path else None, "sha256": None}
    return {"path": str(evidence.path), "sha256": evidence.sha256}


def verdict_payload(verdict: Verdict, t: GateParams, evidence: dict | None = None) -> dict:
    """The verdict JSON: it names the model (sha256 of the int8 file judged) and the exact record and baseline
    bytes it judged, so that promote can check it belongs to the artifact it publishes."""
    record = verdict.record
    payload = {
        "kind": "gate-verdict",
        "verdict": verdict.verdict,
        "exit_code": verdict.exit_code,
        "promotable": verdict.verdict == "pass",
        "reasons": [f"{c.name}: {c.status}" + (f" ({c.detail})" if c.detail else "") for c in verdict.checks
                    if c.status != PASS],  # fmt: skip
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"path": record.data["model"]["path"], "sha256": record.data["model_sha256"]} if record
        else {"path": None, "sha256": None},
        "record": _file_ref(record, verdict.record_path),
        "baseline": _file_ref(verdict.baseline, verdict.baseline_path),
        "key": record.key if record else None,
        "evidence": evidence or {},
        "thresholds": t.thresholds(),
        "checks": [asdict(check) for check in verdict.checks],
    }  # fmt: skip
    return validate_verdict(payload, "gate verdict")


def write_verdict(path: Path, verdict: Verdict, t: GateParams, evidence: dict | None = None) -> dict:
    payload = verdict_payload(verdict, t, evidence)
    write_json(path, payload)
    return payload


def accept(
    record_path: Path,
    baseline_path: Path,
    params: GateParams = GateParams(),
    replace: bool = False,
) -> dict:
    """Make the record the new baseline for its key (explicit approval; overwrites atomically).

    An existing baseline of another key (or one that is no longer a valid record) is replaced only with
    replace=True: accepting a record of another dataset or class set must be a deliberate act."""
    record = load_record(record_path, "HIL record")
    baseline_path = Path(baseline_path)
    if baseline_path.is_dir():
        raise RecordError(f"{baseline_path}: is a directory, expected the baseline's file path")
    if baseline_path.exists() and not replace:
        try:
            old = load_record(baseline_path, "baseline")
        except RecordError as error:
            raise RecordError(f"{error}; give --replace to overwrite this baseline") from None
        differing = mismatch_lines(key_checks(record.key, old.key, params.compared_fields()))
        if differing:
            raise RecordError(
                f"{baseline_path}: the existing baseline has another key ({'; '.join(differing)}); "
                "give --replace to replace it"
            )
    accepted = {"from": str(record_path), "sha256": record.sha256,
                "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    baseline = {**record.data, "accepted": accepted}
    write_json(baseline_path, baseline)
    return baseline
