"""bench/harness.py: run order, statistics and the validity rule, with fake work, a fake clock and a fake load
(no timings are asserted)."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pytest

# bench/ scripts run as scripts (`python bench/x.py`) and import the harness as `harness`: so do the tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from demo_times import main as demo_times_main  # noqa: E402
from demo_times import stage_times  # noqa: E402
from harness import (  # noqa: E402
    MIN_REPEATS,
    SETTLE_S,
    Case,
    Load,
    add_arguments,
    compare,
    cpu_model,
    interleaved,
    options,
    settle,
)


class FakeClock:
    """Time moves only when fake work says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def work(clock: FakeClock, log: list[str], name: str, durations: list[float]):
    """A case that logs each run and takes the next of `durations` (fake seconds); returns its run number."""
    runs = iter(durations)
    count = iter(range(1, 1000))

    def run() -> int:
        log.append(name)
        clock.now += next(runs)
        return next(count)

    return run


def loads(*values: Load):
    sequence = iter(values)
    return lambda: next(sequence)


QUIET = Load(0.3, 2)


def test_runs_are_interleaved_after_an_untimed_warm_up():
    clock, log = FakeClock(), []
    cases = [
        Case("A", work(clock, log, "A", [50.0] + [1.0] * 5)),
        Case("B", work(clock, log, "B", [70.0] + [2.0] * 5)),
    ]
    result = compare(cases, repeats=5, warmup=1, clock=clock, load=loads(QUIET, QUIET))
    assert log == ["A", "B"] * 6
    # the warm-up's 50 s and 70 s are not among the timings
    assert result["A"].seconds == (1.0,) * 5 and result["B"].seconds == (2.0,) * 5
    assert interleaved(["A", "B", "C"], 2) == ["A", "B", "C", "A", "B", "C"]


def test_min_median_max_and_the_ratio_of_medians():
    clock, log = FakeClock(), []
    cases = [
        Case("reference", work(clock, log, "r", [0, 4.0, 9.0, 3.0, 5.0, 100.0])),
        Case("ours", work(clock, log, "o", [0, 1.0, 2.0, 1.5, 0.5, 8.0])),
    ]
    result = compare(cases, repeats=5, warmup=1, clock=clock, load=loads(QUIET, QUIET))
    ref, ours = result["reference"], result["ours"]
    assert (ref.minimum, ref.median, ref.maximum) == (3.0, 5.0, 100.0)
    assert (ours.minimum, ours.median, ours.maximum) == (0.5, 1.5, 8.0)
    assert result.ratio("ours") == pytest.approx(5.0 / 1.5)  # medians, not means (an outlier does not count)
    assert result.ratio("reference") == 1.0
    assert result.outputs == {"reference": 6, "ours": 6}  # the last timed run's return value
    table = result.report()
    assert "3.33x" in table and "reference" in table and "5.000s" in table


def test_quiet_machine_with_enough_repeats_is_valid():
    clock = FakeClock()
    result = compare([Case("A", work(clock, [], "A", [0.1] * 6))], clock=clock, load=loads(QUIET, QUIET))
    assert result.valid and result.problems() == []
    assert "valid for the README" in result.report() and "NOT" not in result.report()


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        (Load(1.2, 2), QUIET, "load 1.20 before > 1"),  # more than half of 2 cores
        (QUIET, Load(2.5, 4), "after > 2"),
        (Load(4.1, 8), QUIET, None),  # 4.1 <= 8 / 2 would be valid; 4.1 > 4 is not
    ],
)
def test_load_above_half_the_cores_is_not_valid(before, after, reason):
    clock = FakeClock()
    result = compare([Case("A", work(clock, [], "A", [0.1] * 6))], clock=clock, load=loads(before, after))
    assert not result.valid
    assert "NOT valid for the README" in result.report()
    if reason:
        assert any(reason in problem for problem in result.problems())


def test_load_exactly_half_the_cores_is_valid():
    clock = FakeClock()
    result = compare(
        [Case("A", work(clock, [], "A", [0.1] * 6))], clock=clock, load=loads(Load(1.0, 2), Load(1.0, 2))
    )
    assert result.valid


def test_too_few_repeats_or_no_warm_up_is_not_valid():
    clock = FakeClock()
    few = compare(
        [Case("A", work(clock, [], "A", [0.1] * 5))], repeats=4, clock=clock, load=loads(QUIET, QUIET)
    )
    assert not few.valid and f"4 repeats (at least {MIN_REPEATS})" in few.problems()
    cold = compare(
        [Case("A", work(clock, [], "A", [0.1] * 5))], warmup=0, clock=clock, load=loads(QUIET, QUIET)
    )
    assert not cold.valid and "no warm-up run" in cold.problems()


def test_own_processes_are_taken_out_of_the_load_after():
    """Two processes kept busy for the whole minute raise the load average by 2 x (1 - 1/e) by themselves."""
    clock = FakeClock()
    cases = [Case("ours", work(clock, [], "o", [0.0] + [12.0] * 5), processes=2)]
    own = 2 * (1 - math.exp(-1.0))
    result = compare(cases, clock=clock, load=loads(QUIET, Load(own + 0.6, 2)))
    assert result.own_load == pytest.approx(own)
    assert result.others_after == pytest.approx(0.6)
    assert result.valid
    # the same raw load after from a single-process benchmark means someone else loaded the machine
    single = compare(
        [Case("ours", work(clock, [], "o", [0.0] + [12.0] * 5))],
        clock=clock,
        load=loads(QUIET, Load(own + 0.6, 2)),
    )
    assert not single.valid


def test_json_has_the_figures_the_load_and_the_verdict(tmp_path):
    clock = FakeClock()
    cases = [
        Case("A", work(clock, [], "a", [0, 2, 2, 2, 2, 2])),
        Case("B", work(clock, [], "b", [0, 1, 1, 1, 1, 1])),
    ]
    result = compare(cases, clock=clock, load=loads(Load(1.5, 2), QUIET))
    out = tmp_path / "figures" / "bench.json"
    result.write_json(out, {"floor_s": 0.5})
    saved = json.loads(out.read_text())
    assert saved["valid"] is False and saved["load_before"] == 1.5 and saved["cores_before"] == 2
    assert [case["median_s"] for case in saved["cases"]] == [2, 1]
    assert saved["cases"][1]["ratio_of_medians"] == 2.0
    assert saved["floor_s"] == 0.5 and saved["command"]
    # the processor too: figures compare only on one machine (this one's name, from /proc/cpuinfo on Linux)
    assert saved["cpu"] == cpu_model() and saved["cpu"] and saved["cpu"] != "unknown"
    assert f"cores of {saved['cpu']}" in result.report()
    result.write_json(None)  # no path: nothing written, no error


def test_bad_cases_and_counts_are_refused(capsys):
    with pytest.raises(ValueError, match="distinct names"):
        compare([Case("A", lambda: None), Case("A", lambda: None)])
    with pytest.raises(ValueError, match="distinct names"):
        compare([])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options(parser.parse_args([])) == {"repeats": MIN_REPEATS, "warmup": 1, "settle_s": SETTLE_S}
    with pytest.raises(SystemExit) as stopped:
        options(parser.parse_args(["--repeats", "0"]))
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == "--repeats 0: must be >= 1"
    with pytest.raises(SystemExit) as stopped:
        options(parser.parse_args(["--settle-s", "-1"]))
    assert stopped.value.code == 2 and "--settle-s -1.0: must be >= 0" in capsys.readouterr().err


def test_a_run_first_waits_for_the_load_its_own_earlier_work_left():
    """A script's second comparison starts under the 1-minute average of its first: it waits for the load to fall
    (or gives up after settle_s) and measures from the reading it waited for."""
    slept: list[float] = []
    falling = loads(Load(1.9, 2), Load(1.4, 2), Load(0.8, 2))
    assert settle(falling, timeout_s=60, sleep=slept.append, poll_s=5) == Load(0.8, 2)
    assert slept == [5, 5]
    slept.clear()
    assert settle(lambda: Load(1.9, 2), timeout_s=12, sleep=slept.append, poll_s=5) == Load(1.9, 2)
    assert slept == [5, 5, 5]  # gave up after the time-out

    clock, lines = FakeClock(), []
    cases = [Case("A", work(clock, [], "a", [1] * 6)), Case("B", work(clock, [], "b", [1] * 6))]
    sequence = iter([Load(1.9, 2), Load(0.4, 2), QUIET])  # busy, then settled before the runs; quiet after
    result = compare(
        cases,
        clock=clock,
        load=lambda: next(sequence),
        settle_s=30,
        progress=lines.append,
        sleep=slept.append,
    )
    assert result.before == Load(0.4, 2) and result.valid
    assert lines[0].startswith("  waiting up to 30 s for the load average (1.90) to fall to 1")


# -- bench/demo_times.py: the demo's stage table, from dvc's output lines with fake timestamps -------------------

DVC_OUTPUT = [
    (10.0, "Stage 'ingest' didn't change, skipping\n"),
    (10.5, "Running stage 'patch':\n"),
    (10.6, "> aed patch --manifest artifacts/validated.csv\n"),
    (13.0, "Updating lock file 'dvc.lock'\n"),
    (14.0, "Running stage 'train@yamnet_256':\n"),
    (90.0, "epoch 3/30 ...\n"),
    (120.0, "Stage 'convert@yamnet_256' is cached - skipping run, checking out outputs\n"),
    (121.5, "Running stage 'evaluate':\n"),
]


def test_stage_times_run_from_one_stage_line_to_the_next():
    stages = stage_times(DVC_OUTPUT, end=150.0)
    assert [(s["stage"], s["status"]) for s in stages] == [
        ("ingest", "unchanged"),
        ("patch", "ran"),
        ("train@yamnet_256", "ran"),
        ("convert@yamnet_256", "from run-cache"),
        ("evaluate", "ran"),
    ]
    assert [s["seconds"] for s in stages] == [0.5, 3.5, 106.0, 1.5, 28.5]
    assert stage_times([(1.0, "no stage here\n")], end=2.0) == []


def test_demo_table_gives_total_largest_stages_and_verdict(tmp_path, capsys):
    run = {"command": "dvc repro", "started": "t", "exit_code": 0, "wall_s": 145.0, "load_before": 0.4,
           "load_after": 1.9, "cores": 2, "stages": stage_times(DVC_OUTPUT, end=150.0)}  # fmt: skip
    path = tmp_path / "demo.json"
    path.write_text(json.dumps({"runs": [run]}))
    assert demo_times_main(["show", str(path)]) == 0
    table = capsys.readouterr().out
    assert "train@yamnet_256" in table and "106.0 s" in table
    assert "total 145.0 s" in table
    assert "largest stages: train@yamnet_256 106.0 s (73%), evaluate 28.5 s (20%), patch 3.5 s (2%)" in table
    assert "dvc before the first stage" in table and "5.0 s" in table  # 145 - 140 s inside stages
    assert "\nvalid for the README" in table  # load 0.4 before on 2 cores; the load after is the demo's own
    path.write_text(json.dumps({"runs": [{**run, "load_before": 1.5}]}))
    demo_times_main(["show", str(path)])
    assert "NOT valid for the README: load before above half the cores (1.50)" in capsys.readouterr().out
    # make demo's second command starts under the load its first one left: only the first start judges
    second = {**run, "command": "dvc repro", "load_before": 1.8}
    path.write_text(json.dumps({"runs": [run, second]}))
    demo_times_main(["show", str(path)])
    assert "\nvalid for the README" in capsys.readouterr().out
    path.write_text(json.dumps({"runs": [{**run, "load_before": 1.5}, second]}))
    demo_times_main(["show", str(path)])
    assert "NOT valid for the README: load before above half the cores (1.50)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "not found"), ("{", "not readable JSON"), ('{"runs": [{"stages": 3}]}', "expected {'runs'")],
)
def test_demo_table_bad_file_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "demo.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        demo_times_main(["show", str(path)])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert message in error and str(path) in error and len(error.strip().splitlines()) == 1


def test_demo_run_records_the_command_its_exit_code_and_appends(tmp_path, capsys):
    path = tmp_path / "timing" / "demo.json"
    script = "print(\"Running stage 'a':\"); print(\"Stage 'b' didn't change, skipping\")"
    assert demo_times_main(["run", "--out", str(path), "--", sys.executable, "-c", script]) == 0
    assert "Running stage 'a':" in capsys.readouterr().out  # the command's output passes through
    failing = ["--", sys.executable, "-c", "raise SystemExit(3)"]
    started = time.time() - 600  # make began ten minutes ago
    assert (
        demo_times_main(["run", "--out", str(path), "--append", "--make-started", str(started), *failing])
        == 3
    )
    runs = json.loads(path.read_text())["runs"]
    assert [r["exit_code"] for r in runs] == [0, 3]
    assert [s["stage"] for s in runs[0]["stages"]] == ["a", "b"]
    assert "make_wall_s" not in runs[0] and 600 <= runs[1]["make_wall_s"] < 900
    assert runs[0]["cpu"] == cpu_model()  # the machine the times belong to
    assert demo_times_main(["show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert "make demo: 6" in shown and "NOT valid for the README" in shown and "failed: " in shown
    assert f"cores ({cpu_model()})" in shown
    assert demo_times_main(["run", "--out", str(path), "--", str(tmp_path / "no-such-command")]) == 2


def test_a_bench_script_with_an_unusable_input_exits_2_with_one_line(capsys):
    from harness import run_script

    def missing_store() -> int:
        raise FileNotFoundError("/nope/index.csv: missing; is /nope a patch store written by `aed patch`?")

    def bad_value() -> int:
        raise ValueError("--fold 9: not a fold of the store")

    for main in (missing_store, bad_value):
        with pytest.raises(SystemExit) as stopped:
            run_script(main)
        assert stopped.value.code == 2
        error = capsys.readouterr().err
        assert len(error.strip().splitlines()) == 1 and ("/nope/index.csv" in error or "--fold 9" in error)
    with pytest.raises(SystemExit) as stopped:
        run_script(lambda: 3)
    assert stopped.value.code == 3

    def interrupted() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as stopped:
        run_script(interrupted)
    assert stopped.value.code == 130


def test_demo_times_reads_the_stage_lines_of_the_installed_dvc(tmp_path):
    """The parser follows dvc's real output: a stage that runs, then a second repro where it is unchanged."""
    import subprocess

    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n"
        "  first:\n    cmd: python -c \"open('a.txt', 'w').write('a')\"\n    outs: [a.txt]\n"
        "  second:\n    cmd: python -c \"open('b.txt', 'w').write(open('a.txt').read())\"\n"
        "    deps: [a.txt]\n    outs: [b.txt]\n"
    )
    out = tmp_path / "demo.json"
    for extra in ([], ["--append"]):
        code = subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parents[1] / "bench" / "demo_times.py"), "run",
             "--out", str(out), *extra, "--", "dvc", "repro"],
            cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert code.returncode == 0, code.stdout + code.stderr
    first, second = json.loads(out.read_text())["runs"]
    assert [(s["stage"], s["status"]) for s in first["stages"]] == [("first", "ran"), ("second", "ran")]
    assert [s["status"] for s in second["stages"]] == ["unchanged", "unchanged"]
    assert all(s["seconds"] > 0 for s in first["stages"])


def test_a_case_that_times_itself_gives_its_own_seconds():
    from harness import Timed

    clock = FakeClock()

    def elsewhere() -> Timed:
        clock.now += 5.0  # start-up and transfer, not part of the figure
        return Timed(0.25, "patches")

    result = compare([Case("A", elsewhere)], clock=clock, load=loads(QUIET, QUIET))
    assert result["A"].seconds == (0.25,) * 5 and result.outputs == {"A": "patches"}
