"""The `aed` console script: one subcommand per step, discovered from the `components` packages."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

import components

# Quiet third-party start-up noise; a user can still raise verbosity with -v.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


class UserError(Exception):
    """An error caused by the user's input: printed as one line, no traceback."""


def step_packages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(components.__path__) if m.ispkg)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every step's subcommand, or only `command`'s when its package is named after it
    (`export-firmware` -> components.export_firmware): steps import TensorFlow and friends at module level,
    and `aed patch` should not pay for them."""
    parser = argparse.ArgumentParser(prog="aed", description="Tiny audio event detection MLOps pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    packages = step_packages()
    wanted = command.replace("-", "_") if command else None
    for name in [wanted] if wanted in packages else packages:
        module = importlib.import_module(f"components.{name}")
        register = getattr(module, "register", None)
        if register is None:
            raise RuntimeError(f"components.{name} has no register(subparsers)")
        register(subparsers)
    if wanted in packages and command not in subparsers.choices:
        return build_parser(None)  # the package registers another name: fall back to every step
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "numba", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        result = args.handler(args)
    except (ValueError, FileNotFoundError, UserError, RuntimeError, TimeoutError) as error:
        if args.verbose:
            raise
        print(f"aed {args.command}: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
