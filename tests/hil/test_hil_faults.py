"""Every injected fault ends, within the configured timeouts, in a retry that succeeds on another board or in a
clear failure naming the board(s); a failed job writes no record at all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.errors import HilError
from hil_runner.farm.local import LocalFarm
from hil_runner.job import JobConfig, load_eval_set, run_job
from hil_runner.protocol.host import Timeouts

TIMEOUTS = Timeouts(sync_byte=1.0, sync=0.5, sys_info=0.5, network_info=3.0, run_ack=1.0, input_ack=2.0, result=2.0,
                    layer_tensor=0.5, settle=0.05)  # fmt: skip
CONFIG = JobConfig(
    profile="b-u585i-iot02a", latency_repeats=3, attempts=2, progress=False, exchange_timeouts=TIMEOUTS
)
# Worst case per failed board: connect + one exchange timeout + flash of the next board; generous for loaded CI.
BOUND_S = 30.0


def _fleet(vboard_factory, tmp_path: Path, faults: list[list[str] | None]) -> LocalFarm:
    boards = []
    for number, fault in enumerate(faults):
        slot = tmp_path / f"slot{number}.tflite"
        vb = vboard_factory(slot=slot, faults=fault)
        boards.append(Board(name=f"vb{number}", profile=get_profile("b-u585i-iot02a"), port=vb.descriptor,
                            flash="none", virtual=True, slot=slot))  # fmt: skip
    return LocalFarm(boards, lock_dir=tmp_path / "locks", wait_timeout=5.0)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("drop=1", r"operator report: expected a valid respMsg|operator report: expected a 'op' message"),
        ("garble=1", r"header 0x7f: expected a chunk length"),
        ("stop=2", r"timed out after .* waiting for board vb0: operator report"),
        ("reset=1", r"sync byte 0xAA"),
        ("version=4.0", r"protocol version 4.0 is not supported"),
        ("wrong_reqid=1", r"expected reqid \d+, got \d+"),
        ("stray=1", r"expected a chunk length|expected a full 32-byte chunk"),
        ("error=1", r"S_ERROR \(E_INVALID_STATE\)"),
    ],
)
def test_fault_on_first_board_retries_on_second(
    vboard_factory, tiny_model, patch_store, tmp_path, fault, message
):
    farm = _fleet(vboard_factory, tmp_path, [[fault], None])
    out = tmp_path / "record.json"
    started = time.monotonic()
    record = run_job(tiny_model, load_eval_set(patch_store, "test"), farm, CONFIG, out)
    assert time.monotonic() - started < BOUND_S
    assert record["board"]["name"] == "vb1" and record["source"] == "virtual"
    [failed] = record["failed_attempts"]
    assert failed["board"] == "vb0"
    import re

    assert re.search(message, failed["error"]), failed["error"]
    assert json.loads(out.read_text())["metrics"]["top1_agreement"] == 1.0
    assert not list(tmp_path.glob(".record.json.*"))  # no temporary leftovers


def test_every_board_failing_names_them_all_and_writes_nothing(
    vboard_factory, tiny_model, patch_store, tmp_path
):
    farm = _fleet(vboard_factory, tmp_path, [["stop=1"], ["garble=1"]])
    out = tmp_path / "record.json"
    started = time.monotonic()
    with pytest.raises(HilError) as raised:
        run_job(tiny_model, load_eval_set(patch_store, "test"), farm, CONFIG, out)
    assert time.monotonic() - started < BOUND_S
    text = str(raised.value)
    assert "board vb0" in text and "board vb1" in text and "failed on 2 board(s)" in text
    assert not out.exists() and not list(tmp_path.glob(".record.json.*"))


def test_latency_noise_is_reported_not_hidden(vboard_factory, tiny_model, patch_store, tmp_path):
    farm = _fleet(vboard_factory, tmp_path, [["noise=0.05"]])
    config = JobConfig(profile="b-u585i-iot02a", latency_repeats=15, attempts=1, progress=False,
                       exchange_timeouts=TIMEOUTS)  # fmt: skip
    record = run_job(tiny_model, load_eval_set(patch_store, "test"), farm, config, tmp_path / "r.json")
    latency = record["latency"]
    assert latency["std_ms"] > 0 and latency["min_ms"] < latency["median_ms"] < latency["max_ms"]
    assert latency["source"] == "virtual"


def test_slow_board_beyond_the_timeout_fails_clearly(vboard_factory, tiny_model, patch_store, tmp_path):
    farm = _fleet(vboard_factory, tmp_path, [["delay=1.5"]])
    config = JobConfig(profile="b-u585i-iot02a", latency_repeats=1, attempts=1, progress=False,
                       exchange_timeouts=TIMEOUTS)  # fmt: skip
    with pytest.raises(HilError, match=r"board vb0: .*timed out"):
        run_job(tiny_model, load_eval_set(patch_store, "test"), farm, config, tmp_path / "r.json")
