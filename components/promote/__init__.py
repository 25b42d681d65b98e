"""promote: copy a gated model and its records into the model registry (a directory or s3://bucket/prefix).

Only a passing gate verdict is promoted, and only for the artifacts it judged: the verdict must be a well-formed
gate verdict that names the sha256 of the int8 model and of the HIL record it judged; the `model` artifact must be
that very file and the record must be unchanged. Anything else is refused with one line (exit 2) and nothing is
published. A valid verdict that did not pass also leaves the registry untouched and writes a promotion record
that says so, so `dvc repro` and a KFP run report the same outcome.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from aed.params import load_section
from aed.record_schema import read_json, validate_hil_record, validate_verdict
from aed.records import sha256_file, write_record
from aed.registry import PromoteParams, check_name, open_store, publish
from components.common import add_model_name_option, add_params_option

SECTION = "promote"
MODEL_ARTIFACT = "model"  # the artifact whose sha256 must be the one the verdict judged
RECORD_ARTIFACT = "hil"  # when given, the HIL record published with the model (dvc's stage does)
GATE_ARTIFACT = "gate"  # the verdict itself, added by promote
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
) -> None:
    """Refuse unless the model artifact and the HIL record are exactly the files the verdict judged."""
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
) -> dict[str, Any]:
    """Publish `artifacts` (name -> file or directory) as a new version of `model` if the gate passed for them.

    hil_record: the HIL record the verdict judged (default: the `hil` artifact, else the path the verdict names).
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
        figures.update(promoted=False, reasons=reasons)
        write_record(record_path, "promotion", figures, inputs={"gate": gate_record})
        return {"promoted": False, "verdict": verdict["verdict"], "reasons": reasons}
    check_judged(verdict, Path(gate_record), artifacts, hil_record)
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
    )
    log.info("promoted %s version %s to %s", model, published.version, published.manifest_uri)
    figures.update(promoted=True, version=published.version, manifest=published.manifest_uri)
    figures["files"] = published.files
    write_record(record_path, "promotion", figures, inputs={"gate": gate_record, **artifacts})
    return {"promoted": True, "version": published.version, "files": len(published.files)}


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
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    params = load_section(args.params, SECTION, PromoteParams)
    artifacts: dict[str, Path] = {}
    for name, path in args.artifact:
        if name in artifacts:
            raise ValueError(f"--artifact {name}= given twice")
        artifacts[name] = path
    result = run(params, args.model_name, artifacts, args.gate, args.out, hil_record=args.record)
    if not result["promoted"]:
        # the gate's own exit codes: 1 a regression, 2 undecidable
        reasons = "; ".join(result["reasons"]) or "no reasons given"
        print(
            f"aed promote: {args.gate}: verdict {result['verdict']!r}, nothing promoted ({reasons})",
            file=sys.stderr,
        )
        return 1 if result["verdict"] == "regression" else 2
    print(json.dumps(result))
    return 0
