"""Markdown views of step records, for KFP's Markdown artifacts (the run page shows them inline).

Presentation only: every figure comes from the JSON record the step itself wrote.
"""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def validation_markdown(record: dict[str, Any]) -> str:
    parts = [
        "# Validation report",
        "",
        f"{record.get('n_passed', '?')} of {record.get('n_clips_in', '?')} clips passed; "
        f"{record.get('n_quarantined', 0)} quarantined (policy: {record.get('policy', '?')}).",
    ]
    problems = record.get("dataset_problems") or []
    if problems:
        parts += ["", "## Dataset problems", "", *(f"- {p}" for p in problems)]
    quarantined = record.get("quarantined") or []
    if quarantined:
        rows = [{"path": q.get("path", ""), "reasons": "; ".join(q.get("reasons", []))} for q in quarantined]
        parts += ["", "## Quarantined files", "", table(rows, ["path", "reasons"])]
    for suite, result in (record.get("expectations") or {}).items():
        checks = result.get("checks", []) if isinstance(result, dict) else []
        if checks:
            rows = [
                {
                    "expectation": c.get("expectation", ""),
                    "column": c.get("column") or "",
                    "ok": "yes" if c.get("success") else "NO",
                    "unexpected": c.get("unexpected_count") if c.get("unexpected_count") is not None else "",
                }
                for c in checks
            ]
            parts += [
                "",
                f"## Expectations: {suite}",
                "",
                table(rows, ["expectation", "column", "ok", "unexpected"]),
            ]
    return "\n".join(parts) + "\n"


def record_markdown(title: str, record: dict[str, Any]) -> str:
    """A generic two-column view of a record's scalar figures (nested dicts flattened with dots)."""
    rows: list[dict[str, Any]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, str | int | float | bool) or value is None:
            rows.append({"figure": prefix, "value": value})

    walk("", {k: v for k, v in record.items() if k not in ("inputs", "tools")})
    return f"# {title}\n\n{table(rows, ['figure', 'value'])}\n"
