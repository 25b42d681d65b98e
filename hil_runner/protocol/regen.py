"""Generate (or check) the Python codec of stm32msg.proto with grpc_tools.protoc.

The generated module is committed under `generated/` so a runtime install needs no protoc; `check()` (used by a test
and `python -m hil_runner.protocol.regen --check`) fails when the committed copy no longer matches the .proto.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "stm32msg.proto"
GENERATED = HERE / "generated" / "stm32msg_pb2.py"


def generate() -> str:
    """Run protoc (grpcio-tools, a dev dependency) on the .proto and return the generated Python source.

    protoc runs in a child process: loaded in-process next to TensorFlow's protobuf symbols it can crash."""
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={out}", str(PROTO)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(
                f"{PROTO}: protoc failed with exit code {result.returncode}: {result.stderr.strip()}"
            )
        return (Path(out) / "stm32msg_pb2.py").read_text()


def check() -> list[str]:
    """Problems with the committed generated code (empty when current)."""
    if not GENERATED.exists():
        return [f"{GENERATED}: missing; run `python -m hil_runner.protocol.regen`"]
    if GENERATED.read_text() != generate():
        return [f"{GENERATED}: out of date with {PROTO.name}; run `python -m hil_runner.protocol.regen`"]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that the committed code is current")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    GENERATED.parent.mkdir(parents=True, exist_ok=True)
    GENERATED.write_text(generate())
    print(f"wrote {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
