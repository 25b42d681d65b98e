"""Run the great-expectations suites stored next to this module with an ephemeral, offline context."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

SUITES_DIR = Path(__file__).parent
ROW_KEY = "row"


def _context(docs_dir: Path | None):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

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


def failing_rows(result: dict) -> dict[int, list[str]]:
    """Row number -> reasons, from the row-level expectations of a GX result."""
    reasons: dict[int, list[str]] = {}
    for outcome in result["results"]:
        if outcome["success"]:
            continue
        config = outcome["expectation_config"]
        column = config["kwargs"].get("column")
        for item in outcome["result"].get("unexpected_index_list") or []:
            row = int(item[ROW_KEY])
            value = item.get(column)
            value = value.item() if hasattr(value, "item") else value  # numpy scalar -> plain value
            reasons.setdefault(row, []).append(f"{config['type']}: {column}={value!r}")
    return reasons


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
