"""The demo's time, stage by stage: run `dvc repro` through this script and it notes when each stage starts.

    python bench/demo_times.py run [--out reports/timing/demo.json] [--append] -- dvc repro hil
    python bench/demo_times.py show [reports/timing/demo.json]       # the table again, no make needed

`run` passes the command's output through unchanged and timestamps dvc's own lines: a stage runs from its
"Running stage 'x':" line to the next stage line ("Running stage ..." or "Stage 'y' didn't change, skipping") or
the command's end, so its time includes dvc's hashing and lock-file update for it. Skipped stages are listed
with 0 s. `--append` adds the run to the file (make demo runs `dvc repro` twice, with the gate's first baseline
in between). The file also records the 1-minute load average and the cores before and after each run: a figure
for the README comes only from a run that started on a machine at most half loaded (bench/harness.py's rule; the
load after includes the demo's own work, so it is shown, not judged). `--make-started EPOCH` on the last run adds the
whole `make demo` wall time from make's start (install, data and the gate's first baselines included). `make demo`
ends with `show`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from harness import cpu_model, machine_load

DEFAULT_OUT = Path("reports/timing/demo.json")
# dvc 3's lines that open a stage's work: "Running stage 'train@yamnet_256':", "Stage 'patch' didn't change,
# skipping", "Stage 'x' is cached - skipping run, checking out outputs".
STAGE_LINE = re.compile(r"^(?:Running stage|Stage) '(?P<stage>[^']+)'(?P<rest>.*)$")
LARGEST = 3


def stage_times(events: Iterable[tuple[float, str]], end: float) -> list[dict]:
    """[{stage, seconds, status}] from (time, output line) pairs: each stage line opens a stage that the next one
    (or `end`) closes; an unchanged stage takes about 0 s, one restored from the run-cache its checkout time."""
    stages: list[dict] = []
    starts: list[float] = []
    for moment, line in events:
        match = STAGE_LINE.match(line.strip())
        if match:
            status = _status(match["rest"])
            stages.append({"stage": match["stage"], "seconds": 0.0, "status": status})
            starts.append(moment)
    stops = [*starts[1:], end] if starts else []
    for stage, start, stop in zip(stages, starts, stops, strict=True):
        stage["seconds"] = round(stop - start, 3)
    return stages


def _status(rest: str) -> str:
    if "didn't change" in rest:
        return "unchanged"
    return "from run-cache" if "skipping run" in rest else "ran"


def run(command: list[str], out: Path, append: bool, make_started: float | None = None) -> int:
    """Run `command`, echoing its output; write its stage times to `out`; return its exit code. `make_started`
    (seconds since the epoch, when make began) adds the whole make demo's wall time, install and data included."""
    before, started_at, started = machine_load(), datetime.now(UTC), time.monotonic()
    events: list[tuple[float, str]] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the steps' progress lines still arrive as they happen
    try:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env
        )
    except OSError as error:
        print(f"demo_times: cannot run {command[0]!r}: {error.strerror}", file=sys.stderr)
        return 2
    assert process.stdout is not None
    try:
        for line in process.stdout:
            events.append((time.monotonic(), line))
            sys.stdout.write(line)
            sys.stdout.flush()
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached dvc too (same process group): let it clean up, record nothing
        process.wait()
        return 130
    end, after = time.monotonic(), machine_load()
    entry = {
        "command": " ".join(command),
        "started": started_at.isoformat(timespec="seconds"),
        "exit_code": code,
        "wall_s": round(end - started, 3),
        "load_before": before.average,
        "load_after": after.average,
        "cores": before.cores,
        "cpu": cpu_model(),
        "stages": stage_times(events, end),
    }
    if make_started is not None:
        entry["make_wall_s"] = round(time.time() - make_started, 1)
    runs = load_runs(out) if append and out.exists() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": [*runs, entry]}, indent=2) + "\n")
    return code


def load_runs(path: Path) -> list[dict]:
    """The runs recorded in `path`; a missing or malformed file is one clear line and exit 2."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SystemExit(
            _bad(f"{path}: not found (make demo writes it; or run `{sys.argv[0]} run -- dvc repro`)")
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SystemExit(_bad(f"{path}: not readable JSON ({error})")) from None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list) or not all(
        isinstance(r, dict) and isinstance(r.get("stages"), list) for r in runs
    ):
        raise SystemExit(_bad(f"{path}: expected {{'runs': [{{'stages': [...], ...}}]}}"))
    return runs


def _bad(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def table(runs: list[dict]) -> str:
    """Each stage's wall time, run by run; the total, the largest stages, the load and the verdict."""
    lines = []
    for entry in runs:
        lines.append(f"{entry.get('command', '?')}  (started {entry.get('started', '?')})")
        for stage in entry["stages"]:
            note = "" if stage.get("status") == "ran" else f"  ({stage.get('status')})"
            lines.append(f"  {stage['stage']:<40} {float(stage['seconds']):>9.1f} s{note}")
        wall = float(entry.get("wall_s", 0.0))
        outside = wall - sum(float(stage["seconds"]) for stage in entry["stages"])
        lines.append(f"  {'dvc before the first stage':<40} {outside:>9.1f} s  (start-up, pipeline checks)")
        lines.append(f"  {'wall time of the command':<40} {wall:>9.1f} s")
    stages = [stage for entry in runs for stage in entry["stages"]]
    total = sum(float(entry.get("wall_s", 0.0)) for entry in runs)
    lines.append(f"total {total:.1f} s ({total / 60:.1f} min) over {len(runs)} command(s)")
    make_wall = [float(entry["make_wall_s"]) for entry in runs if "make_wall_s" in entry]
    if make_wall:
        lines.append(
            f"make demo: {make_wall[-1]:.1f} s ({make_wall[-1] / 60:.1f} min) from make's start "
            "(install, data, first gate baselines and both dvc repro)"
        )
    largest = sorted(stages, key=lambda stage: -float(stage["seconds"]))[:LARGEST]
    largest = [stage for stage in largest if float(stage["seconds"]) > 0]
    if largest and total:
        shares = ", ".join(
            f"{s['stage']} {float(s['seconds']):.1f} s ({float(s['seconds']) / total:.0%})" for s in largest
        )
        lines.append(f"largest stages: {shares}")
    lines.append(verdict(runs))
    return "\n".join(lines)


def verdict(runs: list[dict]) -> str:
    loads = [
        (float(r.get("load_before", 0.0)), float(r.get("load_after", 0.0)), int(r.get("cores", 1)))
        for r in runs
    ]
    text = "; ".join(f"load {b:.2f} before, {a:.2f} after on {c} cores" for b, a, c in loads)
    cpus = sorted({str(r["cpu"]) for r in runs if r.get("cpu")})
    text += f" ({', '.join(cpus)})" if cpus else ""
    # Only the first command's starting load tells how busy the machine was: each later command (make demo's
    # second `dvc repro`) starts under the load the demo's own training left in the 1-minute average.
    busy = [b for b, _, c in loads[:1] if b > c / 2]
    failed = [r.get("command", "?") for r in runs if r.get("exit_code", 0) != 0]
    problems = [f"load before above half the cores ({', '.join(f'{b:.2f}' for b in busy)})"] if busy else []
    problems += [f"failed: {command}" for command in failed]
    state = "valid for the README" if not problems else "NOT valid for the README: " + "; ".join(problems)
    return f"{text}\n{state}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="action", required=True)
    running = commands.add_parser("run", help="run a command (dvc repro ...) and record its stage times")
    running.add_argument("--out", type=Path, default=DEFAULT_OUT)
    running.add_argument("--append", action="store_true", help="add to the runs already in --out")
    running.add_argument(
        "--make-started",
        type=float,
        help="when make began (seconds since the epoch): record make's wall time",
    )
    running.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    showing = commands.add_parser("show", help="print the table of a recorded demo")
    showing.add_argument("path", type=Path, nargs="?", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.action == "show":
        print(table(load_runs(args.path)))
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        return _bad("demo_times run: give the command after --, e.g. `-- dvc repro`")
    return run(command, args.out, args.append, args.make_started)


if __name__ == "__main__":
    raise SystemExit(main())
