"""Cross-check: the greedy planner against the tflite-micro package's own arena figure (RecordingMicroAllocator).

The package runs in a subprocess because it can abort on some graphs; it is a check, not the source.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from aed.footprint import load_graph
from aed.footprint.planner import plan_greedy

SCRIPT = """
import sys, numpy as np
from tflite_micro import runtime
interpreter = runtime.Interpreter.from_file(sys.argv[1], arena_size=8 * 1024 * 1024)
detail = interpreter.get_input_details(0)
interpreter.set_input(np.zeros(detail["shape"], detail["dtype"]), 0)
interpreter.invoke()
interpreter.print_allocations()
"""


def tflm_arena_head(model: Path) -> int | None:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model)], capture_output=True, text=True, timeout=300, check=False
    )
    match = re.search(r"Arena allocation head (\d+) bytes", completed.stdout + completed.stderr)
    if completed.returncode < 0 or match is None:
        return None  # aborted or printed nothing: no figure to compare
    return int(match.group(1))


@pytest.mark.parametrize("fixture", ["tiny_int8", "yamnet256_int8"])
def test_greedy_matches_tflm(fixture: str, request) -> None:
    model = request.getfixturevalue(fixture)
    head = tflm_arena_head(model)
    if head is None:
        pytest.skip(f"tflite-micro gave no arena figure for {model.name} (it aborts on some graphs)")
    assert plan_greedy(load_graph(model)).head == head
