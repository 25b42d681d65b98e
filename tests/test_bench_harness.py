"""bench/harness.py: run order, statistics and the validity rule, with fake work, a fake clock and a fake load
(no timings are asserted)."""

from __future__ import annotations

import argparse
import json
import math

import pytest

from bench.harness import MIN_REPEATS, Case, Load, add_arguments, compare, interleaved, options


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
    result.write_json(None)  # no path: nothing written, no error


def test_bad_cases_and_counts_are_refused(capsys):
    with pytest.raises(ValueError, match="distinct names"):
        compare([Case("A", lambda: None), Case("A", lambda: None)])
    with pytest.raises(ValueError, match="distinct names"):
        compare([])
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options(parser.parse_args([])) == {"repeats": MIN_REPEATS, "warmup": 1}
    with pytest.raises(SystemExit) as stopped:
        options(parser.parse_args(["--repeats", "0"]))
    assert stopped.value.code == 2
    assert "--repeats 0 must be >= 1" in capsys.readouterr().err
