"""Validate a manifest: GX suite + duplicate ids + per-file audio checks -> passed rows and a quarantine list.

Invariant: every input row ends up either in `passed` or in `quarantined`, never both, never neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import pandas as pd

from aed.params import bounded
from aed.patching import class_order
from aed.validation.audio_checks import AudioCheckConfig, check_clip, path_problem
from aed.validation.expectations import ROW_KEY, failing_rows, load_suite_definition, run_suites, summary
from aed.workers import ordered_map

UNIQUE_EXPECTATION = "expect_column_values_to_be_unique"


@dataclass(frozen=True)
class ValidateParams(AudioCheckConfig):
    """The `validate` section: the dataset's expectations, the per-file limits (AudioCheckConfig) and the policy."""

    # the classes the model learns; also its output order (aed.patching.class_order)
    classes: list[str] = field(default_factory=list)
    fold_min: int = bounded(0, 0)
    fold_max: int = bounded(5, 0)
    duration_min_s: float = bounded(0.1, 0.0)
    duration_max_s: float = bounded(60.0, 0.0)
    sample_rate_min: int = bounded(8000, 1)
    sample_rate_max: int = bounded(48000, 1)
    max_channels: int = bounded(2, 1)
    min_share: float = bounded(0.0, 0.0, 1.0)
    max_share: float = bounded(1.0, 0.0, 1.0)
    min_clips_per_class: int = bounded(1, 0)
    on_bad_file: Literal["quarantine", "fail"] = "quarantine"
    jobs: int = bounded(2, 1)

    def __post_init__(self) -> None:
        class_order((), self.classes)  # refuses a class listed twice, before any step reads the list

    def expectation_parameters(self) -> dict:
        """The values the GX suites are filled with."""
        names = ("fold_min", "fold_max", "duration_min_s", "duration_max_s", "sample_rate_min", "sample_rate_max",
                 "max_channels", "min_share", "max_share", "min_clips_per_class")  # fmt: skip
        return {"classes": class_order((), self.classes), **{name: getattr(self, name) for name in names}}


@dataclass
class ValidationOutcome:
    passed: pd.DataFrame
    quarantined: list[dict]
    gx: dict[str, dict]
    dataset_problems: list[str] = field(default_factory=list)

    @property
    def report(self) -> dict:
        return {
            "n_clips_in": len(self.passed) + len(self.quarantined),
            "n_passed": len(self.passed),
            "n_quarantined": len(self.quarantined),
            "quarantined": self.quarantined,
            "dataset_problems": self.dataset_problems,
            "expectations": {
                name: {"success": r["success"], "checks": summary(r)} for name, r in self.gx.items()
            },
        }


def validate_manifest(
    manifest: pd.DataFrame,
    raw_dir: Path,
    expectation_parameters: dict,
    audio_config: AudioCheckConfig = AudioCheckConfig(),
    docs_dir: Path | None = None,
    jobs: int = 2,
) -> ValidationOutcome:
    missing = sorted(set(manifest_columns()) - set(manifest.columns))
    if missing:  # a file that is not an ingest manifest: refused whole, not row by row
        raise ValueError(f"manifest: missing column(s) {missing}; expected the columns `aed ingest` writes")
    frame = manifest.reset_index(drop=True).copy()
    frame.insert(0, ROW_KEY, range(len(frame)))
    frame["problem"] = frame["problem"].fillna("")
    reasons: dict[int, list[str]] = {row: [] for row in frame[ROW_KEY]}

    for row, problem, path in zip(frame[ROW_KEY], frame["problem"], frame["path"].astype(str), strict=True):
        if problem:
            reasons[row].append(problem)
        if outside := path_problem(path):  # never decoded: it would read outside the raw dir
            reasons[row].append(outside)
    first_row = frame.groupby("clip_id")[ROW_KEY].transform("min")
    for row, first in zip(frame[ROW_KEY], first_row, strict=True):
        if row != first:
            reasons[row].append(f"duplicate clip_id (first at manifest row {first + 2})")

    gx_manifest = run_suites({"manifest": frame}, expectation_parameters, docs_dir)["manifest"]
    for row, found in _row_failures_except_unique(gx_manifest).items():
        reasons[row].extend(found)

    to_decode = [
        row
        for row in frame[ROW_KEY]
        if not frame.at[row, "problem"] and not path_problem(str(frame.at[row, "path"]))
    ]
    paths = [raw_dir / frame.at[row, "path"] for row in to_decode]
    checked = ordered_map(
        partial(check_clip, config=audio_config), paths, jobs, str, preload=[check_clip.__module__]
    )
    for row, found in zip(to_decode, checked, strict=True):
        reasons[row].extend(found)

    bad = {row for row, found in reasons.items() if found}
    quarantined = [
        {
            "clip_id": frame.at[row, "clip_id"],
            "path": frame.at[row, "path"],
            "manifest_row": row + 2,
            "reasons": reasons[row],
        }
        for row in sorted(bad)
    ]
    passed = frame[~frame[ROW_KEY].isin(bad)].drop(columns=[ROW_KEY]).reset_index(drop=True)
    outcome = ValidationOutcome(passed=passed, quarantined=quarantined, gx={"manifest": gx_manifest})
    balance = class_balance(passed, expectation_parameters["classes"])
    outcome.gx["class_balance"] = run_suites({"class_balance": balance}, expectation_parameters, docs_dir)[
        "class_balance"
    ]
    if not outcome.gx["class_balance"]["success"]:
        outcome.dataset_problems = [
            f"class balance: {line['expectation']} on {line['column']} failed (observed {line['observed_value']})"
            for line in summary(outcome.gx["class_balance"])
            if not line["success"]
        ]
    return outcome


def manifest_columns() -> list[str]:
    """The columns of an ingest manifest, as the manifest suite expects them (without the added row key)."""
    expectation = next(
        e
        for e in load_suite_definition("manifest")["expectations"]
        if e["type"] == "expect_table_columns_to_match_set"
    )
    return [column for column in expectation["kwargs"]["column_set"] if column != ROW_KEY]


def _row_failures_except_unique(result: dict) -> dict[int, list[str]]:
    """Duplicates are handled above (the first occurrence is kept); every other row-level failure counts."""
    trimmed = {
        **result,
        "results": [r for r in result["results"] if r["expectation_config"]["type"] != UNIQUE_EXPECTATION],
    }
    return failing_rows(trimmed)


def class_balance(passed: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    counts = passed["label"].value_counts().reindex(classes, fill_value=0)
    total = max(1, int(counts.sum()))
    return pd.DataFrame(
        {"label": counts.index, "count": counts.to_numpy(), "share": counts.to_numpy() / total}
    )
