"""promote: copy a gated model and its records into the model registry (a directory or s3://bucket/prefix).

Only a passing gate verdict is promoted. A failing verdict leaves the registry untouched and writes a promotion
record that says so, so `dvc repro` and a KFP run report the same outcome.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aed.params import bounded, load_section
from aed.records import sha256_file, write_record
from aed.registry import S3Settings, open_store, publish

SECTION = "promote"
log = logging.getLogger(__name__)


@dataclass
class PromoteParams:
    registry: str = "work/registry"  # a directory, or s3://bucket/prefix
    endpoint_url: str | None = None  # S3-compatible endpoint (MinIO, moto); env AED_S3_ENDPOINT_URL overrides
    region: str = "us-east-1"
    timeout_s: float = bounded(30.0, 1.0, 600.0)


def gate_verdict(gate_record: Path) -> tuple[bool, list[str]]:
    """(passed, reasons) from a gate verdict: `promotable` or `passed` (bool), else `verdict` == "pass"."""
    gate_record = Path(gate_record)
    if not gate_record.is_file():
        raise FileNotFoundError(f"{gate_record}: gate record not found")
    try:
        record = json.loads(gate_record.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{gate_record}: not valid JSON ({error})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{gate_record}: expected a JSON object")
    flag = next((record[k] for k in ("promotable", "passed") if isinstance(record.get(k), bool)), None)
    if flag is not None:
        passed = flag
    elif isinstance(record.get("verdict"), str):
        passed = record["verdict"].lower() == "pass"  # regression, undecidable, ... never promote
    else:
        raise ValueError(
            f"{gate_record}: no gate verdict (expected 'promotable' / 'passed': true|false or 'verdict')"
        )
    reasons = record.get("reasons") or [
        f"{c.get('name')}: {c.get('status')} {c.get('detail', '')}".strip()
        for c in record.get("checks", [])
        if isinstance(c, dict) and c.get("status") != "pass"
    ]
    return passed, [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)]


def run(
    params: PromoteParams, model: str, artifacts: dict[str, Path], gate_record: Path, out: Path
) -> dict[str, Any]:
    """Publish `artifacts` (name -> file or directory) as a new version of `model` if the gate passed."""
    passed, reasons = gate_verdict(gate_record)
    figures: dict[str, Any] = {"model": model, "gate_passed": passed, "registry": params.registry}
    if not passed:
        log.warning("%s not promoted: gate failed (%s)", model, "; ".join(reasons) or "no reasons given")
        figures.update(promoted=False, reasons=reasons)
        write_record(out, "promotion", figures, inputs={"gate": gate_record})
        return {"promoted": False}
    settings = S3Settings(
        endpoint_url=os.environ.get("AED_S3_ENDPOINT_URL") or params.endpoint_url,
        region=params.region,
        timeout_s=params.timeout_s,
    )
    store = open_store(params.registry, settings)
    gate_key = "gate"
    published = publish(
        store,
        model,
        {**artifacts, gate_key: Path(gate_record)},
        metadata={"gate_sha256": sha256_file(gate_record), "source": "aed promote"},
    )
    log.info("promoted %s version %s to %s", model, published.version, published.manifest_uri)
    figures.update(promoted=True, version=published.version, manifest=published.manifest_uri)
    figures["files"] = published.files
    write_record(out, "promotion", figures, inputs={"gate": gate_record, **artifacts})
    return {"promoted": True, "version": published.version, "files": len(published.files)}


def _artifact_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("promote", help="copy a gated model and its records to the model registry")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--model", required=True, help="model name, e.g. yamnet_256")
    parser.add_argument("--gate", type=Path, required=True, help="the gate record (JSON) for this model")
    parser.add_argument(
        "--artifact",
        type=_artifact_arg,
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="a file or directory to publish under NAME (repeatable)",
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the promotion record")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    params = load_section(args.params, SECTION, PromoteParams)
    artifacts = dict(args.artifact)
    result = run(params, args.model, artifacts, args.gate, args.out)
    print(json.dumps(result))
    return 0
