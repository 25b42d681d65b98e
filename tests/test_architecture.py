"""The layering rules, read from the code with `ast`:

- imports point one way, `aed` <- `hil_runner` <- `components` <- `pipelines`, with no cycle between modules;
- a step never imports another step;
- every dvc.yaml stage depends on the project code its step runs (a change to that code re-runs the stage).

Every import counts, also one inside a function: it runs when the function does.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("aed", "hil_runner", "components", "pipelines")  # each may import only the ones before it
# Not step packages: what every step shares (CLI machinery, task-body helpers).
STEP_LAYER_SHARED = {"cli", "common", "taskio", "markdown"}
# `aed` parses argv and hands over to the step's handler; it computes no output, so a stage does not depend on it.
DISPATCHERS = {"pipelines.cli", "components.cli"}


@functools.cache
def module_files(root: Path = REPO) -> dict[str, Path]:
    """{dotted module name: file} for every module of the four packages."""
    found = {}
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def _resolve(module: str, imported: str, level: int, is_package: bool) -> str:
    if level == 0:
        return imported
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, imported] if imported else base)


@functools.cache
def imports_of(module: str, root: Path = REPO) -> frozenset[str]:
    """The project modules `module` imports, anywhere in its file (`from a import b` counts a.b when b is a module)."""
    files = module_files(root)
    path = files[module]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node.module or "", node.level, path.name == "__init__.py")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            # a module, or the package a name comes from (the closest enclosing module)
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    # importing a.b.c runs a/__init__ and a/b/__init__ too
    for name in list(found):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in files}
    found.discard(module)
    return frozenset(found)


def closure(start: str, root: Path = REPO) -> set[str]:
    parts = start.split(".")
    seen, pending = set(), [".".join(parts[: i + 1]) for i in range(len(parts))]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        pending.extend(imports_of(module, root))
    return seen


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def step_of(module: str) -> str | None:
    parts = module.split(".")
    return (
        parts[1]
        if parts[0] == "components" and len(parts) > 1 and parts[1] not in STEP_LAYER_SHARED
        else None
    )


def upward_imports(root: Path = REPO) -> list[str]:
    return [
        f"{module} imports {target}"
        for module in module_files(root)
        for target in imports_of(module, root)
        if layer_of(target) > layer_of(module)
    ]


def import_cycles(root: Path = REPO) -> list[str]:
    """Depth-first search over the module graph; a back edge is a cycle (a package's own __init__ importing its
    submodules is the one allowed direction)."""
    graph = {m: {t for t in imports_of(m, root) if not m.startswith(t + ".")} for m in module_files(root)}
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[str] = []

    def visit(module: str, stack: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target, [*stack, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_imports_point_one_way() -> None:
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    cycles = import_cycles()
    assert not cycles, "\n".join(cycles)


def test_a_step_never_imports_another_step() -> None:
    crossing = [
        f"{module} imports {target}"
        for module in module_files()
        for target in imports_of(module)
        if step_of(module) and step_of(target) and step_of(target) != step_of(module)
    ]
    assert not crossing, "\n".join(crossing)


def test_the_import_graph_sees_upward_and_function_level_imports(tmp_path: Path) -> None:
    """The checker itself: a function-level upward import and a cycle are found (so a green run means something)."""
    for layer in LAYERS:
        (tmp_path / layer).mkdir()
        (tmp_path / layer / "__init__.py").write_text("")
    (tmp_path / "aed" / "low.py").write_text("def f():\n    from pipelines import top\n")
    (tmp_path / "pipelines" / "top.py").write_text("import aed.low\n")
    (tmp_path / "components" / "a.py").write_text("from . import b\n")
    (tmp_path / "components" / "b.py").write_text("from components.a import x\n")
    assert "aed.low imports pipelines.top" in upward_imports(tmp_path)
    assert "components.a -> components.b -> components.a" in import_cycles(tmp_path)


# -- dvc.yaml deps --------------------------------------------------------------------------------------------
def dvc_stages() -> dict[str, dict]:
    """{stage name: stage} with foreach stages expanded to one entry per item (`train@yamnet_256`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    expanded = {}
    for name, stage in stages.items():
        if "foreach" not in stage:
            expanded[name] = stage
            continue
        items = stage["foreach"]
        keys = items if isinstance(items, list) else ([] if isinstance(items, str) else list(items))
        expanded[name] = {**stage["do"], "_items": keys}
    return expanded


# Stages that run an `aed pipeline` action rather than a step: the module that action runs.
PIPELINE_ACTIONS = {"dvc-yaml": "pipelines.dvc_yaml"}


def step_module_of(cmd: str) -> str:
    words = " ".join(cmd.split()).split(" ")
    assert words[0] == "aed", f"a stage runs `aed <step>`, not {cmd!r}"
    if words[1] == "pipeline":
        return PIPELINE_ACTIONS[words[2]]
    return f"components.{words[1].replace('-', '_')}"


@pytest.mark.parametrize("stage_name", sorted(dvc_stages()))
def test_every_dvc_stage_depends_on_the_code_its_step_runs(stage_name: str) -> None:
    stage = dvc_stages()[stage_name]
    cmd = stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"])
    step = step_module_of(cmd)
    files = module_files()
    runs = sorted(files[m] for m in closure(step) - DISPATCHERS)
    deps = [REPO / str(dep) for dep in stage.get("deps", []) if "${" not in str(dep)]
    missing = [
        str(path.relative_to(REPO)) for path in runs if not any(path == d or d in path.parents for d in deps)
    ]
    assert not missing, f"dvc.yaml stage {stage_name} runs code it does not depend on: {missing}"
