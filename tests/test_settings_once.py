"""The step layer's structure: each setting is declared once, and every step's `run` follows the same argument
conventions (that no step imports another is tests/test_architecture.py's)."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect

import pytest

from components.taskio import params_sections
from tests.conftest import REPO

PACKAGES = ("aed", "hil_runner", "components")
# Modules of components/ that every step may use; anything else there is a step.
SHARED = {"common", "taskio", "markdown"}
# One field name in common is a shared word (jobs, seed, split); from two on, a class repeats another's settings.
MIRROR_AT = 2
# Pairs that share names without repeating a setting: {class, class}: why.
UNRELATED = {
    frozenset(
        {"IngestParams", "SourceSpec"}
    ): "the resolved source (mirror applied), made by IngestParams.source_spec",
    frozenset({"TrainParams", "SplitResult"}): "a split's result records the values it was trained with",
    frozenset({"TrainParams", "HilParams"}): "each section chooses its own split and folds",
    frozenset({"HilParams", "Board"}): "an inventory board's own profile and firmware",
    frozenset(
        {"TrainParams", "FitPlan"}
    ): "one fit phase's epochs and learning rate, picked from the head or fine-tune settings",
    frozenset(
        {"TrainParams", "SplitFigures"}
    ): "a split's row of train.json records the values it was trained with",
    frozenset(
        {"ConvertParams", "ModelInfo"}
    ): "what a board reports about the model it loaded (its C name and runtime), not a setting",
}


def step_names() -> list[str]:
    folder = REPO / "components"
    return sorted(p.name for p in folder.iterdir() if (p / "__init__.py").is_file())


def dataclass_fields() -> dict[tuple[str, str], set[str]]:
    """{(module, class): the field names its own body declares} for every dataclass of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list
                ):
                    found[(module, node.name)] = {
                        item.target.id
                        for item in node.body
                        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
                    }
    return found


def params_classes() -> set[type]:
    """Every class a step reads a params.yaml section into (the annotations of its `run`)."""
    classes = set()
    for name in step_names():
        step = importlib.import_module(f"components.{name}")
        if "params" in inspect.signature(step.run).parameters:
            classes |= {cls for _section, cls in params_sections(step).values()}
    return classes


def mirrors(declared: dict[tuple[str, str], set[str]]) -> dict[frozenset[str], list[str]]:
    """{params class and another dataclass: the field names both declare}, inheritance excepted."""
    found = {}
    for cls in params_classes():
        names = {field.name for field in dataclasses.fields(cls)}
        for (module, other), fields in declared.items():
            runtime = getattr(importlib.import_module(module), other)
            if issubclass(runtime, cls) or issubclass(cls, runtime):
                continue
            common = names & fields
            if len(common) >= MIRROR_AT:
                found[frozenset({cls.__name__, other})] = sorted(common)
    return found


def test_every_setting_is_declared_once() -> None:
    found = mirrors(dataclass_fields())
    repeated = {" ~ ".join(sorted(pair)): names for pair, names in found.items()
                if pair not in UNRELATED}  # fmt: skip
    assert not repeated, f"settings declared in two classes (inherit or use the owner instead): {repeated}"
    stale = sorted(" ~ ".join(sorted(pair)) for pair in UNRELATED if pair not in found)
    assert not stale, f"no longer repeated, delete the exception: {stale}"


def test_a_copied_setting_is_found(monkeypatch) -> None:
    """The scan sees a params class that repeats two front-end settings (the way PatchParams once did)."""
    monkeypatch.setattr(
        importlib.import_module("components.patch"), "Copy", type("Copy", (), {}), raising=False
    )
    declared = {**dataclass_fields(), ("components.patch", "Copy"): {"n_mels", "fmax", "shard_size"}}
    assert mirrors(declared)[frozenset({"PatchParams", "Copy"})] == ["fmax", "n_mels", "shard_size"]


OLD_RECORD_NAMES = {"out", "out_path", "metrics_path", "report_path"}


@pytest.mark.parametrize("step", step_names())
def test_run_takes_params_first_and_names_its_record_record_path(step: str) -> None:
    arguments = list(inspect.signature(importlib.import_module(f"components.{step}").run).parameters)
    if step != "estimate":  # estimate has no params section
        assert arguments[0] == "params", arguments
    assert not OLD_RECORD_NAMES & set(arguments), arguments
