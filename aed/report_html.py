"""One self-contained HTML page for a run: `reports/index.html`.

`dvc plots show` writes a page that loads its charting library from a CDN (blank offline). This page needs nothing
but itself: charts are PNGs drawn with matplotlib and embedded as base64, the style sheet is inline, and every
link is a relative path to a file of the run. It shows the compared figures, the data counts, the confusion
matrices and training curves, the footprint, the gate table, the promotion and where every file is.

Only files of this run are presented. The run's models are the ones its evaluate record names; a gate verdict
judged another HIL record than the one in reports/, or a promotion record made from another verdict, is left
over from an earlier run (e.g. a promotion from another day, after a run that stopped at its gate): it is listed
under "Not from this run" with the reason, never shown as this run's result.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aed.dvc_metrics import FiguresError, convert_figures, evaluation_figures, hil_figures
from aed.params import bounded
from aed.records import sha256_file

METRICS_DIR = "metrics"
FLOAT_FORMAT = "float32"
SECTIONS = (
    "Metrics",
    "Data",
    "Confusion matrices",
    "Training curves",
    "Footprint",
    "Gate",
    "Promotion",
    "Files",
)


class ReportError(ValueError):
    """A report file that cannot be read: one line naming it, the CLI exits 2."""


@dataclass(frozen=True)
class ReportParams:
    """dpi: resolution of the embedded charts (the page's size grows with its square)."""

    dpi: int = bounded(80, 30, 300)


@dataclass
class ModelFiles:
    """One model's files in reports/, each None when this run did not produce it."""

    name: str
    evaluation: dict | None = None
    convert: dict | None = None
    hil: dict | None = None
    gate: dict | None = None
    promote: dict | None = None
    histories: dict[str, list[dict[str, str]]] = field(default_factory=dict)


@dataclass
class RunFiles:
    root: Path
    models: list[ModelFiles]
    records: dict[str, dict]  # ingest, validation, patch, evaluate: the run's shared records
    used: list[Path]
    stale: list[tuple[Path, str]]
    figures: list[Path] = field(default_factory=list)  # reports/metrics/ files of this run's models


# -- reading ----------------------------------------------------------------------------------------------------
# The containers the page reads in each kind of file: a record whose field has another shape is refused by name.
SHAPES: dict[str, dict[str, type]] = {
    "evaluate": {"metrics": dict},
    "evaluation": {"class_names": list, "formats": dict},
    "hil": {"metrics": dict, "memory": dict},
    "gate": {"record": dict, "baseline": dict, "checks": list, "reasons": list},
    "promote": {"inputs": dict},
    "validation": {"quarantined": list},
    "patch": {"patches_per_class": dict},
}
ITEM_SHAPES: dict[tuple[str, str], type] = {
    ("evaluate", "metrics"): dict,
    ("evaluation", "formats"): dict,
    ("gate", "checks"): dict,
    ("validation", "quarantined"): dict,
}


def read_json(path: Path, kind: str | None = None) -> dict | None:
    """A report file's content, None when absent; an unreadable or misshapen file is an error naming it."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ReportError(f"{path}: not readable JSON ({_first_line(error)})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, found {type(data).__name__}")
    for key, expected in SHAPES.get(kind or "", {}).items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, expected):
            raise ReportError(f"{path}: {key}: expected {_kind_name(expected)}, found {type(value).__name__}")
        item_type = ITEM_SHAPES.get((kind or "", key))
        items = value.values() if isinstance(value, dict) else value
        if item_type and not all(isinstance(item, item_type) for item in items):
            raise ReportError(f"{path}: {key}: every entry must be {_kind_name(item_type)}")
    return data


def _kind_name(expected: type) -> str:
    return "a list" if expected is list else "an object"


def _plain_name(name: str, source: str) -> str:
    """A model name is also a file-name part in reports/: never a path."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ReportError(f"{source}: model name {name!r}: expected a plain name")
    return name


def run_models(reports: Path, models: list[str] | None) -> list[str]:
    """The models of this run: as given, else those the evaluate record names, else those with a HIL record."""
    if models:
        return [_plain_name(name, "--model") for name in dict.fromkeys(models)]
    evaluate = read_json(reports / "evaluate.json", "evaluate")
    if evaluate and evaluate.get("metrics"):
        return [_plain_name(name, str(reports / "evaluate.json")) for name in evaluate["metrics"]]
    return sorted(p.stem.removeprefix("hil_") for p in reports.glob("hil_*.json"))


def collect(reports: Path, models: list[str] | None = None) -> RunFiles:
    reports = Path(reports)
    if reports.exists() and not reports.is_dir():
        raise ReportError(f"{reports}: is a file, expected the run's reports folder")
    if not reports.is_dir():
        raise ReportError(f"{reports}: no such folder (run the pipeline first, or give --reports)")
    run = RunFiles(reports, [], {}, [], [])
    for kind, name in (("ingest", "ingest.json"), ("validation", "validation.json"), ("patch", "patch.json"),
                       ("evaluate", "evaluate.json")):  # fmt: skip
        _use(run, reports / name, kind, run.records)
    for name in run_models(reports, models):
        files = _model_files(run, name)
        if models and not _has_files(files):
            found = ", ".join(run_models(reports, None)) or "none"
            raise ReportError(
                f"--model-name {name}: no report of it in {reports}; models found there: {found}"
            )
        run.models.append(files)
    _list_leftovers(run)
    return run


def _has_files(files: ModelFiles) -> bool:
    return bool(files.histories) or any(
        (files.evaluation, files.convert, files.hil, files.gate, files.promote)
    )


def _use(run: RunFiles, path: Path, key: str, into: dict) -> dict | None:
    data = read_json(path, key)
    if data is not None:
        into[key] = data
        run.used.append(path)
    return data


def _model_files(run: RunFiles, name: str) -> ModelFiles:
    reports = run.root
    files = ModelFiles(name)
    found: dict[str, dict] = {}
    _use(run, reports / name / "evaluation.json", "evaluation", found)
    _use(run, reports / f"convert_{name}.json", "convert", found)
    hil = _use(run, reports / f"hil_{name}.json", "hil", found)
    gate_path, promote_path = reports / f"gate_{name}.json", reports / f"promote_{name}.json"
    gate = read_json(gate_path, "gate")
    if gate is not None:
        judged = (gate.get("record") or {}).get("sha256")
        if hil is None or judged != sha256_file(reports / f"hil_{name}.json"):
            run.stale.append((gate_path, f"judged another HIL record than reports/hil_{name}.json"))
            gate = None
        else:
            found["gate"] = gate
            run.used.append(gate_path)
    promote = read_json(promote_path, "promote")
    if promote is not None:
        if gate is None or (promote.get("inputs") or {}).get("gate") != sha256_file(gate_path):
            run.stale.append((promote_path, f"made from another gate verdict than reports/gate_{name}.json"))
        else:
            found["promote"] = promote
            run.used.append(promote_path)
    for key, value in found.items():
        setattr(files, key, value)
    for history in sorted((reports / name / "history").glob("*.csv")):
        files.histories[history.stem] = _read_csv(history)
        run.used.append(history)
    return files


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as stream:
            return list(csv.DictReader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ReportError(f"{path}: not a readable CSV ({_first_line(error)})") from None


def _list_leftovers(run: RunFiles) -> None:
    """Report files (records, compact figures) in reports/ that belong to no model of this run."""
    names = {m.name for m in run.models}
    known = {p.resolve() for p in run.used} | {p.resolve() for p, _ in run.stale}
    for path in sorted(run.root.glob("*_*.json")):
        if path.resolve() not in known and _model_of(path, names) is None:
            run.stale.append((path, "belongs to a model this run did not evaluate"))
    for path in sorted((run.root / METRICS_DIR).rglob("*.json")):
        if _model_of(path, names) is None:
            run.stale.append((path, "figures of a model this run did not evaluate"))
        else:
            run.figures.append(path)
    for folder in sorted(p for p in run.root.iterdir() if p.is_dir() and (p / "evaluation.json").exists()):
        if folder.name not in names:
            run.stale.append((folder, "belongs to a model this run did not evaluate"))


def _model_of(path: Path, names: set[str]) -> str | None:
    """The model a report file is named after: <model>.json or <step>_<model>.json."""
    return next((n for n in names if path.stem == n or path.stem.endswith(f"_{n}")), None)


# -- charts -----------------------------------------------------------------------------------------------------
def _png(figure: Any, dpi: int) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: the charts are drawn into memory
    import matplotlib.pyplot as plt

    return plt


def confusion_png(matrix: list[list[int]], classes: list[str], title: str, dpi: int) -> str:
    plt = _pyplot()
    size = max(3.5, 0.45 * len(classes) + 2.0)
    figure, axes = plt.subplots(figsize=(size + 0.8, size))
    peak = max((max(row) for row in matrix if row), default=0) or 1
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=peak)
    axes.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    axes.set_yticks(range(len(classes)), classes)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                colour = "white" if count > peak / 2 else "black"
                axes.text(j, i, str(count), ha="center", va="center", color=colour, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    axes.set_title(title)
    figure.tight_layout()
    return _png(figure, dpi)


def history_png(histories: dict[str, list[dict[str, str]]], title: str, dpi: int) -> str | None:
    """Validation accuracy per epoch, one line per split (epochs numbered across the training phases)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 3.5))
    drawn = False
    for split, rows in histories.items():
        values = [_number(row.get("val_accuracy")) for row in rows]
        points = [(i + 1, v) for i, v in enumerate(values) if v is not None]
        if points:
            axes.plot([p[0] for p in points], [p[1] for p in points], label=split, marker=".")
            drawn = True
    if not drawn:
        plt.close(figure)
        return None
    axes.set_xlabel("epoch (all phases)")
    axes.set_ylabel("val_accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=3)
    figure.tight_layout()
    return _png(figure, dpi)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


# -- HTML -------------------------------------------------------------------------------------------------------
STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 80em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; font-size: 0.9em;
         overflow-wrap: anywhere; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #17692b; font-weight: bold; } .fail { color: #b00020; font-weight: bold; }
.missing { color: #777; font-style: italic; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
"""


def _e(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("-" if value is None else str(value))


def _table(columns: list[str], rows: list[list[Any]]) -> str:
    """A table of values (escaped here; numbers right-aligned, statuses coloured)."""
    return _html_table(columns, [[_cell(v) for v in row] for row in rows])


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are already HTML (`<td ...>...</td>`)."""
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{_e(value)}</td>'
    return f"<td>{_status(value)}</td>"


def _status(value: Any) -> str:
    if value in ("pass", "fail", "regression", "undecidable"):
        return f'<span class="{"pass" if value == "pass" else "fail"}">{_e(value)}</span>'
    return _e(value)


def _missing(text: str) -> str:
    return f'<p class="missing">{_e(text)}</p>'


def _image(b64: str, alt: str) -> str:
    return f'<figure><img alt="{_e(alt)}" src="data:image/png;base64,{b64}"><figcaption>{_e(alt)}</figcaption></figure>'


def _section(title: str, body: str) -> str:
    anchor = title.lower().replace(" ", "-")
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>\n{body}\n</section>'


def metrics_section(run: RunFiles) -> str:
    columns = ["model", "float_acc", "int8_acc", "agreement", "board_acc", "board agreement", "latency_ms (board)",
               "ram_bytes", "flash_bytes", "latency_ms (estimate)"]  # fmt: skip
    rows = []
    for model in run.models:
        evaluated = _figures(
            run, model.name, "evaluate", (run.records.get("evaluate") or {}).get("metrics", {})
        )
        hil = _figures(run, model.name, "hil", model.hil)
        convert = _figures(run, model.name, "convert", model.convert)
        rows.append([model.name, evaluated.get("float_acc"), evaluated.get("int8_acc"), evaluated.get("agreement"),
                     hil.get("board_acc"), hil.get("agreement"), hil.get("latency_ms"),
                     hil.get("ram_bytes", convert.get("ram_bytes")), hil.get("flash_bytes", convert.get("flash_bytes")),
                     convert.get("latency_ms")])  # fmt: skip
    note = (
        "<p>Clip accuracy is the mean over the test splits (evaluate); board figures come from the HIL run; "
        f"the same figures are in {METRICS_DIR}/ for <code>dvc metrics show</code>.</p>"
    )
    return note + _table(columns, rows) if rows else _missing("no model was evaluated in this run")


def _figures(run: RunFiles, name: str, kind: str, source: dict | None) -> dict[str, Any]:
    if not source:
        return {}
    try:
        if kind == "evaluate":
            return evaluation_figures(source[name]) if name in source else {}
        return convert_figures(source) if kind == "convert" else hil_figures(source)
    except FiguresError as error:
        path = run.root / (f"{kind}.json" if kind == "evaluate" else f"{kind}_{name}.json")
        raise ReportError(f"{path}: {error}") from None


def data_section(run: RunFiles) -> str:
    ingest, validation, patch = (run.records.get(k) for k in ("ingest", "validation", "patch"))
    parts = []
    if ingest:
        parts.append(f"<p>Ingest: {_e(ingest.get('n_clips'))} clips from <code>{_e(ingest.get('source'))}</code> "
                     f"(layout {_e(ingest.get('layout'))}).</p>")  # fmt: skip
    if validation:
        parts.append(f"<p>Validation: {_e(validation.get('n_passed'))} of {_e(validation.get('n_clips_in'))} clips "
                     f"passed, {_e(validation.get('n_quarantined'))} quarantined.</p>")  # fmt: skip
        reasons: dict[str, int] = {}
        for entry in validation.get("quarantined") or []:
            for reason in (entry.get("reasons") if isinstance(entry, dict) else None) or [
                "(no reason given)"
            ]:
                key = str(reason).split(":")[0]
                reasons[key] = reasons.get(key, 0) + 1
        if reasons:
            parts.append(_table(["quarantine reason", "clips"], sorted(reasons.items())))
    if patch:
        per_class = patch.get("patches_per_class") or {}
        parts.append(f"<p>Patches: {_e(patch.get('n_patches'))} from {_e(patch.get('n_clips'))} clips.</p>")
        if per_class:
            parts.append(_table(["class", "patches"], sorted(per_class.items())))
    return "\n".join(parts) or _missing("no data records in this run (ingest, validate, patch)")


def confusion_section(run: RunFiles, params: ReportParams) -> str:
    parts = []
    for model in run.models:
        evaluation = model.evaluation or {}
        classes = [str(name) for name in evaluation.get("class_names") or []]
        for fmt, details in (evaluation.get("formats") or {}).items():
            matrix = details.get("confusion")
            if not _square_counts(matrix, len(classes)):
                path = run.root / model.name / "evaluation.json"
                size = f"{len(classes)}x{len(classes)}"
                raise ReportError(f"{path}: formats.{fmt}.confusion: expected a {size} table of counts")
            title = f"{model.name} {fmt}"
            parts.append(_image(confusion_png(matrix, classes, title, params.dpi), f"confusion {title}"))
    return "\n".join(parts) or _missing("no evaluation in this run")


def _square_counts(matrix: Any, size: int) -> bool:
    return (
        size > 0
        and isinstance(matrix, list)
        and len(matrix) == size
        and all(isinstance(row, list) and len(row) == size for row in matrix)
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for row in matrix for v in row)
    )


def curves_section(run: RunFiles, params: ReportParams) -> str:
    parts = []
    for model in run.models:
        chart = history_png(model.histories, f"{model.name}: validation accuracy", params.dpi)
        if chart:
            parts.append(_image(chart, f"training curve {model.name}"))
    return "\n".join(parts) or _missing("no training history in this run")


def footprint_section(run: RunFiles) -> str:
    rows = []
    for model in run.models:
        convert, memory = model.convert or {}, (model.hil or {}).get("memory") or {}
        if convert or memory:
            rows.append([model.name, convert.get("target"), convert.get("source"), convert.get("weights_bytes"),
                         convert.get("activations_bytes"), convert.get("macc"), convert.get("latency_ms"),
                         memory.get("weights_bytes"), memory.get("activations_bytes")])  # fmt: skip
    columns = ["model", "target", "figures from", "flash (weights) B", "RAM (activations) B", "MACC",
               "latency ms (estimate)", "board flash B", "board RAM B"]  # fmt: skip
    return _table(columns, rows) if rows else _missing("no convert or HIL record in this run")


def gate_section(run: RunFiles) -> str:
    parts = []
    for model in run.models:
        gate = model.gate
        if not gate:
            parts.append(f"<h3>{_e(model.name)}</h3>" + _missing("no gate verdict for this run"))
            continue
        baseline = (gate.get("baseline") or {}).get("path")
        reasons = "; ".join(str(r) for r in gate.get("reasons") or []) or "none"
        parts.append(f"<h3>{_e(model.name)}: verdict {_status(gate.get('verdict'))}</h3>"
                     f"<p>baseline <code>{_e(baseline)}</code>; reasons: {_e(reasons)}</p>")  # fmt: skip
        rows = [[c.get("name"), c.get("status"), _short(c.get("baseline")), _short(c.get("candidate")),
                 c.get("limit")] for c in gate.get("checks") or [] if isinstance(c, dict)]  # fmt: skip
        parts.append(_table(["check", "status", "baseline", "candidate", "limit"], rows))
    return "\n".join(parts) or _missing("no model in this run")


def _short(value: Any, limit: int = 40) -> Any:
    """Hashes and class lists cut to a readable cell; the full value is in the verdict file."""
    text = ", ".join(map(str, value)) if isinstance(value, list) else value
    if isinstance(text, str) and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def promotion_section(run: RunFiles) -> str:
    rows = [[m.name, "yes" if m.promote.get("promoted") else "no", m.promote.get("version"),
             m.promote.get("registry"), m.promote.get("reason")]
            for m in run.models if m.promote]  # fmt: skip
    if not rows:
        return _missing("no model was promoted by this run")
    return _table(["model", "promoted", "version", "registry", "note"], rows)


FILE_ROLES = {
    "ingest.json": "ingest record",
    "validation.json": "validation record: quarantined clips and why",
    "patch.json": "patch record",
    "evaluate.json": "evaluate record (every model's figures, provenance)",
}


def files_section(run: RunFiles, index: Path) -> str:
    base = index.parent.resolve()
    files = [(p, _role(p)) for p in run.used if p.exists()]
    files += [(p, "compared figures (DVC metrics)") for p in run.figures]
    rows = [[_link(p, base), _cell(role), _cell(p.stat().st_size)] for p, role in files]
    project = run.root.resolve().parent
    data_docs = run.root / "data_docs" / "index.html"
    if data_docs.is_file():
        rows.append([_link(data_docs, base), _cell("Great Expectations Data Docs (validation)"), _cell(None)])
    for model in run.models:
        for relative, role in (
            (f"models/{model.name}/float", "float models (one per split, final)"),
            (f"models/{model.name}/int8", "int8 models"),
            (f"artifacts/firmware/{model.name}", "firmware files"),
            (f"artifacts/convert/{model.name}", "stedgeai output"),
        ):
            if (project / relative).exists():
                rows.append([f"<td><code>{_e(relative)}</code></td>", _cell(role), _cell(None)])
        if model.promote and model.promote.get("manifest"):
            manifest = model.promote["manifest"]
            rows.append([f"<td><code>{_e(manifest)}</code></td>", _cell("registry manifest"), _cell(None)])
    body = _html_table(["file", "what", "bytes"], rows)
    if run.stale:
        body += "<h3>Not from this run</h3><p>Left over from an earlier run; not used above.</p>"
        body += _html_table(["file", "why"], [[_link(p, base), _cell(why)] for p, why in run.stale])
    return body


def _link(path: Path, base: Path) -> str:
    """A relative link: the page works from any copy of the folder, and points at no server."""
    real = Path(path).resolve()
    try:
        relative = real.relative_to(base).as_posix()
    except ValueError:
        return f"<td><code>{_e(path)}</code></td>"
    return f'<td><a href="{_e(relative)}"><code>{_e(relative)}</code></a></td>'


def _role(path: Path) -> str:
    name = path.name
    if name in FILE_ROLES:
        return FILE_ROLES[name]
    if path.suffix == ".csv":
        return f"training history ({path.stem})"
    kind = name.split("_")[0]
    return {"convert": "convert record (footprint)", "hil": "HIL record", "gate": "gate verdict",
            "promote": "promotion record", "evaluation.json": "per-class report, confusion matrices"}.get(
        kind, "record")  # fmt: skip


def render(run: RunFiles, params: ReportParams, index: Path) -> str:
    names = ", ".join(m.name for m in run.models) or "none"
    sections = [
        _section("Metrics", metrics_section(run)),
        _section("Data", data_section(run)),
        _section("Confusion matrices", confusion_section(run, params)),
        _section("Training curves", curves_section(run, params)),
        _section("Footprint", footprint_section(run)),
        _section("Gate", gate_section(run)),
        _section("Promotion", promotion_section(run)),
        _section("Files", files_section(run, index)),
    ]
    toc = " · ".join(f'<a href="#{t.lower().replace(" ", "-")}">{_e(t)}</a>' for t in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>AED run report</title><style>{STYLE}</style></head>\n<body>\n"
        f"<h1>AED run report</h1><p>Models: {_e(names)}. Folder: <code>{_e(run.root)}</code>.</p>"
        f"<nav>{toc}</nav>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
