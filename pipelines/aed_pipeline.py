"""The Kubeflow pipeline: ingest -> validate -> patch, then per model train -> quantize -> evaluate, calibrate ->
evaluate_streaming, convert, export_firmware -> hil -> gate -> promote, the two models (YAMNet-256, YAMNet-1024) in
parallel branches.

Every task is a lightweight component over its step's task body, `components.<step>.task`, which calls
`components.<step>.run`: the same entry point as `aed <step>` and the dvc.yaml stages. This module only assembles
them. A task reads only its inputs and its image: a distilled model's
teacher (train.teacher) is the teacher's train output, wired into the student's train task (a teacher outside
models.names gets a train task of its own, no branch). The only pipeline parameter is `params`, the whole params.yaml as
JSON text (its default is the repository's params.yaml at compile time), so a run on a cluster is configured exactly
like a local `dvc repro`.

Promotion: `promote` runs inside `dsl.If(gate verdict)`, the verdict covering the stream check (hil_stream: a
held-out soundscape through the board, events against host detect's) and the streaming evaluation when
gate.require_stream is set, and, in addition, only after every task of every branch
has finished, so that a failure anywhere in the run (which stops the DAG) leaves the registry untouched. Every
model runs on a board before its gate: the int8 TFLite model on the profile's board (U5 by default), the QDQ ONNX
model on the N6 (`hil.profiles`).
"""

# No `from __future__ import annotations`: KFP reads the pipeline function's annotations as real types.
import copy
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines import glue
from pipelines.images import Images

PIPELINE_NAME = "aed-pipeline"
SHARED_STEPS = ("ingest", "validate", "patch")
MODEL_STEPS = (
    "train",
    "quantize",
    "evaluate",
    "calibrate",
    "convert",
    "export_firmware",
    "hil",
    "gate",
    "promote",
)
# The streaming evaluation task of a branch: its held-out soundscapes feed hil_stream, its record (in its
# `details` reports folder) is evidence for the gate and promote (gate.require_stream).
STREAMING_STEP, SOUNDSCAPES_OUTPUT, STREAMING_OUTPUT = "evaluate_streaming", "soundscapes", "details"
STEPS = SHARED_STEPS + MODEL_STEPS
# Tasks that run a step's second entry point: {task: (step, task body name)}. `aed evaluate --streaming` is the
# evaluate step's (components.evaluate.task.evaluate_streaming); it runs after calibrate in each model's branch.
# The stream check is the hil step's --stream path, in the DAG whenever hil is.
EXTRA_TASKS = {"evaluate_streaming": ("evaluate", "evaluate_streaming"), "hil_stream": ("hil", "hil_stream")}
# Code that only an extra task runs although its step's module names it: the hil step's --stream path (host
# detect with its scorers, event metrics) runs as the hil_stream task in the train image, so the hil image needs
# none of its packages (tests/containers/test_container_roles.py scans each role's imports accordingly).
TASK_ONLY_MODULES = {"hil_stream": ("hil_runner.stream", "aed.detection")}
COMPILED = Path(__file__).with_name("aed_pipeline.yaml")


@dataclass(frozen=True)
class TaskSettings:
    image: str  # the role image the task runs in (pipelines.images.ROLES): data | train | hil
    cpu: str
    memory: str
    retries: int = 0
    cache: bool = True


# The one table of the tasks: each step's role image (docker/role.Dockerfile builds one image per role, with only
# the packages of its steps: pipelines/images.py ROLE_ROOTS), its resources, retries and caching. A new step gets
# its row here; a test fails for a step without one and for a role whose image lacks a package the step imports.
# Caching: the data and model steps are deterministic functions of their inputs and params. hil asks a board,
# whose answer can change, and gate/promote read or write the outside world: never cached. Retries only where
# failures are transient (downloads, serial links, S3), never where a rerun would just fail again.
SETTINGS: dict[str, TaskSettings] = {
    "ingest": TaskSettings("data", "1", "2G", retries=2),
    "validate": TaskSettings("data", "2", "4G"),
    "patch": TaskSettings("data", "2", "4G"),
    "train": TaskSettings("train", "2", "12G"),  # train.jobs: 2 worker processes
    "quantize": TaskSettings("train", "2", "4G"),
    "evaluate": TaskSettings("train", "2", "4G"),
    "calibrate": TaskSettings("train", "2", "4G"),
    "evaluate_streaming": TaskSettings("train", "2", "4G"),
    "convert": TaskSettings("train", "1", "2G", retries=1),
    "export_firmware": TaskSettings("train", "500m", "1G"),
    "hil": TaskSettings("hil", "1", "2G", retries=2, cache=False),
    "hil_stream": TaskSettings("train", "1", "2G", retries=2, cache=False),  # TASK_ONLY_MODULES
    "gate": TaskSettings("hil", "500m", "1G", cache=False),
    "promote": TaskSettings("hil", "500m", "1G", retries=2, cache=False),
}


def step_image(images: Images, step: str) -> str:
    """The image of a step's tasks, from SETTINGS (one line naming the step when it has no row)."""
    if step not in SETTINGS:
        raise ValueError(
            f"pipelines/aed_pipeline.py SETTINGS: no row for step {step!r} (its role image, resources)"
        )
    return images.name(SETTINGS[step].image)


def task_suffix(model_name: str) -> str:
    """yamnet_256 -> yamnet-256: task and component names must be DNS-1123 labels on a cluster."""
    return model_name.replace("_", "-").lower()


def task_body(step: str) -> Callable:
    """The KFP task body of a step: `components.<step>.task.<step>` (KFP names the component after it), or of an
    extra task (EXTRA_TASKS)."""
    module, name = EXTRA_TASKS.get(step, (step, step))
    return getattr(importlib.import_module(f"components.{module}.task"), name)


def build_components(images: Images, models: list[str]) -> dict[str, Any]:
    """{"ingest": component, ..., "train/yamnet_256": component, ...}.

    Per-model steps get one component per model (`train-yamnet-256`), so task names, logs and artifact folders
    say which model they belong to instead of KFP's `train-2`.
    """
    from kfp import dsl

    built: dict[str, Any] = {}
    for step in (*STEPS, *EXTRA_TASKS):
        function = task_body(step)
        component = dsl.component(base_image=step_image(images, step), install_kfp_package=False)(function)
        if step in SHARED_STEPS:
            built[step] = component
            continue
        for model in models:
            named = copy.copy(component)
            named.component_spec = copy.deepcopy(component.component_spec)
            named.component_spec.name = f"{task_suffix(step)}-{task_suffix(model)}"
            named.name = named.component_spec.name
            built[f"{step}/{model}"] = named
    return built


def _configure(task: Any, step: str, model: str | None = None, retries: bool = True) -> Any:
    settings = SETTINGS[step]
    task.set_cpu_request(settings.cpu).set_cpu_limit(settings.cpu)
    task.set_memory_request(settings.memory).set_memory_limit(settings.memory)
    task.set_caching_options(enable_caching=settings.cache)
    if settings.retries and retries:
        task.set_retry(num_retries=settings.retries, backoff_duration="30s", backoff_factor=2.0)
    task.set_display_name(f"{step} {model}" if model else step)
    return task


def train_order(models: list[str], teachers: dict[str, str]) -> list[str]:
    """Every model to train, each after its teacher: `models` and the teachers they name, in turn."""
    order: list[str] = []

    def visit(model: str, chain: list[str]) -> None:
        if model in chain:
            raise ValueError(f"train.teacher: {' -> '.join([*chain, model])} is a cycle")
        if model in order:
            return
        if model in teachers:
            visit(teachers[model], [*chain, model])
        order.append(model)

    for model in models:
        visit(model, [])
    return order


def _train_tasks(
    c: dict[str, Any], params: Any, order: list[str], teachers: dict[str, str], patches: Any, retries: bool
) -> dict[str, Any]:
    """One train task per model of `order`; a student's `teacher` input is its teacher's `model` output."""
    trained: dict[str, Any] = {}
    for model in order:
        inputs = {"patches": patches}
        if model in teachers:
            inputs["teacher"] = trained[teachers[model]].outputs["model"]
        task = c[f"train/{model}"](params=params, model_name=model, **inputs)
        trained[model] = _configure(task, "train", model, retries)
    return trained


def _model_branch(
    c: dict[str, Any],
    params: Any,
    model: str,
    data: dict[str, Any],
    train: Any,
    included: set[str],
    retries: bool,
) -> dict[str, Any]:
    """(train ->) quantize -> evaluate / convert / export_firmware / hil -> gate for one model (as far as
    `included` goes)."""
    step: dict[str, Any] = {"train": train}
    patches = data["patches"]

    def add(name: str, **inputs: Any) -> bool:
        if name not in included:
            return False
        task = c[f"{name}/{model}"](params=params, model_name=model, **inputs)
        step[name] = _configure(task, name, model, retries)
        return True

    model_out = step["train"].outputs["model"]
    if not add("quantize", patches=patches, model=model_out):
        return step
    quantized = step["quantize"].outputs["quantized"]
    add("evaluate", patches=patches, model=model_out, quantized=quantized)
    clips = {"raw": data["raw"], "validated": data["validated"], "model": model_out, "quantized": quantized}
    if not add("calibrate", **clips):
        return step
    point = step["calibrate"].outputs["operating_point"]
    step["evaluate_streaming"] = _configure(
        c[f"evaluate_streaming/{model}"](params=params, model_name=model, operating_point=point, **clips),
        "evaluate_streaming", model, retries,
    )  # fmt: skip
    add("convert", patches=patches, quantized=quantized)
    # the board's post-processing constants are the calibrated operating point
    add("export_firmware", quantized=quantized, operating_point=point)
    add("hil", patches=patches, quantized=quantized)
    streaming = step.get(STREAMING_STEP)
    if streaming is not None:
        add(
            "hil_stream",
            patches=patches,
            quantized=quantized,
            soundscapes=streaming.outputs[SOUNDSCAPES_OUTPUT],
            operating_point=point,
        )
    if {"evaluate", "convert", "hil"} <= step.keys():
        add("gate", **_gate_inputs(step))
    return step


def _gate_inputs(step: dict[str, Any]) -> dict[str, Any]:
    """What the gate judges: the records, and the stream evidence when the branch has it (gate.require_stream
    makes the verdict undecidable, so promote never runs, when it does not)."""
    inputs = {"evaluation": step["evaluate"].outputs["metrics"], "footprint": step["convert"].outputs["metrics"],
              "board": step["hil"].outputs["metrics"]}  # fmt: skip
    return {**inputs, **_stream_inputs(step)}


def _stream_inputs(step: dict[str, Any]) -> dict[str, Any]:
    """The stream record and the streaming evaluation of a branch, as the gate and promote take them."""
    inputs = {}
    if "hil_stream" in step:
        inputs["stream"] = step["hil_stream"].outputs["stream"]
    if STREAMING_STEP in step:
        inputs["streaming"] = step[STREAMING_STEP].outputs[STREAMING_OUTPUT]
    return inputs


def _data_tasks(c: dict[str, Any], params: Any, included: set[str], retries: bool) -> dict[str, Any] | None:
    """ingest -> validate -> patch; {patches, raw, validated} outputs, or None when `included` stops before
    patch (the raw clips and the validated table make the soundscapes of the streaming tasks)."""
    ingest = _configure(c["ingest"](params=params), "ingest", retries=retries)
    raw = ingest.outputs["raw"]
    if "validate" not in included:
        return None
    validate = _configure(
        c["validate"](params=params, raw=raw, manifest=ingest.outputs["manifest"]), "validate"
    )
    if "patch" not in included:
        return None
    patch = _configure(c["patch"](params=params, raw=raw, validated=validate.outputs["validated"]), "patch")
    return {"patches": patch.outputs["patches"], "raw": raw, "validated": validate.outputs["validated"]}


def _promote_tasks(
    c: dict[str, Any],
    params: Any,
    trained: dict[str, Any],
    branches: dict[str, dict[str, Any]],
    retries: bool,
) -> None:
    """One promote task per gated model, inside `dsl.If(gate passed)` and after every task of every branch."""
    from kfp import dsl

    every_task = [*trained.values()] + [
        task for branch in branches.values() for name, task in branch.items() if name != "train"
    ]
    for model, step in branches.items():
        if "gate" not in step:
            continue
        with dsl.If(step["gate"].outputs["Output"] == True, name=f"gate-passed-{task_suffix(model)}"):  # noqa: E712
            promote = c[f"promote/{model}"](
                params=params,
                model_name=model,
                model=step["train"].outputs["model"],
                quantized=step["quantize"].outputs["quantized"],
                generated=step["convert"].outputs["generated"],
                tables=step["export_firmware"].outputs["tables"],
                evaluation=step["evaluate"].outputs["metrics"],
                footprint=step["convert"].outputs["metrics"],
                board=step["hil"].outputs["metrics"],
                verdict=step["gate"].outputs["verdict"],
                **_stream_inputs(step),
            )
            # Not before every task of every branch is done: a failure anywhere stops the run unpromoted.
            _configure(promote, "promote", model, retries).after(*every_task)


def build_pipeline(
    params: dict[str, Any],
    models: list[str],
    images: Images | None = None,
    until: str | None = None,
    retries: bool = True,
) -> Callable:
    """The pipeline function, with `params` as the default of its one parameter and one branch per model.

    `until` cuts the DAG after that step (e.g. "patch" runs only the data steps); the default is the whole DAG.
    `retries=False` drops the retry policies (local runs: kfp.local would wait out the back-off on failures
    that are not transient).
    """
    from kfp import dsl

    if not models:
        raise ValueError("pipeline.models: empty list; name at least one model")
    if until is not None and until not in STEPS:
        raise ValueError(f"--until {until!r}: expected one of {list(STEPS)}")
    included = set(STEPS[: STEPS.index(until) + 1] if until else STEPS)
    included |= {task for task, (step, _) in EXTRA_TASKS.items() if step in included}
    teachers = glue.teachers(params, models)
    order = train_order(models, teachers)
    c = build_components(images or Images(), order)
    params_json = json.dumps(params, sort_keys=True)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Tiny audio event detection on STM32: ESC-10 -> YAMNet-256/1024 -> int8 -> board-gated promotion",
    )
    def aed_pipeline(params: str = params_json):
        data = _data_tasks(c, params, included, retries)
        if data is None or "train" not in included:
            return
        trained = _train_tasks(c, params, order, teachers, data["patches"], retries)
        branches = {
            model: _model_branch(c, params, model, data, trained[model], included, retries)
            for model in models
        }
        if "promote" in included:
            _promote_tasks(c, params, trained, branches, retries)

    return aed_pipeline


def compile_pipeline(
    out: Path, params: dict[str, Any], models: list[str], images: Images | None = None
) -> Path:
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params, models, images), package_path=str(out))
    return out
