"""`aed params show [--model-name NAME] [--section NAME]`: the effective settings of every params.yaml section, each
with where it comes from (default, params.yaml, or train.overrides.<model> with --model-name).

The rows come from aed.settings.effective_settings, the same function `aed train` prints its settings with, so
the two tables agree. The sections are those the pipeline's steps read (pipelines.glue.section_classes) plus the
ones the layer above adds (`pipeline`, passed in by pipelines.cli).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from components.common import add_model_name_option, add_params_option


def register(subparsers: argparse._SubParsersAction, extra_sections: dict[str, type] | None = None) -> None:
    parser = subparsers.add_parser("params", help="show the effective settings and where each comes from")
    actions = parser.add_subparsers(dest="params_command", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="every section's settings: params.yaml merged with the defaults, with each value's source",
    )
    add_params_option(show)
    add_model_name_option(show, required=False, help="apply train's per-model overrides of this model")
    show.add_argument("--section", metavar="NAME", help="only this section (default: every section)")
    show.set_defaults(handler=_show, extra_sections=dict(extra_sections or {}))


def _show(args: argparse.Namespace) -> int:
    from aed.params import read_params
    from pipelines.aed_pipeline import STEPS
    from pipelines.glue import section_classes

    classes = {**section_classes(STEPS), **args.extra_sections}
    print(
        "\n".join(
            settings_table(read_params(args.params), classes, args.params, args.model_name, args.section)
        )
    )
    return 0


def settings_table(
    params: dict[str, Any],
    classes: dict[str, type],
    path: Path,
    model: str | None = None,
    only: str | None = None,
) -> list[str]:
    """The lines of `aed params show`: per section a heading, then one line per setting (key, value, source).
    Sections in the file's order, then the ones it leaves to their defaults; a section no step reads is listed
    as such (a typo in a section name would otherwise look like a setting that works)."""
    from aed.params import ParamsError
    from aed.settings import effective_settings, format_settings

    if model is not None:
        check_model(model)
    names = [*params, *sorted(name for name in classes if name not in params)]
    if only is not None:
        if only not in names:
            raise ParamsError(f"--section {only!r}: unknown section; known: {', '.join(sorted(names))}")
        names = [only]
    lines = []
    for name in names:
        if name not in classes:
            lines.append(f"{name}: read by no step; known sections: {', '.join(sorted(classes))}")
            continue
        try:
            rows = effective_settings(name, classes[name], params.get(name), model)
        except ParamsError as error:
            raise ParamsError(f"{path}: {error}") from None
        lines += [f"{name}:", *format_settings(rows)]
    return lines


def check_model(model: str) -> None:
    """--model-name must name a known model: a typo would silently show the top-level values."""
    from aed.model_specs import check_model_name

    check_model_name(model, "--model-name")
