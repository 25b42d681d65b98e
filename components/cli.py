"""The steps' command line: one `aed` subcommand per step, discovered from the `components` packages, and the
error handling every subcommand shares (one line, exit 2, for bad input). The console script itself is
`pipelines.cli.main`, which adds `aed pipeline` on top (the DAG is the layer above the steps)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TextIO

import yaml

import components
from aed.redact import redact

# Quiet third-party start-up noise; a user can still raise verbosity with -v.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def step_packages() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(components.__path__) if m.ispkg)


# A layer above the steps adds its own subcommands (`aed pipeline`) as {name: register(subparsers)}.
Registrars = dict[str, Callable[[argparse._SubParsersAction], None]]


def build_parser(
    command: str | None = None, extra_commands: Registrars | None = None
) -> argparse.ArgumentParser:
    """The parser with every step's subcommand, or only `command`'s when its package is named after it
    (`export-firmware` -> components.export_firmware). A step imports its heavy libraries (TensorFlow, pandas,
    onnx...) only in the functions that run it, so building any parser stays well under a second
    (tests/test_cli_lazy.py checks `sys.modules`; bench/cli_help.py times it)."""
    parser = OneLineParser(prog="aed", description="Tiny audio event detection MLOps pipeline.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    packages = step_packages()
    extra_commands = extra_commands or {}
    wanted = command.replace("-", "_") if command else None
    if command in extra_commands:
        extra_commands[command](subparsers)
        return parser
    if wanted not in packages:  # no single step named: the whole command line
        for register in extra_commands.values():
            register(subparsers)
    for name in [wanted] if wanted in packages else packages:
        module = importlib.import_module(f"components.{name}")
        register = getattr(module, "register", None)
        if register is None:
            raise RuntimeError(f"components.{name} has no register(subparsers)")
        register(subparsers)
    if wanted in packages and command not in subparsers.choices:
        # the package registers another name: fall back to every step
        return build_parser(None, extra_commands)
    return parser


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (`aed estimate: error: ...`) with exit 2, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, redact(f"{self.prog}: error: {message} (see {self.prog} --help)") + "\n")


class RedactingFilter(logging.Filter):
    """Masks secrets in every log record (message, arguments and traceback text) before a handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class RedactingStream:
    """Wraps sys.stdout / sys.stderr: masks secrets in whatever is printed, delegates everything else."""

    def __init__(self, target: TextIO) -> None:
        self.target = target

    def write(self, text: str) -> int:
        self.target.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


# Errors caused by the input (files, params, records, models, links): one line, exit 2. The steps raise
# ValueError subclasses for bad content; OSError covers missing, unreadable and wrong-kind paths (a folder given
# as a file); RuntimeError subclasses are the project's tool, board and server failures; yaml and JSON errors are
# ValueError or YAMLError.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, yaml.YAMLError)
# RuntimeError subclasses that are bugs, not input problems
BUGS: tuple[type[BaseException], ...] = (RecursionError, NotImplementedError)


def main(argv: list[str] | None = None, extra_commands: Registrars | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    try:
        return _main(argv, command, extra_commands)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams


def _main(argv: list[str], command: str | None, extra_commands: Registrars | None) -> int:
    step = command or "?"
    verbose = "-v" in argv or "--verbose" in argv
    try:
        args = build_parser(command, extra_commands).parse_args(argv)
        step = _step_name(args)
        _configure_logging(args.verbose)
        return int(args.handler(args) or 0)
    except SystemExit:
        raise  # argparse's one-line usage error (exit 2), --help (exit 0), a step's own exit
    except KeyboardInterrupt:
        print(f"aed {step}: interrupted", file=sys.stderr)
        return 130
    except INPUT_ERRORS as error:
        if verbose:
            raise
        if isinstance(error, BUGS):
            return _internal_error(step, error)
        print(f"aed {step}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # the last resort: a bug, not the user's input
        if verbose:
            raise
        return _internal_error(step, error)


def _internal_error(step: str, error: BaseException) -> int:
    print(f"aed {step}: internal error: {_one_line(error)} (run with -v for the traceback)", file=sys.stderr)
    return 1


def _step_name(args: argparse.Namespace) -> str:
    """`hil run`, `pipeline submit`, `patch`: the words the user typed to pick the step."""
    sub = getattr(args, "hil_command", None) or getattr(args, "pipeline_command", None)
    return f"{args.command} {sub}" if sub else str(args.command)


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "numba", "h5py", "absl"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def _one_line(error: BaseException) -> str:
    """The error's message on one line: the type when it has none, the path for an OSError without one."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error)
    text = " ".join(text.split())
    if isinstance(error, KeyError | yaml.YAMLError) or not text:
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


if __name__ == "__main__":
    sys.exit(main())
