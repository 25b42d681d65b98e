"""Run the great-expectations suites stored next to this module with an ephemeral, offline context."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from aed.validation.problems import Problem

SUITES_DIR = Path(__file__).parent
ROW_KEY = "row"


def _context(docs_dir: Path | None):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # That module sets its own logger to INFO, past the CLI's WARNING for great_expectations: without this, each
    # run prints "Created temporary directory ... for ephemeral docs site" twice among the step's own lines.
    logging.getLogger(ProgressBarsConfig.__module__).setLevel(logging.WARNING)

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="aed",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(Path(docs_dir).resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def load_suite_definition(name: str) -> dict[str, Any]:
    return json.loads((SUITES_DIR / f"{name}_suite.json").read_text())


def run_suites(
    frames: dict[str, pd.DataFrame], parameters: dict[str, Any], docs_dir: Path | None = None
) -> dict[str, dict]:
    """Validate each named frame against the suite of the same name; returns GX result dicts by suite name.
    With result_format COMPLETE and the `row` column as index, row-level failures name their rows."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    context = _context(docs_dir)
    source = context.data_sources.add_pandas("aed")
    results = {}
    for name, frame in frames.items():
        definition = load_suite_definition(name)
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in definition["expectations"]:
            suite.add_expectation_configuration(
                ExpectationConfiguration(type=expectation["type"], kwargs=expectation["kwargs"])
            )
        suite.save()
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(data=batch, suite=suite, name=name)
        )
        result_format: dict[str, Any] = {"result_format": "COMPLETE"}
        if ROW_KEY in frame.columns:
            result_format["unexpected_index_column_names"] = [ROW_KEY]
        actions = [gx.checkpoint.UpdateDataDocsAction(name="docs")] if docs_dir is not None else []
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=name, validation_definitions=[validation], actions=actions, result_format=result_format
            )
        )
        run = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=parameters)
        results[name] = next(iter(run.run_results.values())).to_json_dict()
    return results


# The columns of the suites in words: name, verb and the unit said after a value ("dog is 0.52 of the clips",
# "rooster has 3 clips").
COLUMN_WORDS = {
    "share": ("class share", "is", " of the clips"),
    "count": ("clips per class", "has", " clips"),
    "duration_s": ("duration", "is", " s"),
    "sample_rate": ("sample rate", "is", " Hz"),
    "channels": ("channels", "is", ""),
    "fold": ("fold", "is", ""),
    "label": ("label", "is", ""),
    "clip_id": ("clip id", "is", ""),
    "sha256": ("sha256", "is", ""),
}
# What a failed row-level expectation means, as the kind a quarantine summary counts ("fold out of range").
KIND_WORDS = {
    "expect_column_values_to_be_between": "out of range",
    "expect_column_values_to_be_in_set": "not in the allowed set",
    "expect_column_values_to_not_be_null": "empty",
    "expect_column_values_to_match_regex": "malformed",
    "expect_column_values_to_be_unique": "not unique",
}
LISTED = 10  # values named in one line before "and N more"


def failing_rows(result: dict) -> dict[int, list[Problem]]:
    """Row number -> problems, from the row-level expectations of a GX result, each in words with the row's value
    and the allowed range or set (`fold is 9, allowed 1 to 5`)."""
    problems: dict[int, list[Problem]] = {}
    for outcome in result["results"]:
        if outcome["success"]:
            continue
        config = outcome["expectation_config"]
        column = config["kwargs"].get("column")
        kind = f"{column_words(column)} {KIND_WORDS.get(config['type'], 'failed ' + config['type'])}"
        for item in outcome["result"].get("unexpected_index_list") or []:
            if not isinstance(item, dict) or ROW_KEY not in item:
                continue
            value = show_value(column, item.get(column))
            detail = f"{column_words(column)} {_words(column)[1]} {value}, {allowed(config)}"
            problems.setdefault(int(item[ROW_KEY]), []).append(Problem(kind, detail))
    return problems


def describe_failures(result: dict, frame: pd.DataFrame, subject: str) -> list[str]:
    """Each failed expectation of a GX result in words: what is checked, which rows (named by their `subject`
    column) have which value, and what is allowed, e.g. `class share: dog is 0.52 of the clips, allowed at most
    0.45`. Used for the failures that stop the step, so that the console says what is wrong without GX's terms."""
    lines = []
    for outcome in result["results"]:
        if outcome["success"]:
            continue
        config, found = outcome["expectation_config"], outcome["result"]
        column = config["kwargs"].get("column")
        if "unexpected_index_list" not in found:  # an expectation on the whole table or column
            lines.append(_aggregate_words(config, found.get("observed_value")))
            continue
        rows = found["unexpected_index_list"]
        named = [_row_words(frame, subject, column, item) for item in rows[:LISTED]]
        more = f" and {len(rows) - LISTED} more" if len(rows) > LISTED else ""
        lines.append(f"{column_words(column)}: {', '.join(named)}{more}, {allowed(config)}")
    return lines


def _aggregate_words(config: dict, observed: Any) -> str:
    """A failed expectation on a whole column or table: what differs between the observed and expected sets."""
    kwargs = config["kwargs"]
    expected = kwargs.get("column_set") or kwargs.get("value_set")
    what = column_words(kwargs.get("column")) if kwargs.get("column") else "columns"
    if isinstance(observed, list) and isinstance(expected, list | tuple | set):
        missing = [value for value in expected if value not in observed]
        extra = [value for value in observed if value not in expected]
        parts = [
            f"missing {show_list(missing)}" if missing else "",
            f"unexpected {show_list(extra)}" if extra else "",
        ]
        return f"{what}: " + "; ".join(part for part in parts if part) + f" ({allowed(config)})"
    return f"{what}: the data has {show_list(observed)}, {allowed(config)}"


def _row_words(frame: pd.DataFrame, subject: str, column: str, item: Any) -> str:
    """`dog is 0.52 of the clips`: the row's subject and its value; `item` is a row position, or a dict holding
    the row key and the value when the frame has the row key column."""
    position = int(item[ROW_KEY]) if isinstance(item, dict) else int(item)
    row = frame.iloc[position]
    return f"{row[subject]} {_words(column)[1]} {show_value(column, row[column])}"


def allowed(config: dict) -> str:
    """The allowed values of an expectation, in words (the parameters are already filled in by GX)."""
    kwargs, kind = config["kwargs"], config["type"]
    if kind == "expect_column_values_to_be_between":
        low, high = kwargs.get("min_value"), kwargs.get("max_value")
        if low is not None and high is not None:
            return f"allowed {number(low)} to {number(high)}"
        return f"allowed at least {number(low)}" if low is not None else f"allowed at most {number(high)}"
    if kind in ("expect_column_values_to_be_in_set", "expect_column_distinct_values_to_equal_set"):
        return f"allowed: {show_list(kwargs.get('value_set'))}"
    if kind == "expect_table_columns_to_match_set":
        return f"expected: {show_list(kwargs.get('column_set'))}"
    if kind == "expect_column_values_to_match_regex":
        return f"must match {kwargs.get('regex')}"
    if kind == "expect_column_values_to_not_be_null":
        return "must not be empty"
    if kind == "expect_column_values_to_be_unique":
        return "must be unique"
    return f"the check {kind} failed"


def column_words(column: str | None) -> str:
    return _words(column)[0]


def _words(column: str | None) -> tuple[str, str, str]:
    return COLUMN_WORDS.get(column or "", (column or "table", "is", ""))


def show_value(column: str, value: Any) -> str:
    value = value.item() if hasattr(value, "item") else value  # numpy scalar -> plain value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value) + _words(column)[2]
    return repr(value)


def number(value: Any) -> str:
    """A limit or an observed figure, short: 1 not 1.0, 0.524 not 0.5238095238095238."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:.3g}" if isinstance(value, float) and abs(value) < 100 else str(value)


def show_list(values: Any) -> str:
    if not isinstance(values, list | tuple | set):
        return repr(values)
    items = [str(value) for value in values]
    more = f" and {len(items) - LISTED} more" if len(items) > LISTED else ""
    return ", ".join(items[:LISTED]) + more


def summary(result: dict) -> list[dict]:
    """One line per expectation: type, column, success, unexpected count (dataset-level view)."""
    lines = []
    for outcome in result["results"]:
        config = outcome["expectation_config"]
        lines.append(
            {
                "expectation": config["type"],
                "column": config["kwargs"].get("column"),
                "success": outcome["success"],
                "unexpected_count": outcome["result"].get("unexpected_count"),
                "observed_value": outcome["result"].get("observed_value"),
            }
        )
    return lines
