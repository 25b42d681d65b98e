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


def serve(args: argparse.Namespace) -> int:
    from hil_runner.vboard.server import VirtualBoard

    if args.model is None and args.slot is None:
        raise ValueError("give --model and/or --slot")
    board = VirtualBoard(
        get_profile(args.profile),
        model_path=args.model,
        slot=args.slot,
        faults=parse_faults(args.fault),
        seed=args.seed,
        realtime=args.realtime,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"note: binding {host}; the protocol has no authentication", file=sys.stderr)
        descriptor = board.serve_tcp(host or "127.0.0.1", int(port or 0))
    else:
        descriptor = board.serve_pty(args.baud)
    print(f"READY {descriptor}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        board.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil_runner.vboard", description=__doc__)
    add_arguments(parser)
    return serve(parser.parse_args(argv))
