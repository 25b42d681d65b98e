"""promote: copy a gated model and its records into the model registry (a directory or s3://bucket/prefix).

Only a passing gate verdict is promoted, and only for the artifacts it judged: the verdict must be a well-formed
gate verdict that names the sha256 of the int8 model and of the HIL record it judged; the `model` artifact must be
that very file and the record must be unchanged. Anything else is refused with one line (exit 2) and nothing is
published. A valid verdict that did not pass also leaves the registry untouched and writes a promotion record
that says so, so `dvc repro` and a KFP run report the same outcome.

Whether a run promotes at all is `promote.enabled` (or `aed promote --enabled`): `auto`, the default, promotes in
`dvc repro` and `make demo` but not inside `dvc exp run` (DVC sets DVC_EXP_NAME and DVC_EXP_BASELINE_REV for
the commands of an experiment, and for no other run) nor for a trial model (a fold's model, when the run trains
no final model, as the quick Kubeflow-local configuration does). The console line and the promotion record say
which happened (`outcome`): promoted version X, already promoted as X (the same content: nothing copied; the
record's `promoted` is true for both), or not promoted and why, with how to enable it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from aed.params import load_section
from aed.record_schema import read_json, validate_hil_record, validate_verdict
from aed.records import sha256_file, write_record
from aed.registry import PromoteParams, Published, check_name, open_store, publish
from components.common import add_model_name_option, add_params_option

SECTION = "promote"
MODEL_ARTIFACT = "model"  # the artifact whose sha256 must be the one the verdict judged
RECORD_ARTIFACT = "hil"  # when given, the HIL record published with the model (dvc's stage does)
GATE_ARTIFACT = "gate"  # the verdict itself, added by promote
# The stream evidence the verdict names (components.gate: `stream`, `streaming`) -> the artifact that carries it.
STREAM_EVIDENCE = {"stream": "hil_stream", "streaming": "streaming"}
# Set by `dvc exp run` (dvc/repo/experiments/queue/base.py, passed to each stage command) and never by `dvc repro`.
EXPERIMENT_ENV = ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV")
# A split folder other than `final` (aed.splits names them; aed.artifacts.deployable_model falls back to one).
TRIAL_SPLIT = re.compile(r"fold-\d+|random|predefined")
log = logging.getLogger(__name__)


class PromotionError(ValueError):
    """A verdict that does not entitle these artifacts to be published."""


def load_verdict(gate_record: Path) -> dict[str, Any]:
    """The gate verdict, checked against its schema (RecordError, one line, when it is not one)."""
    data, _ = read_json(gate_record, "gate verdict")
    return validate_verdict(data, gate_record)


def gate_verdict(gate_record: Path) -> tuple[bool, list[str]]:
    """(passed, reasons) of a schema-valid gate verdict."""
    verdict = load_verdict(gate_record)
    return verdict["promotable"], list(verdict["reasons"])


def check_judged(
    verdict: dict[str, Any], gate_record: Path, artifacts: dict[str, Path], hil_record: Path | None
) -> Path:
    """Refuse unless the model artifact and the HIL record are exactly the files the verdict judged; return the
    HIL record's path."""
    judged_model = verdict["model"]["sha256"]
    model = artifacts.get(MODEL_ARTIFACT)
    if model is None or not Path(model).is_file():
        raise PromotionError(
            f"{gate_record}: give the int8 model the gate judged as --artifact {MODEL_ARTIFACT}=FILE "
            f"(got {model})"
        )
    actual = sha256_file(Path(model))
    if actual != judged_model:
        raise PromotionError(
            f"{model}: sha256 {actual[:12]}… is not the model the verdict {gate_record} judged "
            f"({judged_model[:12]}…); run the HIL job and the gate on this model"
        )
    record_path = Path(hil_record or _file_artifact(artifacts, RECORD_ARTIFACT) or verdict["record"]["path"])
    data, raw = read_json(record_path, "HIL record")
    judged_record, record_sha256 = verdict["record"]["sha256"], hashlib.sha256(raw).hexdigest()
    if record_sha256 != judged_record:
        raise PromotionError(
            f"{record_path}: changed since the gate judged it (sha256 {record_sha256[:12]}…, "
            f"verdict {gate_record} names {judged_record[:12]}…)"
        )
    validate_hil_record(data, record_path)
    if data["model_sha256"] != judged_model:
        raise PromotionError(f"{record_path}: made with another model than the verdict {gate_record} names")
    return record_path


def check_stream_evidence(verdict: dict[str, Any], gate_record: Path, artifacts: dict[str, Path]) -> None:
    """A verdict decided under gate.require_stream must name the stream record and the streaming evaluation it
    judged; each of them published with the model must be exactly that file."""
    evidence = verdict.get("evidence") or {}
    required = bool((verdict.get("thresholds") or {}).get("require_stream"))
    missing = [name for name in STREAM_EVIDENCE if not isinstance(evidence.get(name), dict)]
    if required and missing:
        raise PromotionError(
            f"{gate_record}: gate.require_stream is set but the verdict names no {' or '.join(missing)} evidence; "
            "run the gate with --stream-record and --streaming-eval"
        )
    for name, artifact in STREAM_EVIDENCE.items():
        path, judged = artifacts.get(artifact), (evidence.get(name) or {}).get("sha256")
        if path is None or judged is None:
            continue
        actual = sha256_file(Path(path)) if Path(path).is_file() else None
        if actual != judged:
            raise PromotionError(
                f"{path}: not the {name} evidence the verdict {gate_record} judged (sha256 "
                f"{(actual or 'missing')[:12]}…, verdict names {str(judged)[:12]}…)"
            )


def skip_reason(
    enabled: bool | Literal["auto"], model_file: Path | None, environ: Mapping[str, str] | None = None
) -> str | None:
    """Why this run does not promote, and how to make it (None: it promotes). `auto` skips experiments and
    trial models; `aed promote --enabled true` always overrides."""
    if enabled is True:
        return None
    if enabled is False:
        return "promote.enabled is false; set it to auto or true to promote"
    environ = os.environ if environ is None else environ
    experiment = next((f"{name}={environ[name]}" for name in EXPERIMENT_ENV if environ.get(name)), None)
    if experiment:
        return f"this is a DVC experiment ({experiment}); enable with dvc exp run -S promote.enabled=true"
    split = Path(model_file).parent.name if model_file is not None else ""
    if TRIAL_SPLIT.fullmatch(split):
        return (
            f"trial run: the model is split {split}'s, not a final model (train.final_model: false); "
            "enable with --set promote.enabled=true (aed pipeline run-local) or promote.enabled: true"
        )
    return None


def _file_artifact(artifacts: dict[str, Path], name: str) -> Path | None:
    path = artifacts.get(name)
    return Path(path) if path is not None and Path(path).is_file() else None


def run(
    params: PromoteParams,
    model: str,
    artifacts: dict[str, Path],
    gate_record: Path,
    record_path: Path,
    hil_record: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Publish `artifacts` (name -> file or directory) as a version of `model` if the gate passed for them and
    this run promotes (`skip_reason`).

    hil_record: the HIL record the verdict judged (default: the `hil` artifact, else the path the verdict names).
    environ: the environment that says whether this is an experiment (default: os.environ).
    Returns {"promoted", "outcome", "message", ...}; the message is the line the console shows.
    """
    record_path = Path(record_path)
    if record_path.is_dir():
        raise ValueError(f"{record_path}: is a directory, expected the promotion record's file path")
    record_path.unlink(missing_ok=True)  # an earlier run's "promoted" record must not outlive a refusal
    check_name(model, "model name")
    for name in artifacts:
        check_name(name, "artifact name")
    if GATE_ARTIFACT in artifacts:
        raise PromotionError(f"artifact name {GATE_ARTIFACT!r} is reserved for the gate verdict")
    verdict = load_verdict(gate_record)
    passed, reasons = verdict["promotable"], list(verdict["reasons"])
    figures: dict[str, Any] = {"model": model, "gate_passed": passed, "gate_verdict": verdict["verdict"],
                               "registry": params.registry}  # fmt: skip
    if not passed:
        log.warning(
            "%s not promoted: gate %s (%s)", model, verdict["verdict"], "; ".join(reasons) or "no reasons"
        )
        message = f"{model}: not promoted because the gate verdict is {verdict['verdict']!r}"
        figures.update(promoted=False, outcome="gate-failed", reasons=reasons, message=message)
        write_record(record_path, "promotion", figures, inputs={"gate": gate_record})
        return {"promoted": False, "outcome": "gate-failed", "verdict": verdict["verdict"], "reasons": reasons,
                "message": message}  # fmt: skip
    judged_record = check_judged(verdict, Path(gate_record), artifacts, hil_record)
    check_stream_evidence(verdict, Path(gate_record), artifacts)
    skipped = skip_reason(params.enabled, artifacts.get(MODEL_ARTIFACT), environ)
    if skipped is not None:
        message = f"{model}: gate passed, not promoted because {skipped}"
        log.debug("%s", message)  # the caller prints the message (aed promote, the KFP task body)
        figures.update(promoted=False, outcome="skipped", reasons=[skipped], message=message)
        write_record(record_path, "promotion", figures, inputs={"gate": gate_record, **artifacts})
        return {"promoted": False, "outcome": "skipped", "verdict": verdict["verdict"], "message": message}
    endpoint_url = os.environ.get("AED_S3_ENDPOINT_URL") or params.endpoint_url
    store = open_store(params.registry, dataclasses.replace(params, endpoint_url=endpoint_url))
    published = publish(
        store,
        model,
        {**artifacts, GATE_ARTIFACT: Path(gate_record)},
        metadata={
            "gate_sha256": sha256_file(gate_record),
            "model_sha256": verdict["model"]["sha256"],
            "hil_record_sha256": verdict["record"]["sha256"],
            "source": "aed promote",
        },  # fmt: skip
        referenced=(judged_record,),
    )
    outcome, message = _published_message(published)
    log.debug("%s", message)
    # promoted: this model is in the registry as `version` and latest.json names it (new or already there)
    figures.update(promoted=True, outcome=outcome, message=message, version=published.version,
                   manifest=published.manifest_uri, previous_latest=published.previous)  # fmt: skip
    figures["files"] = published.files
    write_record(record_path, "promotion", figures, inputs={"gate": gate_record, **artifacts})
    return {"promoted": True, "outcome": outcome, "version": published.version, "files": len(published.files),
            "message": message}  # fmt: skip


def _published_message(published: Published) -> tuple[str, str]:
    """(outcome, console line) of a publication: a new version, or content already in the registry."""
    name, version = published.model, published.version
    if published.new:
        return "promoted", f"{name}: promoted version {version} ({published.manifest_uri})"
    # The same content again: nothing copied. latest moves only when it named another version (a rollback).
    if published.previous == version:
        moved = ""
    elif published.previous is None:
        moved = "; latest.json set to it"
    else:
        moved = f"; latest moved back to it from {published.previous}"
    return "already-promoted", f"{name}: already promoted as version {version} (nothing copied{moved})"


def _artifact_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("promote", help="copy a gated model and its records to the model registry")
    add_params_option(parser)
    # any registry name (checked by the registry), not only the models this project builds
    add_model_name_option(parser, known=False, help="the registry's name for the model, e.g. yamnet_256")
    parser.add_argument("--gate", type=Path, required=True, help="the gate verdict (JSON) for this model")
    parser.add_argument(
        "--artifact",
        type=_artifact_arg,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a file or directory to publish under NAME (repeatable); model=FILE is the int8 model the gate judged",
    )
    parser.add_argument(
        "--record",
        type=Path,
        help="the HIL record the gate judged (default: --artifact hil=..., else the verdict's)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the promotion record")
    parser.add_argument(
        "--enabled",
        choices=("auto", "true", "false"),
        help="promote at all? (default: promote.enabled; auto: not inside `dvc exp run`, not a trial model)",
    )
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    params = load_section(args.params, SECTION, PromoteParams)
    if args.enabled is not None:
        enabled = {"auto": "auto", "true": True, "false": False}[args.enabled]
        params = dataclasses.replace(params, enabled=enabled)
    artifacts: dict[str, Path] = {}
    for name, path in args.artifact:
        if name in artifacts:
            raise ValueError(f"--artifact {name}= given twice")
        artifacts[name] = path
    result = run(params, args.model_name, artifacts, args.gate, args.out, hil_record=args.record)
    if result["outcome"] == "gate-failed":
        # the gate's own exit codes: 1 a regression, 2 undecidable
        reasons = "; ".join(result["reasons"]) or "no reasons given"
        print(
            f"aed promote: {args.gate}: verdict {result['verdict']!r}, nothing promoted ({reasons})",
            file=sys.stderr,
        )
        return 1 if result["verdict"] == "regression" else 2
    # promoted, already promoted, or skipped on purpose (an experiment): all succeed, and the line says which
    print(f"aed promote: {result['message']}")
    return 0
