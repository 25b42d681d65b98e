"""`aed hil vboard` / `python -m hil_runner.vboard`: run a virtual board until interrupted.

Prints one line `READY <descriptor>` (e.g. `READY serial:/dev/pts/3:115200`) on stdout once it accepts requests.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from hil_runner.boards.profiles import PROFILES, get_profile
from hil_runner.vboard.faults import parse_faults


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, choices=sorted(PROFILES), help="board profile to emulate")
    parser.add_argument("--model", type=Path, help="int8 .tflite model to preload")
    parser.add_argument(
        "--slot", type=Path, help="flash slot file: a model copied here is loaded (flash: none)"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve on a TCP port, e.g. 127.0.0.1:0")
    parser.add_argument("--baud", type=int, help="baud rate written in the printed serial descriptor")
    parser.add_argument(
        "--fault", action="append", help="fault injection, e.g. drop=3, version=4.0, noise=0.05"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the latency noise")
    parser.add_argument("--realtime", action="store_true", help="sleep the simulated inference time")
    parser.add_argument(
        "--runtime",
        choices=("auto", "litert", "tflm"),
        default="auto",
        help="tflm: tflite-micro in its measured arena; auto: tflm when the model carries TFLM's offline plan",
    )


def serve(args: argparse.Namespace) -> int:
    from hil_runner.vboard.server import VirtualBoard

    if args.model is None and args.slot is None:
        raise ValueError("give --model and/or --slot")
    if args.tcp:
        tcp_address(args.tcp)  # a bad address is refused before the model is loaded
    if args.model is not None and not Path(args.model).is_file():
        raise FileNotFoundError(f"--model {args.model}: no such file")
    if args.slot is not None and Path(args.slot).is_dir():
        raise IsADirectoryError(f"--slot {args.slot}: is a directory; give the flash slot's file path")
    faults = parse_faults(args.fault)  # before the (slow) model load
    board = VirtualBoard(
        get_profile(args.profile),
        model_path=args.model,
        slot=args.slot,
        faults=faults,
        seed=args.seed,
        realtime=args.realtime,
        runtime=args.runtime,
    )
    stop = threading.Event()
    previous = {
        signum: signal.signal(signum, lambda *_: stop.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:  # the board's threads are stopped whatever happens, or the process would never exit
        if args.tcp:
            host, port = tcp_address(args.tcp)
            if host not in ("127.0.0.1", "localhost", "::1"):
                print(f"note: binding {host}; the protocol has no authentication", file=sys.stderr)
            descriptor = board.serve_tcp(host, port)
        else:
            descriptor = board.serve_pty(args.baud)
        print(f"READY {descriptor}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        board.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def tcp_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (PORT 0: any free port; HOST empty: 127.0.0.1) or ValueError naming the option."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--tcp {text!r}: expected HOST:PORT with a port in 0-65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    """The standalone entry point: bad input is one line and exit 2, Ctrl-C exit 130, never a traceback."""
    parser = argparse.ArgumentParser(prog="python -m hil_runner.vboard", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return serve(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, OSError, RuntimeError) as error:
        print(f"vboard: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
