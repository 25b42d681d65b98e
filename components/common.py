"""Helpers shared by the step wrappers: the common CLI options and the step metrics file."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PARAMS = Path("params.yaml")


def add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=DEFAULT_PARAMS, help="params file (default: params.yaml)"
    )


def env_path(name: str) -> Path | None:
    import os

    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None
