"""dvc.yaml's model stages follow params.yaml. `aed pipeline dvc-yaml` writes the parts of dvc.yaml that depend on
which models run: the `model_stages` variable every per-model stage iterates over (one entry per model of
models.names, with its int8 file from quantize.formats and its teacher from train.teacher / train.overrides),
the evaluate stage's per-model dependencies and plots, and the report stage's per-model dependencies. Everything
else in dvc.yaml is written by hand.

Why a generated block and not `foreach: ${models.names}`: DVC's templating cannot look a value up by the loop item
(`${formats[${item}]}` is a parse error in DVC 3) and has no conditional entries, so a model's int8 file name and
its teacher dependency (present only when the teacher is trained too) cannot be written in dvc.yaml itself.

A changed model list in params.yaml makes the written block stale; `dvc exp run -S models.names=[...]` changes only
params.yaml. The `model_stages` stage (`aed pipeline dvc-yaml --check`) runs before any model is trained and stops
the run with one line saying to run `aed pipeline dvc-yaml`, so a stale dvc.yaml never trains the wrong models.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from aed.artifacts import FLOAT_FORMAT, INT8_MODEL_FILE
from aed.models.config import ModelsParams
from aed.params import ParamsError, from_dict, read_params
from aed.quantize import QuantizeParams
from aed.training.params import TrainParams

MODEL_STAGES = "model_stages"  # the dvc.yaml variable the per-model stages iterate over
EVALUATE_DEPS = "evaluate_models"  # the evaluate stage's per-model dependencies
EVALUATE_PLOTS = "evaluate_plots"  # the evaluate stage's per-model confusion plots
REPORT_DEPS = "report_models"  # the report stage's per-model dependencies (each model's last record)
BLOCKS = (MODEL_STAGES, EVALUATE_DEPS, EVALUATE_PLOTS, REPORT_DEPS)
PROMOTE_RECORD = "reports/promote_{name}.json"
# DVC has no optional list entry: a model without a teacher depends on its weights loader instead, a file the
# train stage runs anyway (aed/models), so the stand-in adds no re-run of its own.
NO_TEACHER_DEP = "aed/models/weights.py"
HEADER = "begin generated: {name} (`aed pipeline dvc-yaml` writes this block from params.yaml; do not edit)"
FOOTER = "end generated: {name}"


class StaleDvcYaml(ValueError):
    """dvc.yaml's generated blocks do not follow params.yaml; `block` names the first that differs."""

    def __init__(self, message: str, block: str) -> None:
        super().__init__(message)
        self.block = block


# -- what params.yaml asks for ----------------------------------------------------------------------------------
def _section(params: dict[str, Any], name: str, cls: type) -> Any:
    """One section as its params class (components.taskio.section does the same, but imports the validation code)."""
    return from_dict(cls, params.get(name), name)


def model_names(params: dict[str, Any]) -> list[str]:
    """models.names, refused when empty or with a name twice (DVC would get no stage, or one stage for both)."""
    models = _section(params, "models", ModelsParams)
    models.validate()
    names = list(models.names)
    if not names:
        raise ParamsError("models.names: no model listed; the pipeline trains at least one")
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ParamsError(f"models.names: {twice} listed more than once")
    return names


def model_stages(params: dict[str, Any]) -> dict[str, dict[str, str]]:
    """{model: {int8, teacher_args, teacher_dep}} for each model of models.names, in its order. A configured
    teacher that is not in models.names is not trained, so the model neither gets --teacher nor depends on it
    (`aed train` then trains it without distillation and says so)."""
    names = model_names(params)
    train = _section(params, "train", TrainParams)
    quantize = _section(params, "quantize", QuantizeParams)
    _refuse_teacher_cycles(train, names)
    stages = {}
    for name in names:
        teacher = train.teacher_for(name)
        used = teacher if teacher in names else None
        stages[name] = {
            "int8": INT8_MODEL_FILE[quantize.format_for(name)],
            "teacher_args": f" --teacher models/{used}/float" if used else "",
            "teacher_dep": f"models/{used}/float" if used else NO_TEACHER_DEP,
        }
    return stages


def _refuse_teacher_cycles(train: TrainParams, names: list[str]) -> None:
    """Models that teach each other, in turn, among those trained: DVC would refuse the cycle without its cause."""
    for name in names:
        chain = [name]
        teacher = train.teacher_for(name)
        while teacher in names:
            if teacher in chain:
                cycle = " -> ".join([*chain[chain.index(teacher) :], teacher])
                raise ParamsError(
                    f"train: the teachers form a cycle {cycle} (train.teacher, train.overrides)"
                )
            chain.append(teacher)
            teacher = train.teacher_for(teacher)


def evaluate_deps(params: dict[str, Any]) -> list[str]:
    return [f"models/{name}/{kind}" for name in model_names(params) for kind in ("float", "int8")]


def report_deps(params: dict[str, Any]) -> list[str]:
    """The report runs after each model's promotion (the last per-model stage), whatever it decided."""
    return [PROMOTE_RECORD.format(name=name) for name in model_names(params)]


def evaluate_plots(params: dict[str, Any]) -> list[dict[str, dict[str, Any]]]:
    """Each model's confusion rows (float and int8, as DVC confusion plots) and its int8 confusion image."""
    quantize = _section(params, "quantize", QuantizeParams)
    confusion = {"cache": False, "template": "confusion", "x": "predicted", "y": "actual"}
    plots: list[dict[str, dict[str, Any]]] = []
    for name in model_names(params):
        int8 = quantize.format_for(name)
        for fmt in (FLOAT_FORMAT, int8):
            plots.append({f"reports/{name}/confusion_{fmt}.json": dict(confusion)})
        plots.append({f"reports/{name}/confusion_{int8}.png": {"cache": False}})
    return plots


def generated(params: dict[str, Any]) -> dict[str, Any]:
    """{block name: its value}: the YAML each generated block of dvc.yaml holds."""
    return {
        MODEL_STAGES: [{MODEL_STAGES: model_stages(params)}],  # one entry of dvc.yaml's `vars` list
        EVALUATE_DEPS: evaluate_deps(params),
        EVALUATE_PLOTS: evaluate_plots(params),
        REPORT_DEPS: report_deps(params),
    }


# -- writing dvc.yaml -------------------------------------------------------------------------------------------
def _marker(name: str, template: str) -> re.Pattern[str]:
    text = re.escape(template.format(name=name).split(" (")[0])
    return re.compile(rf"^(?P<indent>[ \t]*)#\s*{text}\b.*$", re.MULTILINE)


def _render(value: Any, indent: str) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=110)
    return "".join(f"{indent}{line}\n" for line in text.splitlines())


def rewrite(text: str, blocks: dict[str, Any], path: Path) -> str:
    """`text` with each generated block between its begin and end lines replaced by the block's YAML, indented
    like its begin line; every block must be present once."""
    for name, value in blocks.items():
        begin = list(_marker(name, HEADER).finditer(text))
        end = list(_marker(name, FOOTER).finditer(text))
        if len(begin) != 1 or len(end) != 1 or end[0].start() < begin[0].end():
            raise ParamsError(
                f"{path}: expected one '# {HEADER.format(name=name).split(' (')[0]}' line and, below it, one "
                f"'# {FOOTER.format(name=name)}' line (found {len(begin)} and {len(end)})"
            )
        indent = begin[0]["indent"]
        head = f"{indent}# {HEADER.format(name=name)}\n"
        text = text[: begin[0].start()] + head + _render(value, indent) + text[end[0].start() :]
    return text


# -- checking dvc.yaml ------------------------------------------------------------------------------------------
def load(text: str, path: Path) -> dict[str, Any]:
    """dvc.yaml's text as a mapping; a YAML error or another shape is one line naming the file."""
    try:
        pipeline = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ParamsError(
            f"{path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}"
        ) from None
    pipeline = {} if pipeline is None else pipeline
    if not isinstance(pipeline, dict):
        raise ParamsError(f"{path}: expected a mapping (vars, stages), got {type(pipeline).__name__}")
    for key, kind in (("vars", list), ("stages", dict)):
        if not isinstance(pipeline.get(key) or kind(), kind):
            raise ParamsError(
                f"{path}: {key}: expected a {kind.__name__}, got {type(pipeline[key]).__name__}"
            )
    return pipeline


def _current(pipeline: dict[str, Any]) -> dict[str, Any]:
    """The generated values as dvc.yaml holds them (None where a stage or the variable is absent)."""
    variables = [v for v in pipeline.get("vars") or [] if isinstance(v, dict) and MODEL_STAGES in v]
    stages = pipeline.get("stages") or {}
    current: dict[str, Any] = {MODEL_STAGES: variables or None, EVALUATE_DEPS: None, EVALUATE_PLOTS: None}
    evaluate = stages.get("evaluate")
    if isinstance(evaluate, dict):
        current[EVALUATE_DEPS] = [d for d in evaluate.get("deps") or [] if str(d).startswith("models/")]
        current[EVALUATE_PLOTS] = evaluate.get("plots") or []
    report = stages.get("report")
    current[REPORT_DEPS] = _promote_records(report.get("deps") or []) if isinstance(report, dict) else None
    return current


def _promote_records(deps: list[Any]) -> list[str]:
    before, after = PROMOTE_RECORD.split("{name}")
    return [d for d in deps if str(d).startswith(before) and str(d).endswith(after)]


def apply(pipeline: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """`pipeline` (dvc.yaml loaded) with its generated values set from params, for a copy whose comments, and so
    whose block lines, are gone (a test workspace's dvc.yaml written by yaml.safe_dump)."""
    values = generated(params)
    result = dict(pipeline)
    others = [v for v in result.get("vars") or [] if not (isinstance(v, dict) and MODEL_STAGES in v)]
    result["vars"] = values[MODEL_STAGES] + others
    evaluate = (result.get("stages") or {}).get("evaluate")
    if evaluate is not None:
        deps = [d for d in evaluate.get("deps") or [] if not str(d).startswith("models/")]
        evaluate["deps"] = deps[:1] + values[EVALUATE_DEPS] + deps[1:]  # after artifacts/patches
        evaluate["plots"] = values[EVALUATE_PLOTS]
    report = (result.get("stages") or {}).get("report")
    if report is not None:
        records = _promote_records(report.get("deps") or [])
        deps = [d for d in report.get("deps") or [] if d not in records]
        report["deps"] = deps[:1] + values[REPORT_DEPS] + deps[1:]  # after reports/metrics
    return result


def check(pipeline: dict[str, Any], params: dict[str, Any], path: Path) -> None:
    """Raise StaleDvcYaml, in one line saying what to run, when dvc.yaml's model stages differ from what params.yaml
    asks for. A workspace whose dvc.yaml lacks the evaluate stage is checked on the rest."""
    expected, current = generated(params), _current(pipeline)
    if current[MODEL_STAGES] is None:
        raise StaleDvcYaml(
            f"{path}: no `{MODEL_STAGES}` variable under vars: run `aed pipeline dvc-yaml`", MODEL_STAGES
        )
    wanted = list(expected[MODEL_STAGES][0][MODEL_STAGES])
    found = current[MODEL_STAGES][0][MODEL_STAGES]
    have = list(found) if isinstance(found, dict) else found
    fix = "run `aed pipeline dvc-yaml` (it rewrites dvc.yaml from params.yaml), then run again"
    if have != wanted:
        raise StaleDvcYaml(
            f"{path} has the model stages of {have} but models.names is {wanted}: {fix}", MODEL_STAGES
        )
    for name in BLOCKS:
        if current[name] is not None and current[name] != expected[name]:
            raise StaleDvcYaml(f"{path}: its generated block {name} does not follow params.yaml: {fix}", name)


# -- `aed pipeline dvc-yaml` ------------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> int:
    params = read_params(args.params)
    path = Path(args.dvc_yaml)
    text = path.read_text()
    if args.check:
        check(load(text, path), params, path)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(model_stages(params), indent=2) + "\n")
        print(f"{path}: model stages follow models.names {model_names(params)}")
        return 0
    new = rewrite(text, generated(params), path)
    try:  # what is written parses and passes the check the DVC stage runs
        check(load(new, path), params, path)
    except StaleDvcYaml as error:
        raise ParamsError(
            f"{path}: nothing written: even rewritten, {error.block} would not follow params.yaml (a per-model "
            "line outside its begin/end lines? move it inside)"
        ) from None
    if new != text:
        _replace(path, new)
    print(f"{path}: {'written' if new != text else 'unchanged'}; model stages for {describe(params)}")
    return 0


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename over: an interrupted run leaves the old dvc.yaml whole, never a truncated one."""
    staging = path.with_name(f".{path.name}.aed-tmp-dvc-yaml")
    staging.write_text(text)
    os.replace(staging, path)


def describe(params: dict[str, Any]) -> str:
    """`yamnet_256 (teacher yamnet_1024), yamnet_1024`, or `yamnet_256 (no distillation: its teacher yamnet_1024
    is not in models.names)`, for the console line."""
    train = _section(params, "train", TrainParams)
    parts = []
    for name, entry in model_stages(params).items():
        teacher = train.teacher_for(name)
        if entry["teacher_args"]:
            parts.append(f"{name} (teacher {teacher})")
        elif teacher:
            parts.append(f"{name} (no distillation: its teacher {teacher} is not in models.names)")
        else:
            parts.append(name)
    return ", ".join(parts)
