"""The in-step proof of a TFLM deployment (aed.footprint.tflm): the planned model written, both arenas measured,
the planned model run at exactly its arena on the evaluation patches bit-exact with the unplanned model, and one
alignment step less failing to allocate. Verified with TFLM's reference kernels, not CMSIS-NN (see tflm.py).

Apart from tflm.py so that the virtual board, which only runs TFLM, does not depend on the quantization code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aed.footprint.planner import ALIGNMENT
from aed.footprint.tflm import (
    KERNELS,
    OK,
    VERIFIED_WITH,
    Arena,
    Prober,
    embed_offline_plan,
    input_quantization,
    offline_offsets,
    run_outputs,
    smallest_arena,
    tflm_version,
)

PROOF_CHUNK = (
    128  # patches per proof task: building the two interpreters is negligible, the work still spreads
)


# -- the proof ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProofTask:
    planned: bytes
    unplanned: bytes
    planned_arena: int
    unplanned_arena: int
    first: int  # index of inputs[0] among all evaluated inputs
    inputs: np.ndarray


def compare_chunk(task: ProofTask) -> list[int]:
    """Indices (global) of the inputs whose planned output differs in any bit from the unplanned model's."""
    planned = run_outputs(task.planned, task.planned_arena, task.inputs)
    unplanned = run_outputs(task.unplanned, task.unplanned_arena, task.inputs)
    differ = np.flatnonzero((planned != unplanned).any(axis=1)) if len(planned) else []
    return [task.first + int(i) for i in differ]


def prove_bit_exact(
    planned: bytes, unplanned: bytes, arenas: tuple[int, int], inputs: np.ndarray, jobs: int
) -> dict[str, Any]:
    """Run every input through the planned model at exactly its reported arena and through the unplanned model;
    the outputs must agree bit for bit. Chunks run in worker processes (aed.workers)."""
    from aed.workers import ordered_map

    tasks = [
        ProofTask(planned, unplanned, arenas[0], arenas[1], start, inputs[start : start + PROOF_CHUNK])
        for start in range(0, len(inputs), PROOF_CHUNK)
    ]
    differing: list[int] = []
    for result in ordered_map(
        compare_chunk, tasks, jobs, lambda t: f"TFLM proof, inputs {t.first}..{t.first + len(t.inputs) - 1}"
    ):
        differing += result
    return {
        "inputs": int(len(inputs)),
        "differing_outputs": len(differing),
        "first_differing": differing[:10],
        "bit_exact": not differing and len(inputs) > 0,
    }


def prove_tight(planned: bytes, arena: int) -> dict[str, Any]:
    """The reported arena allocates and one alignment step less does not."""
    smaller = arena - ALIGNMENT
    with Prober(planned) as prober:
        at, below = prober.outcome(arena), prober.outcome(smaller)
    return {
        "allocates_at_bytes": arena,
        "allocates": at == OK,
        "one_step_smaller_bytes": smaller,
        "one_step_smaller_fails": below != OK,
        "one_step_smaller_outcome": below,
        "tight": at == OK and below != OK,
    }


# -- one deployment: planned model, arena, header, proof ---------------------------------------------------------
def deploy(model: Path, out_model: Path, patches: np.ndarray, jobs: int) -> dict[str, Any]:
    """Write `out_model` (the int8 .tflite `model` with its improved plan embedded), measure its arena, prove it
    on `patches` (float, quantized here as the firmware does) and return the record's `tflm` section."""
    from aed.footprint.estimator import load_graph, plan_activations
    from aed.quantize import quantize_input
    from aed.records import sha256_file

    graph = load_graph(model)
    plans = plan_activations(graph)  # the improved plan is replayed first (greedy again if that failed)
    embed_offline_plan(model, out_model, offline_offsets(graph, plans.improved))
    planned, unplanned = Path(out_model).read_bytes(), Path(model).read_bytes()
    arena, unplanned_arena = _smallest_arenas(planned, unplanned, jobs)
    shape, scale, zero_point = input_quantization(unplanned)
    patches = np.asarray(patches, dtype=np.float32)
    if int(np.prod(patches.shape[1:])) != int(np.prod(shape)):
        raise ValueError(
            f"{model}: the model input is {tuple(shape)} but the patch store's patches are {patches.shape[1:]}; "
            "the TFLM proof needs the patches the model was trained on"
        )
    inputs = quantize_input(patches.reshape(-1, *shape), scale, zero_point)
    bit_exact = prove_bit_exact(planned, unplanned, (arena.bytes, unplanned_arena.bytes), inputs, jobs)
    tight = prove_tight(planned, arena.bytes)
    return {
        "source": "tflm",
        "runtime": "tflm",
        "tflite_micro_version": tflm_version(),
        "kernels": KERNELS,
        "model_file": Path(out_model).name,
        "model_sha256": sha256_file(out_model),
        "plan": {
            "planner": "improved" if plans.improved is not plans.greedy else "greedy",
            "head_bytes": plans.improved.head,
            "greedy_head_bytes": plans.greedy.head,
            "replay": plans.replay_status,
            "offline_tensors": sum(1 for _ in plans.improved.buffers),
        },
        "arena": arena.to_dict(),
        "unplanned_arena": unplanned_arena.to_dict(),
        "arena_saving_pct": round(100.0 * (1 - arena.bytes / unplanned_arena.bytes), 2),
        "proof": {
            "passed": bool(bit_exact["bit_exact"] and tight["tight"]),
            "bit_exact": bit_exact,
            "tight": tight,
        },
        "verified_with": VERIFIED_WITH,
    }


def _smallest_arenas(planned: bytes, unplanned: bytes, jobs: int) -> tuple[Arena, Arena]:
    """Both arenas measured at once, in worker processes unless jobs is 1 (a crash there stops the step cleanly)."""
    from aed.workers import ordered_map

    names = {id(planned): "planned model", id(unplanned): "unplanned model"}
    measured = list(
        ordered_map(smallest_arena, [planned, unplanned], jobs, lambda m: f"TFLM arena of the {names[id(m)]}")
    )
    return measured[0], measured[1]


def arena_header(name: str, tflm: dict[str, Any]) -> str:
    """The C header the firmware includes to size its tensor arena."""
    guard = "".join(ch if ch.isalnum() else "_" for ch in name).upper() + "_TFLM_ARENA_H"
    macro = "".join(ch if ch.isalnum() else "_" for ch in name).upper()
    arena = tflm["arena"]
    proof = "passed" if tflm["proof"]["passed"] else "FAILED"
    return f"""/* Generated by `aed convert` (convert.runtime tflm): tensor arena of {tflm["model_file"]}
 * (sha256 {tflm["model_sha256"]}), whose memory plan is embedded as OfflineMemoryAllocation metadata.
 * Measured with tflite-micro {tflm["tflite_micro_version"]}: plan head {arena["head_bytes"]} B + persistent and
 * scratch tail {arena["tail_bytes"]} B; the model does not allocate in {arena["arena_bytes"] - ALIGNMENT} B.
 * In-step proof: {proof} ({tflm["proof"]["bit_exact"]["inputs"]} inputs bit-exact with the unplanned model).
 * Verified with TFLM's reference kernels only, NOT with CMSIS-NN: check the plan with the kernels you ship.
 * Declare the arena 16-byte aligned: alignas(16) uint8_t tensor_arena[{macro}_TFLM_ARENA_BYTES]; */
#ifndef {guard}
#define {guard}

#define {macro}_TFLM_ARENA_BYTES {arena["arena_bytes"]}u
#define {macro}_TFLM_ARENA_ALIGNMENT {ALIGNMENT}u

#endif /* {guard} */
"""
