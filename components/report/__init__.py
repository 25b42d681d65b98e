"""Step `report`: the run's reports/ -> reports/index.html, one self-contained page (aed.report_html).

The last DVC stage; also runnable by hand at any time (e.g. after a gate stopped `dvc repro`): it shows what the
run produced and lists, apart, any file in reports/ left over from an earlier run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aed.outputs import check_file_outputs
from aed.params import load_section
from aed.records import atomic_write_text
from aed.report_html import SECTIONS, ReportParams, collect, render
from components.common import add_model_name_option, add_params_option

SECTION = "report"


def run(params: ReportParams, reports_dir: Path, html_path: Path, models: list[str] | None = None) -> dict:
    """Write the page for the files in reports_dir (models: as given, else those its evaluate record names);
    returns what it shows."""
    html_path = Path(html_path)
    if html_path.is_dir():
        raise ValueError(f"--out {html_path}: is a directory, expected the HTML file's path")
    if html_path.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out {html_path}: expected an .html file name")
    check_file_outputs({"--out": html_path}, {})
    found = collect(Path(reports_dir), models)
    atomic_write_text(html_path, render(found, params, html_path))
    return {
        "models": [m.name for m in found.models],
        "sections": list(SECTIONS),
        "files": len(found.used),
        "not_from_this_run": [str(path) for path, _ in found.stale],
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML page of the run (reports/index.html)"
    )
    add_params_option(parser)
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="the run's reports folder")
    parser.add_argument("--out", type=Path, default=Path("reports/index.html"), help="the page to write")
    add_model_name_option(
        parser,
        required=False,
        repeatable=True,
        known=False,
        help="repeatable; default: the models evaluate names",
    )
    parser.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:
    params = load_section(args.params, SECTION, ReportParams)
    shown = run(params, args.reports, args.out, args.model_name)
    print(f"report: {args.out} ({', '.join(shown['models']) or 'no model'}; {shown['files']} files)")
    for path in shown["not_from_this_run"]:
        print(f"report: {path}: not from this run (listed apart in the page)")
    return 0
