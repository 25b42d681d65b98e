"""dvc.yaml follows params.yaml's models.names (issue 17, point 2): one model listed, only its stages exist; a
student whose teacher is not listed neither gets nor depends on it; a stale dvc.yaml stops the run in one line."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines import dvc_yaml
from pipelines.cli import main as aed_main

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PER_MODEL = (
    "train",
    "quantize",
    "convert",
    "export_firmware",
    "calibrate",
    "evaluate_streaming",
    "hil",
    "hil_stream",
    "gate",
    "promote",
)  # the order of dvc.yaml
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def repo_params(names: list[str] | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if names is not None:
        params["models"]["names"] = names
    return params


def dvc_repo(work: Path, params: dict, generate: bool = True) -> Path:
    """A git + DVC repository holding the project's dvc.yaml and `params` (dvc.yaml rewritten for them unless
    `generate` is false: the stale file an edit of params.yaml leaves)."""
    work.mkdir(parents=True)
    text = (REPO / "dvc.yaml").read_text()
    (work / "dvc.yaml").write_text(
        dvc_yaml.rewrite(text, dvc_yaml.generated(params), work) if generate else text
    )
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (("git", "init", "-q"), ("dvc", "init", "-q")):
        subprocess.run(args, cwd=work, env=ENV, check=True, capture_output=True)
    return work


def stage_names(work: Path) -> list[str]:
    listed = subprocess.run(
        ["dvc", "stage", "list", "--name-only"], cwd=work, env=ENV, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def resolved_stages(work: Path) -> dict:
    """{stage name: stage} as DVC resolves dvc.yaml (foreach expanded, variables filled)."""
    from dvc.repo import Repo

    with Repo(str(work)) as repo:
        return {stage.name: stage for stage in repo.index.stages}


def test_the_committed_dvc_yaml_follows_the_committed_params_yaml() -> None:
    """A changed models.names, quantize.formats or teacher without `aed pipeline dvc-yaml` fails here."""
    text = (REPO / "dvc.yaml").read_text()
    assert dvc_yaml.rewrite(text, dvc_yaml.generated(repo_params()), REPO) == text
    dvc_yaml.check(yaml.safe_load(text), repo_params(), REPO / "dvc.yaml")


@pytest.mark.parametrize("names", [["yamnet_256"], ["yamnet_1024"], ["yamnet_256", "yamnet_1024"]])
def test_dvc_lists_the_stages_of_exactly_the_models_of_models_names(tmp_path: Path, names: list[str]) -> None:
    listed = stage_names(dvc_repo(tmp_path / "work", repo_params(names)))
    for step in PER_MODEL:
        assert {name.split("@")[1] for name in listed if name.startswith(f"{step}@")} == set(names), step
    assert {"ingest", "validate", "patch", "model_stages", "evaluate"} <= set(listed)


def test_a_student_whose_teacher_is_not_trained_neither_gets_nor_depends_on_it(tmp_path: Path) -> None:
    alone = resolved_stages(dvc_repo(tmp_path / "alone", repo_params(["yamnet_256"])))
    student = alone["train@yamnet_256"]
    assert "--teacher" not in student.cmd
    assert not any("yamnet_1024" in str(dep.def_path) for dep in student.deps)
    # evaluate, the one stage over every model, works with one: only that model's folders and plots
    evaluate = alone["evaluate"]
    assert "--model " not in evaluate.cmd  # aed evaluate takes models.names
    model_deps = sorted(str(d.def_path) for d in evaluate.deps if str(d.def_path).startswith("models/"))
    assert model_deps == ["models/yamnet_256/float", "models/yamnet_256/int8"]
    assert not any("yamnet_1024" in str(out.def_path) for out in evaluate.outs)

    both = resolved_stages(dvc_repo(tmp_path / "both", repo_params(["yamnet_256", "yamnet_1024"])))
    student = both["train@yamnet_256"]
    assert "--teacher models/yamnet_1024/float" in student.cmd
    assert "models/yamnet_1024/float" in {str(dep.def_path) for dep in student.deps}
    assert "--teacher" not in both["train@yamnet_1024"].cmd


def test_no_configured_teacher_means_no_teacher_with_both_models(tmp_path: Path) -> None:
    params = repo_params(["yamnet_256", "yamnet_1024"])
    params["train"]["overrides"]["yamnet_256"]["teacher"] = None
    stages = dvc_yaml.model_stages(params)
    assert (
        stages["yamnet_256"]["teacher_args"] == ""
        and "yamnet_1024" not in stages["yamnet_256"]["teacher_dep"]
    )


def test_int8_files_follow_quantize_formats() -> None:
    params = repo_params(["yamnet_256"])
    params["quantize"]["formats"]["yamnet_256"] = "onnx_qdq"
    assert dvc_yaml.model_stages(params)["yamnet_256"]["int8"] == "model_qdq.onnx"
    assert "reports/yamnet_256/confusion_onnx_qdq.png" in str(dvc_yaml.evaluate_plots(params))


def test_a_stale_dvc_yaml_is_one_line_saying_what_to_run(tmp_path: Path, capsys) -> None:
    work = dvc_repo(tmp_path / "work", repo_params(["yamnet_256"]), generate=False)
    args = [
        "pipeline",
        "dvc-yaml",
        "--params",
        str(work / "params.yaml"),
        "--dvc-yaml",
        str(work / "dvc.yaml"),
    ]
    assert aed_main([*args, "--check", "--out", str(work / "stages.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "['yamnet_256', 'yamnet_1024']" in err and "models.names is ['yamnet_256']" in err
    assert "aed pipeline dvc-yaml" in err and not (work / "stages.json").exists()

    assert aed_main(args) == 0  # writes dvc.yaml; then the check passes and the stage's output is written
    out = capsys.readouterr().out
    assert (
        "written" in out
        and "yamnet_256 (no distillation: its teacher yamnet_1024 is not in models.names)" in out
    )
    assert aed_main([*args, "--check", "--out", str(work / "stages.json")]) == 0
    assert list(yaml.safe_load((work / "stages.json").read_text())) == ["yamnet_256"]
    assert aed_main(args) == 0 and "unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda p: p["models"].update(names=["yamnet256"]),
            "models.names: unknown model 'yamnet256' (did you mean yamnet_256?)",
        ),
        (lambda p: p["quantize"]["formats"].update(yamnet_256="tflit"), "quantize.formats.yamnet_256"),
        (lambda p: p["train"]["overrides"]["yamnet_256"].update(teacher="yamnet_256"), "cannot teach itself"),
        (lambda p: p.update(models="yamnet_256"), "models"),
        (lambda p: p["models"].update(names=[]), "models.names: no model listed"),
        (lambda p: p["models"].update(names=["yamnet_256"] * 2), "['yamnet_256'] listed more than once"),
        (lambda p: p["train"].update(teacher="yamnet_256"), "cycle yamnet_256 -> yamnet_1024 -> yamnet_256"),
    ],
)
def test_bad_params_are_one_line_naming_the_key(tmp_path: Path, capsys, edit, expected: str) -> None:
    params = copy.deepcopy(repo_params())
    edit(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    before = (tmp_path / "dvc.yaml").read_text()
    args = [
        "pipeline",
        "dvc-yaml",
        "--params",
        str(tmp_path / "params.yaml"),
        "--dvc-yaml",
        str(tmp_path / "dvc.yaml"),
    ]
    assert aed_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, err
    assert (tmp_path / "dvc.yaml").read_text() == before  # nothing written


END_PLOTS = "# end generated: evaluate_plots"


@pytest.mark.parametrize(
    ("edit", "check", "expected"),
    [
        (lambda text: text.replace(END_PLOTS, "# (removed)"), False, "end generated: evaluate_plots"),
        (lambda text: text + "\n  bad: [\n", True, "not valid YAML (line"),
        (
            lambda text: text.replace("vars:\n", "vars: 3\nold_vars:\n"),
            True,
            "vars: expected a list, got int",
        ),
        (
            lambda text: text.replace("      - components/evaluate\n", "      - models/x/int8\n"),
            False,
            "outside",
        ),
    ],
)
def test_a_broken_dvc_yaml_is_one_line_naming_it_and_left_alone(
    tmp_path: Path, capsys, edit, check, expected
):
    text = edit((REPO / "dvc.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(text)
    args = [
        "pipeline",
        "dvc-yaml",
        "--params",
        str(REPO / "params.yaml"),
        "--dvc-yaml",
        str(tmp_path / "dvc.yaml"),
    ]
    assert aed_main([*args, "--check"] if check else args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(tmp_path) in err, err
    assert (tmp_path / "dvc.yaml").read_text() == text


@pytest.mark.slow
def test_dvc_exp_run_with_a_new_model_list_stops_before_training_then_follows_it(tmp_path: Path) -> None:
    """`dvc exp run -S models.names=[yamnet_256]` on a dvc.yaml made for both models stops at the model_stages
    stage (no model trained) with the line saying what to run; after it, DVC lists only YAMNet-256's stages."""
    work = dvc_repo(tmp_path / "work", repo_params())
    for package in ("aed", "pipelines"):
        shutil.copytree(REPO / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**ENV, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@x.invalid")
    for args in (("git", "add", "-A"), ("git", "commit", "-qm", "base")):
        subprocess.run(args, cwd=work, env=env, check=True, capture_output=True)
    run = subprocess.run(
        ["dvc", "exp", "run", "-S", "models.names=[yamnet_256]", "model_stages"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode != 0
    assert "models.names is ['yamnet_256']: run `aed pipeline dvc-yaml`" in run.stdout + run.stderr
    assert not (work / "models").exists()
    subprocess.run(["aed", "pipeline", "dvc-yaml"], cwd=work, env=env, check=True, capture_output=True)
    listed = stage_names(work)
    assert [n for n in listed if "@" in n] == [f"{step}@yamnet_256" for step in PER_MODEL]


@pytest.mark.parametrize(
    "stages", [("ingest", "validate", "patch"), ("train", "quantize", "evaluate", "hil")]
)
def test_a_cut_test_workspace_dvc_yaml_follows_its_changed_params(stages: tuple[str, ...]) -> None:
    """tests/dvc_workspace.py cuts dvc.yaml to some stages and rewrites it without comments (so without the block
    lines): dvc_yaml.apply still makes it follow the workspace's params, which the model_stages stage checks."""
    params = repo_params(["yamnet_256"])
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text())
    pipeline["stages"] = {k: v for k, v in pipeline["stages"].items() if k in stages}
    with pytest.raises(dvc_yaml.StaleDvcYaml, match="models.names is \\['yamnet_256'\\]"):
        dvc_yaml.check(pipeline, params, Path("dvc.yaml"))
    dumped = yaml.safe_load(yaml.safe_dump(dvc_yaml.apply(pipeline, params), sort_keys=False))
    dvc_yaml.check(dumped, params, Path("dvc.yaml"))
    if "evaluate" in dumped["stages"]:
        assert "models/yamnet_1024/float" not in dumped["stages"]["evaluate"]["deps"]
