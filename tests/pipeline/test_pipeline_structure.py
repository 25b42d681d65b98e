"""The KFP pipeline's shape, its compiled IR, and the one-implementation-per-step rule."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from components.cli import build_parser
from pipelines.aed_pipeline import (
    COMPILED,
    EXTRA_TASKS,
    SETTINGS,
    SHARED_STEPS,
    STEPS,
    compile_pipeline,
    task_body,
)
from pipelines.cli import main as aed_main
from pipelines.images import Images

REPO = Path(__file__).resolve().parents[2]
MODELS = ["yamnet_256", "yamnet_1024"]


def _spec(path: Path) -> dict:
    return next(yaml.safe_load_all(path.read_text()))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The default configuration: YAMNet-256 int8 TFLite (U5 board), YAMNet-1024 ONNX QDQ (N6 board)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    out = tmp_path_factory.mktemp("ir") / "aed_pipeline.yaml"
    return _spec(compile_pipeline(out, params, MODELS, Images(registry="registry.example/team", tag="9.9.9")))


def _all_tasks(spec: dict) -> dict[str, dict]:
    found = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_compiled_yaml_is_current(tmp_path: Path) -> None:
    """pipelines/aed_pipeline.yaml must be what `aed pipeline compile` makes from the source and params.yaml."""
    out = tmp_path / "fresh.yaml"
    previous = Path.cwd()
    os.chdir(REPO)
    try:
        assert aed_main(["pipeline", "compile", "--out", str(out)]) == 0
    finally:
        os.chdir(previous)
    assert COMPILED.exists(), "pipelines/aed_pipeline.yaml missing: run `aed pipeline compile`"
    assert out.read_text() == COMPILED.read_text(), (
        "pipelines/aed_pipeline.yaml is out of date with pipelines/*.py or params.yaml: run `aed pipeline compile`"
    )


def _condition_of(spec: dict, task: str) -> dict:
    """The root-level dsl.If task whose sub-DAG holds `task`."""
    for outer in spec["root"]["dag"]["tasks"].values():
        inner = spec["components"][outer["componentRef"]["name"]].get("dag", {}).get("tasks", {})
        if task in inner:
            return outer
    raise AssertionError(f"{task} is not inside a condition")


def test_every_step_is_a_task_in_both_branches(compiled: dict) -> None:
    names = set(_all_tasks(compiled))
    assert names >= set(SHARED_STEPS)
    for model in ("yamnet-256", "yamnet-1024"):
        assert names >= {f"{s}-{model}" for s in ("train", "quantize", "evaluate", "convert")}
    # both formats run on a board (int8 TFLite on the U5, QDQ ONNX on the N6): every model is gated and promoted
    board_steps = ("export-firmware", "hil", "gate", "promote")
    for model in ("yamnet-256", "yamnet-1024"):
        assert names >= {f"{s}-{model}" for s in board_steps}
    deps = {name: set(task.get("dependentTasks", [])) for name, task in _all_tasks(compiled).items()}
    assert deps["validate"] == {"ingest"} and deps["patch"] == {"ingest", "validate"}
    # YAMNet-256 distils from YAMNet-1024 (train.overrides.yamnet_256.teacher): its teacher is an input artifact
    assert deps["train-yamnet-1024"] == {"patch"}
    assert deps["train-yamnet-256"] == {"patch", "train-yamnet-1024"}
    teacher = _all_tasks(compiled)["train-yamnet-256"]["inputs"]["artifacts"]["teacher"]["taskOutputArtifact"]
    assert teacher == {"outputArtifactKey": "model", "producerTask": "train-yamnet-1024"}
    assert "teacher" not in _all_tasks(compiled)["train-yamnet-1024"].get("inputs", {}).get("artifacts", {})
    for model in ("yamnet-256", "yamnet-1024"):
        assert deps[f"quantize-{model}"] == {"patch", f"train-{model}"}
        assert deps[f"evaluate-{model}"] == {"patch", f"train-{model}", f"quantize-{model}"}
    for model in ("yamnet-256", "yamnet-1024"):
        # the gate judges the board record, the stream check and the streaming evaluation (gate.require_stream)
        assert deps[f"gate-{model}"] == {f"evaluate-{model}", f"convert-{model}", f"hil-{model}",
                                         f"hil-stream-{model}", f"evaluate-streaming-{model}"}  # fmt: skip
        assert deps[f"hil-{model}"] == {"patch", f"quantize-{model}"}
        # held-out soundscapes at the operating point calibrated on training-clip soundscapes
        assert {"ingest", "validate", f"train-{model}", f"quantize-{model}"} <= deps[f"calibrate-{model}"]
        assert f"calibrate-{model}" in deps[f"evaluate-streaming-{model}"]
        assert {f"evaluate-streaming-{model}", f"calibrate-{model}"} <= deps[f"hil-stream-{model}"]
    # beyond the teacher edge the branches do not depend on each other: they run in parallel on a cluster
    for name, needs in deps.items():
        for model, other in (("yamnet-256", "yamnet-1024"), ("yamnet-1024", "yamnet-256")):
            if name.endswith(model) and not name.startswith("promote"):
                assert not any(d.endswith(other) for d in needs - {"train-yamnet-1024"}), (name, needs)
    # promote waits for every task of both branches: a failure anywhere stops the run before a promotion
    waits_for = set(_condition_of(compiled, "promote-yamnet-256")["dependentTasks"])
    for model in ("yamnet-256", "yamnet-1024"):
        waits_for = set(_condition_of(compiled, f"promote-{model}")["dependentTasks"])
        assert {"gate-yamnet-256", "gate-yamnet-1024", "export-firmware-yamnet-1024"} <= waits_for


def test_dvc_and_kfp_run_the_same_board_steps_per_model(compiled: dict) -> None:
    """`dvc repro` and the Kubeflow DAG put the same models on boards, through the same gate, to the same promotion."""
    # DVC resolves the foreach stages itself (their list is a dvc.yaml variable)
    listed = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=REPO, capture_output=True, text=True, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    ).stdout.split()  # fmt: skip
    for step in ("export_firmware", "hil", "gate", "promote"):
        dvc_models = {name.split("@")[1] for name in listed if name.startswith(f"{step}@")}
        kfp_models = {
            name.removeprefix(f"{step.replace('_', '-')}-").replace("-", "_")
            for name in _all_tasks(compiled)
            if name.startswith(f"{step.replace('_', '-')}-yamnet")
        }
        assert dvc_models == kfp_models == set(MODELS), (step, dvc_models, kfp_models)


def test_promote_runs_only_when_the_gate_passes(compiled: dict) -> None:
    for model in ("yamnet-256", "yamnet-1024"):
        condition = _condition_of(compiled, f"promote-{model}")
        assert condition["taskInfo"]["name"] == f"gate-passed-{model}"
        assert condition["triggerPolicy"]["condition"].endswith(f"gate-{model}-Output'] == true")
        inner = compiled["components"][condition["componentRef"]["name"]]["dag"]["tasks"]
        assert list(inner) == [f"promote-{model}"]


def test_typed_artifacts(compiled: dict) -> None:
    def output_types(component: str) -> dict[str, str]:
        artifacts = compiled["components"][component]["outputDefinitions"].get("artifacts", {})
        return {name: spec["artifactType"]["schemaTitle"] for name, spec in artifacts.items()}

    assert output_types("comp-ingest") == {
        "raw": "system.Dataset",
        "manifest": "system.Dataset",
        "metrics": "system.Metrics",
    }
    assert output_types("comp-validate")["report"] == "system.Markdown"
    assert output_types("comp-validate")["data_docs"] == "system.HTML"
    assert output_types("comp-patch")["patches"] == "system.Dataset"
    assert output_types("comp-train-yamnet-256")["model"] == "system.Model"
    assert output_types("comp-quantize-yamnet-1024")["quantized"] == "system.Model"
    assert output_types("comp-convert-yamnet-1024")["metrics"] == "system.Metrics"
    assert output_types("comp-evaluate-yamnet-256")["confusion"] == "system.ClassificationMetrics"
    assert output_types("comp-gate-yamnet-256")["table"] == "system.Markdown"
    gate_params = compiled["components"]["comp-gate-yamnet-256"]["outputDefinitions"]["parameters"]
    assert gate_params["Output"]["parameterType"] == "BOOLEAN"


def test_images_resources_retries_and_caching(compiled: dict) -> None:
    executors = compiled["deploymentSpec"]["executors"]
    for name, executor in executors.items():
        step = _step_of(name.removeprefix("exec-"))
        container = executor["container"]
        image_kind = SETTINGS[step].image
        assert container["image"] == f"registry.example/team/aed-{image_kind}:9.9.9"
        assert container["resources"]["cpuLimit"] > 0 and container["resources"]["memoryLimit"] > 0
        assert "pip install" not in " ".join(container["command"]), "the images carry kfp and the project"
    tasks_by_name = _all_tasks(compiled)
    for name, task in tasks_by_name.items():
        step = _step_of(name)
        if step is None:
            continue
        assert bool(task.get("cachingOptions", {}).get("enableCache")) == SETTINGS[step].cache, name
        assert task.get("retryPolicy", {}).get("maxRetryCount", 0) == SETTINGS[step].retries, name
    assert SETTINGS["hil"].image == "hil" and SETTINGS["train"].image == "train"
    assert not SETTINGS["promote"].cache and not SETTINGS["hil"].cache


def _step_of(name: str) -> str | None:
    """The step (or extra task) of a task or component name like `export-firmware-yamnet-256` (None for condition
    groups)."""
    matches = [
        s
        for s in (*STEPS, *EXTRA_TASKS)
        if name == s.replace("_", "-") or name.startswith(s.replace("_", "-") + "-")
    ]
    return max(matches, key=len) if matches else None


def _body_calls(function) -> tuple[set[str], list[str]]:
    """(components modules imported, attribute calls like 'step.run') in a task body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "components":
            imported |= {f"components.{alias.name}" for alias in node.names if alias.asname == "step"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("components."):
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("components.")}
    calls = [
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
    ]
    return imported, calls


def _cli_handlers(parser: argparse.ArgumentParser, step: str) -> list:
    """The handlers of `aed <step>` and of its sub-actions (e.g. `aed hil run`)."""
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found, pending = [], [subparsers.choices[step]]
    while pending:
        current = pending.pop()
        if current.get_default("handler") is not None:
            found.append(current.get_default("handler"))
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
    return found


def _dvc_commands() -> dict[str, str]:
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text()) if (REPO / "dvc.yaml").exists() else {}
    commands = {}
    for name, stage in (dvc.get("stages") or {}).items():
        do = stage.get("do", stage)  # foreach stages keep cmd under `do`
        cmd = do.get("cmd", "")
        commands[name] = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    return commands


@pytest.mark.parametrize("step", STEPS)
def test_one_implementation_reached_by_dvc_cli_and_kfp(step: str) -> None:
    try:
        module = importlib.import_module(f"components.{step}")
    except ModuleNotFoundError:
        if os.environ.get("CI"):
            pytest.fail(f"components/{step} does not exist")
        pytest.skip(f"components/{step} not built yet")
    run = module.run
    assert run.__module__ == f"components.{step}"
    # KFP: the task body lives in the step's own folder, imports this step and no other, and calls its run() once
    body = task_body(step)
    assert body.__module__ == f"components.{step}.task"
    imported, calls = _body_calls(body)
    steps_imported = {name for name in imported if name.split(".")[1] in STEPS}
    assert steps_imported == {f"components.{step}"}
    assert imported - steps_imported <= {"components.taskio", "components.markdown"}
    assert calls.count("step.run") == 1
    # CLI: `aed <step>` dispatches to a handler in the same module, which calls run()
    handlers = _cli_handlers(build_parser(), step.replace("_", "-"))
    assert handlers, f"`aed {step}` has no handler"
    assert any(h.__module__ == f"components.{step}" and "run(" in inspect.getsource(h) for h in handlers)
    # DVC: every stage for this step runs `aed <step>` (stage names: step, step@model or step_model)
    commands = _dvc_commands()
    stages = [cmd for name, cmd in commands.items() if name == step or name.split("@")[0] == step]
    if not stages and step == "promote":
        pytest.skip(
            "dvc.yaml has no promote stage (promotion is a pipeline-only step unless the lead adds one)"
        )
    if not stages and not os.environ.get("CI"):
        pytest.skip(f"dvc.yaml has no {step} stage yet")
    assert stages, f"dvc.yaml has no stage for {step}"
    assert all(cmd.strip().startswith(f"aed {step.replace('_', '-')}") for cmd in stages), stages


def test_pipelines_package_holds_no_step_logic() -> None:
    """pipelines/ may read params and talk to registries, never import the domain code a step runs: with the
    body check above, the only way from a KFP task to step logic is components.<step>.run."""
    # params classes and registry access
    allowed = {
        "aed.params",
        "aed.settings",
        "aed.registry",
        "aed.models.config",
        "aed.training.params",
        "aed.quantize",
    }
    allowed |= {"aed.artifacts"}  # file names (dvc.yaml's generated blocks), no step logic
    allowed |= {"aed.model_specs"}  # the known model names (a bad name is one line), no step logic
    allowed |= {"aed.redact"}  # masking the KFP credentials in messages, no step logic
    allowed |= {"aed.detection.detect"}  # DetectParams for `aed params show`, no step logic
    allowed |= {"aed.models.mirror"}  # where the YAMNet weights are (mounted into containers), no step logic
    for path in (REPO / "pipelines").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("aed") or name.startswith("hil_runner"):
                    assert name in allowed, f"{path.name} imports {name}"


def _dag(params: dict, models: list[str], tmp_path: Path, name: str) -> dict:
    return _spec(
        compile_pipeline(tmp_path / f"{name}.yaml", params, models, Images(registry="r.example/t", tag="1"))
    )


def test_a_teacher_outside_models_names_is_not_trained(tmp_path: Path) -> None:
    """models.names: [yamnet_256] trains YAMNet-256 alone, without distillation (as dvc.yaml does); with both
    models, YAMNet-1024's train output is YAMNet-256's teacher input."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    tasks_ = _all_tasks(_dag(params, ["yamnet_256"], tmp_path, "one"))
    assert not any(name.endswith("yamnet-1024") for name in tasks_)
    assert set(tasks_["train-yamnet-256"]["dependentTasks"]) == {"patch"}
    assert "teacher" not in tasks_["train-yamnet-256"].get("inputs", {}).get("artifacts", {})
    tasks_ = _all_tasks(_dag(params, ["yamnet_256", "yamnet_1024"], tmp_path, "both"))
    assert set(tasks_["train-yamnet-256"]["dependentTasks"]) == {"patch", "train-yamnet-1024"}


@pytest.mark.parametrize(
    ("teachers", "expected"),
    [
        ({"yamnet_256": "yamnet_256"}, "train.overrides.yamnet_256.teacher: yamnet_256 cannot teach itself"),
        ({"yamnet_256": "yamnet_512"}, "train.overrides.yamnet_256.teacher: unknown model 'yamnet_512'"),
        (
            {"yamnet_256": "yamnet_1024", "yamnet_1024": "yamnet_256"},
            "train.teacher: yamnet_256 -> yamnet_1024",
        ),
    ],
)
def test_a_bad_teacher_fails_before_any_task_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, teachers: dict, expected: str
) -> None:
    args = ["pipeline", "compile", "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "x.yaml")]
    for model, teacher in teachers.items():
        args += ["--set", f"train.overrides.{model}.teacher={teacher}"]
    assert aed_main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.yaml").exists()
