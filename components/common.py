"""Helpers shared by the step wrappers: the common CLI options and the step metrics file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

DEFAULT_PARAMS = Path("params.yaml")


def add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)"
    )


def env_path(name: str) -> Path | None:
    import os

    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


# -- the CLI's argument convention ------------------------------------------------------------------------------
# `--model PATH` is a model file the step reads; `--model-name NAME` is a name from models.names. Both meanings met
# in one flag before (train/quantize/evaluate/promote took the name as --model, convert/hil/export-firmware the
# file), and `hil run` and `convert` need both at once, so the name has its own flag. An old spelling keeps
# working and says on stderr what to write instead.
def deprecated(old: str, new: str) -> None:
    print(f"aed: note: {old} is deprecated; use {new}", file=sys.stderr)


class _DeprecatedAlias(argparse.Action):
    """An old option spelling: stores (or appends) into the new option's dest and prints a deprecation note."""

    def __init__(self, *args: Any, new: str, append: bool = False, **kwargs: Any) -> None:
        self.new, self.append = new, append
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        deprecated(f"{option_string} {self.metavar}", f"{self.new} {self.metavar}")
        if self.append:
            values = [*(getattr(namespace, self.dest, None) or []), values]
        setattr(namespace, self.dest, values)


def known_model_name(value: str) -> str:
    """argparse type: a name from aed.model_specs; argparse prints the error as `argument --model-name: ...`."""
    from aed.model_specs import MODEL_SPECS, unknown_model_message

    if value not in MODEL_SPECS:
        raise argparse.ArgumentTypeError(unknown_model_message(value))
    return value


def add_model_name_option(
    parser: argparse.ArgumentParser,
    *,
    required: bool = True,
    repeatable: bool = False,
    known: bool = True,
    help: str = "model name, e.g. yamnet_256",
) -> None:
    """`--model-name NAME` (dest model_name; a list when repeatable), checked against the known models unless
    `known` is False; the old `--model NAME` still works (deprecated)."""
    kind: Any = known_model_name if known else str
    # required: one of the two spellings (a mutually exclusive group; a repeatable option may mix them)
    group = parser.add_mutually_exclusive_group(required=required) if not repeatable else parser
    action = "append" if repeatable else "store"
    group.add_argument("--model-name", dest="model_name", type=kind, action=action, metavar="NAME", help=help)
    group.add_argument("--model", dest="model_name", type=kind, metavar="NAME", help=argparse.SUPPRESS,
                       action=_DeprecatedAlias, new="--model-name", append=repeatable)  # fmt: skip
