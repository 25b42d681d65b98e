"""Step `gate`: HIL record + baseline of the same key -> verdict (exit 0 pass, 1 regression, 2 undecidable).

`aed gate --accept` makes the record the new baseline (explicit approval); replacing a baseline of another key
(a tool or runtime bump, another dataset) also needs `--replace`. A malformed or impossible record or baseline
exits 2 with one line naming the file and field, and leaves no verdict behind.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aed.params import load_section
from components.common import add_params_option, known_model_name
from hil_runner.gate import GateParams

SECTION = "gate"


def run(
    params: GateParams,
    hil_record: Path,
    record_path: Path | None,
    baseline: Path | None = None,
    model_name: str | None = None,
    table_path: Path | None = None,
    evaluate_record: Path | None = None,
    convert_record: Path | None = None,
    stream_record: Path | None = None,
    streaming_evaluation: Path | None = None,
) -> dict:
    """Evaluate the HIL record against its baseline; write the verdict JSON (and the table as Markdown).

    convert_record, when given, adds its TFLM plan proof as a check of its own (a failed proof fails the gate).
    stream_record (`aed hil run --stream`) adds the stream checks: its events against host detect's
    (gate.max_stream_*); with gate.require_stream, it and streaming_evaluation must be there for a pass.
    evaluate_record / convert_record / stream_record / streaming_evaluation, when given, are hashed into the
    verdict as the evidence it was decided with.
    Returns {"passed", "verdict", "exit_code", "table"}."""
    from aed.records import atomic_write_text, sha256_file
    from hil_runner.gate import evaluate, mismatch_lines, render_table, write_verdict

    # An earlier run's verdict must not survive this one: if anything below fails, there is no verdict at all.
    for stale in (record_path, table_path):
        discard(stale)
    baseline = Path(baseline) if baseline else params.baseline_path(hil_record, model_name)
    verdict = evaluate(hil_record, baseline, params, convert_record=convert_record, stream_path=stream_record,
                       streaming_evaluation=streaming_evaluation)  # fmt: skip
    table = render_table(verdict)
    if record_path is not None:
        evidence = {name: {"path": str(path), "sha256": sha256_file(path)}
                    for name, path in (("evaluate", evaluate_record), ("convert", convert_record),
                                       ("stream", stream_record), ("streaming", streaming_evaluation))
                    if path is not None and Path(path).is_file()}  # fmt: skip
        write_verdict(record_path, verdict, params, evidence)
    if table_path is not None:
        atomic_write_text(table_path, "```\n" + table + "\n```\n")
    return {"passed": verdict.exit_code == 0, "verdict": verdict.verdict, "exit_code": verdict.exit_code,
            "table": table, "key_mismatches": mismatch_lines(verdict.checks)}  # fmt: skip


def discard(path: Path | None) -> None:
    """Remove an earlier output file; refuse (one line) when the path is something else than a file."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file path to write")
    path.unlink(missing_ok=True)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("gate", help="regression gate: compare a HIL record with its baseline")
    add_params_option(parser)
    parser.add_argument("--record", type=Path, default=Path("reports/hil.json"))
    parser.add_argument("--baseline", type=Path, help="baseline record (default: gate.baseline)")
    parser.add_argument(
        "--model-name",
        type=known_model_name,
        default="yamnet_256",
        help="fills {model_name} in gate.baseline",
    )
    parser.add_argument(
        "--verdict", type=Path, default=Path("reports/gate.json"), help="verdict JSON to write"
    )
    parser.add_argument("--stream-record", type=Path, help="the `aed hil run --stream` record of this model")
    parser.add_argument(
        "--streaming-eval", type=Path, help="the streaming evaluation of this model (evidence)"
    )
    parser.add_argument(
        "--convert-record",
        type=Path,
        default=None,
        help="convert record: its TFLM plan proof must have passed",
    )
    parser.add_argument(
        "--accept", action="store_true", help="make --record the new baseline (explicit approval)"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="with --accept: replace an existing baseline even if its key differs (another dataset, tool...)",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, "gate", GateParams)  # refuses NaN thresholds, unknown key fields
    baseline = args.baseline or params.baseline_path(args.record, args.model_name)
    if args.replace and not args.accept:
        raise ValueError("--replace only applies with --accept")
    if args.accept:
        from hil_runner.gate import accept

        accepted = accept(args.record, baseline, params, replace=args.replace)
        print(f"gate: accepted {args.record} as the baseline {baseline} (profile {accepted['key']['profile']}, "
              f"{len(accepted['key']['class_names'])} classes, {accepted['key']['eval_patches']} patches)")  # fmt: skip
        return 0
    result = run(params, args.record, args.verdict, baseline=baseline, model_name=args.model_name,
                 convert_record=args.convert_record, stream_record=args.stream_record,
                 streaming_evaluation=args.streaming_eval)  # fmt: skip
    if result["key_mismatches"]:
        # One line per differing field instead of the table: nothing else was compared.
        for line in result["key_mismatches"]:
            print(f"gate: {line}")
        print(f"gate: UNDECIDABLE (exit 2): {args.record} and the baseline {baseline} are not comparable; "
              f"verdict written to {args.verdict}")  # fmt: skip
        return result["exit_code"]
    print(result["table"])
    print(f"gate: verdict written to {args.verdict}")
    return result["exit_code"]
