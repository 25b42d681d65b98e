"""The one way bench/ scripts time things: interleaved runs, a warm-up, medians, and the machine's load.

Why: a figure measured while other jobs load the machine is not a figure (issue 20: "6x" on a loaded machine was
1.0-1.7x on a quiet one, because load slowed the two sides differently). So every comparison here

- runs its cases interleaved (A B A B ..., one round after another), so a change in load falls on every case;
- runs each case `warmup` times untimed first (imports, numba compilation, page cache), then `repeats` times timed;
- prints min, median and max of each case and the ratio of medians to the first case (the reference);
- first waits (at most SETTLE_S, `--settle-s`) for the 1-minute load average to fall within the limit: the
  average keeps a finished run's load for minutes, so a script's second comparison would otherwise start above
  the limit for the script's own earlier work (bench/split_jobs.py's large case did, 2026-11-30);
- records the 1-minute load average and the core count before and after, and says "valid for the README" only
  with at least MIN_REPEATS repeats, a warm-up, and a machine at most half loaded (load <= cores / 2) both before
  and after.

The load average after a run includes the benchmark's own processes. A case says how many processes it keeps
busy (`Case.processes`); the harness takes their expected share of the 1-minute load average out of the "after"
figure (others = after - own busy processes x (1 - e^(-elapsed / 60 s)), the kernel's damping), so that a
benchmark using both cores of a quiet 2-core machine is not refused for its own load. Both the raw and the
corrected figures are printed and written.

Adopting it in a script (a new bench/ script takes three lines):

    from harness import Case, add_arguments, compare          # bench/ is the script's directory
    add_arguments(parser)                                      # --repeats, --warmup, --json
    result = compare([Case("reference", run_reference), Case("ours", run_ours, processes=2)], **options(args))
    print(result.report()); result.write_json(args.json)      # write_json(None) does nothing

A case's callable takes no argument; what it returns from its last timed run is kept in `Result.outputs` (for
parity checks on the figures that were timed). A case that times itself (work in another process) returns
`Timed(seconds, value)`. The clock and the load probe can be replaced (tests pass fakes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_REPEATS = 5  # the floor for a figure that may go into the README
SETTLE_S = 300.0  # scripts wait at most this long for the load to fall within the limit before measuring
LOAD_WINDOW_S = 60.0  # the 1-minute load average's time constant (Linux: exponential damping over 60 s)


@dataclass(frozen=True)
class Case:
    """One side of a comparison: a name, a callable doing the work once, and how many processes it keeps busy."""

    name: str
    run: Callable[[], Any]
    processes: int = 1


@dataclass(frozen=True)
class Timed:
    """What a case returns when it times its work itself: work done in another process, whose start-up or
    result transfer is not part of the figure. `value` is kept as the case's output."""

    seconds: float
    value: Any = None


@dataclass(frozen=True)
class Load:
    """The machine's 1-minute load average and the cores this process may use."""

    average: float
    cores: int

    @property
    def limit(self) -> float:
        return self.cores / 2


def cpu_model() -> str:
    """The processor's name (Linux /proc/cpuinfo; else the platform's): figures compare only on one machine."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_load() -> Load:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Load(average=os.getloadavg()[0], cores=cores)


@dataclass(frozen=True)
class Timings:
    name: str
    seconds: tuple[float, ...]
    processes: int = 1

    @property
    def minimum(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def maximum(self) -> float:
        return max(self.seconds)


@dataclass
class Result:
    """The timings of every case, the machine's load around them, and whether the figures may be published."""

    timings: list[Timings]
    before: Load
    after: Load
    elapsed_s: float
    warmup: int
    outputs: dict[str, Any] = field(default_factory=dict, repr=False)
    command: str = field(default_factory=lambda: shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]))
    cpu: str = field(default_factory=cpu_model)

    def __getitem__(self, name: str) -> Timings:
        for timing in self.timings:
            if timing.name == name:
                return timing
        raise KeyError(name)

    def ratio(self, name: str) -> float:
        """Median of the reference (first case) / median of `name`: how many times faster `name` is."""
        median = self[name].median
        return self.timings[0].median / median if median > 0 else math.inf

    @property
    def own_load(self) -> float:
        """The expected share of this benchmark's processes in the 1-minute load average at its end."""
        busy = sum(t.processes * sum(t.seconds) for t in self.timings)
        parallel = busy / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return parallel * (1.0 - math.exp(-self.elapsed_s / LOAD_WINDOW_S))

    @property
    def others_after(self) -> float:
        """The load average after the run, less this benchmark's own expected share."""
        return max(0.0, self.after.average - self.own_load)

    def problems(self) -> list[str]:
        """Why the figures may not go into the README (empty: they may)."""
        found = []
        fewest = min(len(t.seconds) for t in self.timings)
        if fewest < MIN_REPEATS:
            found.append(f"{fewest} repeats (at least {MIN_REPEATS})")
        if self.warmup < 1:
            found.append("no warm-up run")
        if self.before.average > self.before.limit:
            found.append(
                f"load {self.before.average:.2f} before > {self.before.limit:g} (half of {self.before.cores} cores)"
            )
        if self.others_after > self.after.limit:
            found.append(
                f"load {self.others_after:.2f} from other processes after > {self.after.limit:g} "
                f"(half of {self.after.cores} cores)"
            )
        return found

    @property
    def valid(self) -> bool:
        return not self.problems()

    def verdict(self) -> str:
        problems = self.problems()
        return "valid for the README" if not problems else "NOT valid for the README: " + "; ".join(problems)

    def report(self, unit: str = "s") -> str:
        """A table: min / median / max per case, the ratio of medians to the reference, the load, the verdict."""
        width = max(len(t.name) for t in self.timings)
        lines = [f"{'case':<{width}}  {'n':>3} {'min':>9} {'median':>9} {'max':>9}  ratio of medians"]
        for timing in self.timings:
            ratio = "reference" if timing is self.timings[0] else f"{self.ratio(timing.name):.2f}x"
            lines.append(
                f"{timing.name:<{width}}  {len(timing.seconds):>3} {timing.minimum:>8.3f}{unit} "
                f"{timing.median:>8.3f}{unit} {timing.maximum:>8.3f}{unit}  {ratio}"
            )
        lines.append(
            f"load average {self.before.average:.2f} before, {self.after.average:.2f} after "
            f"({self.others_after:.2f} from other processes), {self.before.cores} cores of {self.cpu}; "
            f"{self.warmup} warm-up + interleaved runs"
        )
        lines.append(f"{self.verdict()}  [{self.command}]")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "command": self.command,
            "cpu": self.cpu,
            "valid": self.valid,
            "problems": self.problems(),
            "warmup": self.warmup,
            "elapsed_s": round(self.elapsed_s, 3),
            "load_before": self.before.average,
            "load_after": self.after.average,
            "load_after_others": round(self.others_after, 3),
            "cores_before": self.before.cores,
            "cores_after": self.after.cores,
            "cases": [
                {
                    "name": t.name,
                    "processes": t.processes,
                    "seconds": [round(s, 6) for s in t.seconds],
                    "min_s": round(t.minimum, 6),
                    "median_s": round(t.median, 6),
                    "max_s": round(t.maximum, 6),
                    "ratio_of_medians": round(self.ratio(t.name), 4),
                }
                for t in self.timings
            ],
        }

    def write_json(self, path: Path | None, extra: dict | None = None) -> None:
        """Write the figures (and `extra`, e.g. a breakdown) as JSON; None writes nothing."""
        if path is None:
            return
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({**self.to_dict(), **(extra or {})}, indent=2) + "\n")


def interleaved(names: Sequence[str], rounds: int) -> list[str]:
    """The run order: every case once per round, in the given order (A B A B ... for two cases)."""
    return [name for _ in range(rounds) for name in names]


def settle(
    load: Callable[[], Load] = machine_load,
    timeout_s: float = SETTLE_S,
    sleep: Callable[[float], None] = time.sleep,
    poll_s: float = 5.0,
    progress: Callable[[str], None] | None = None,
) -> Load:
    """Wait, at most `timeout_s`, until the 1-minute load average is within the limit; returns the last reading.
    Why: the average keeps a finished run's load for minutes, so a script's second comparison (or a bench started
    right after a build) would start above the limit and be refused for the script's own earlier work."""
    current, waited = load(), 0.0
    if current.average > current.limit and timeout_s > 0 and progress:
        progress(f"  waiting up to {timeout_s:g} s for the load average ({current.average:.2f}) to fall to "
                 f"{current.limit:g}")  # fmt: skip
    while current.average > current.limit and waited < timeout_s:
        sleep(poll_s)
        waited += poll_s
        current = load()
    return current


def compare(
    cases: Sequence[Case],
    repeats: int = MIN_REPEATS,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    load: Callable[[], Load] = machine_load,
    progress: Callable[[str], None] | None = None,
    settle_s: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """Run `warmup` untimed rounds, then `repeats` timed rounds, each round running every case once in order.
    The first case is the reference of the ratios. `progress`, if given, receives one line per timed run. With
    `settle_s` > 0 the run first waits that long at most for a load within the limit (settle); the scripts'
    options() ask for SETTLE_S. The clock, the load probe and `sleep` can be replaced (tests pass fakes)."""
    names = [case.name for case in cases]
    if not cases or len(set(names)) != len(names):
        raise ValueError(f"cases: expected distinct names, got {names}")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats {repeats} must be >= 1 and warmup {warmup} >= 0")
    by_name = {case.name: case for case in cases}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, Any] = {}
    before = settle(load, settle_s, sleep, progress=progress)  # settle_s 0: one reading, no wait
    started = clock()
    for name in interleaved(names, warmup):
        outputs[name] = _value(by_name[name].run())
    for name in interleaved(names, repeats):
        tick = clock()
        returned = by_name[name].run()
        took = clock() - tick
        seconds[name].append(returned.seconds if isinstance(returned, Timed) else took)
        outputs[name] = _value(returned)
        if progress:
            progress(f"  {name}: run {len(seconds[name])}/{repeats} {seconds[name][-1]:.3f} s")
    elapsed = clock() - started
    after = load()
    timings = [Timings(case.name, tuple(seconds[case.name]), case.processes) for case in cases]
    return Result(timings, before, after, elapsed, warmup, outputs)


def _value(returned: Any) -> Any:
    return returned.value if isinstance(returned, Timed) else returned


def add_arguments(parser: argparse.ArgumentParser, repeats: int = MIN_REPEATS, warmup: int = 1) -> None:
    """--repeats, --warmup and --json, the same in every bench/ script."""
    parser.add_argument(
        "--repeats",
        type=int,
        default=repeats,
        help=f"timed runs of each case (default {repeats}; fewer than {MIN_REPEATS}: not valid for the README)",
    )
    parser.add_argument("--warmup", type=int, default=warmup, help=f"untimed runs first (default {warmup})")
    parser.add_argument("--json", type=Path, help="also write the figures, load and verdict here")
    parser.add_argument(
        "--settle-s",
        type=float,
        default=SETTLE_S,
        help=f"wait at most this long for the load to fall to half the cores before measuring (default {SETTLE_S:g})",
    )


def options(args: argparse.Namespace) -> dict:
    """compare()'s keyword arguments from add_arguments' options; a bad count exits 2 with one line."""
    if args.repeats < 1:
        stop(f"--repeats {args.repeats}: must be >= 1")
    if args.warmup < 0:
        stop(f"--warmup {args.warmup}: must be >= 0")
    if not args.settle_s >= 0:
        stop(f"--settle-s {args.settle_s}: must be >= 0")
    return {"repeats": args.repeats, "warmup": args.warmup, "settle_s": args.settle_s}


def stop(message: str) -> None:
    """Bad input to a bench script: one line on stderr, exit 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def run_script(main: Callable[[], int | None]) -> None:
    """Run a bench script's main: a missing or unusable input (a file, a model, a patch store: OSError or
    ValueError, whose messages name it) is one line and exit 2, not a traceback; Ctrl-C exits 130 quietly."""
    try:
        code = main()
    except (OSError, ValueError) as error:
        stop(f"{Path(sys.argv[0]).name}: {error}")
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
