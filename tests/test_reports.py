"""Readable outputs (issue 17, point 8): compact DVC metrics, the reference run apart from the user's reports/,
and the self-contained reports/index.html, opened in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from aed.dvc_metrics import FiguresError, convert_figures, evaluation_figures, hil_figures
from components import report
from components.cli import main as aed_main
from tests.dvc_workspace import BIN, REPO, sh

REFERENCE = REPO / "docs" / "reference-run"
MODELS = ("yamnet_256", "yamnet_1024")
COMPARED = {"float_acc", "int8_acc", "agreement", "board_acc", "latency_ms", "ram_bytes", "flash_bytes"}
STREAMING = {"ev_f1", "fa_h", "miss"}  # evaluate --streaming (components.evaluate.STREAMING_FIGURES)
TERMINAL = 160


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip


def _width(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _reference_copy(target: Path) -> Path:
    """The committed reference run as a run's reports/ (index.html left out: each test writes its own)."""
    shutil.copytree(REFERENCE, target, ignore=shutil.ignore_patterns("index.html"))
    return target


def _dvc_repo(tmp_path: Path) -> tuple[Path, dict]:
    """A git + DVC repository with the project's dvc.yaml and params.yaml and the reference run as reports/."""
    work = tmp_path / "work"
    work.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(REPO / name, work / name)
    _reference_copy(work / "reports")
    env = _env()
    sh("git", "init", "-q", cwd=work, env=env)
    sh("dvc", "init", "-q", cwd=work, env=env)
    sh("git", "add", "-A", cwd=work, env=env)
    sh("git", "commit", "-q", "-m", "reference", cwd=work, env=env)
    return work, env


# -- DVC metrics: only the compared figures ---------------------------------------------------------------------
def test_dvc_metrics_show_fits_a_160_column_terminal(tmp_path: Path) -> None:
    work, env = _dvc_repo(tmp_path)
    for model in MODELS:  # the widest streaming figures, where the reference run predates them
        stream = work / "reports" / "metrics" / f"stream_{model}.json"
        if not stream.exists():
            stream.write_text(json.dumps({"ev_f1": 0.339, "fa_h": 108.0, "miss": 0.617}))
    shown = subprocess.run(["dvc", "metrics", "show"], cwd=work, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert _width(shown.stdout) <= TERMINAL, f"{_width(shown.stdout)} columns:\n{shown.stdout[:2000]}"
    header, *rows = shown.stdout.splitlines()
    assert set(header.split()) == {"Path"} | COMPARED | STREAMING
    assert len(rows) == 4 * len(MODELS)  # evaluate, convert, hil and streaming evaluation, per model


def test_exp_show_after_a_rerun_names_only_the_compared_figures(tmp_path: Path) -> None:
    """A re-run rewrites every record (new timestamps and hashes); only moved figures become columns."""
    work, env = _dvc_repo(tmp_path)
    for path in (work / "reports").rglob("*.json"):
        text = re.sub(r"20\d\d-\d\d-\d\dT[\d:+]+", "2030-01-01T00:00:00+00:00", path.read_text())
        path.write_text(re.sub(r"[0-9a-f]{64}", "f" * 64, text))
    figures = work / "reports" / "metrics" / "hil_yamnet_256.json"
    moved = {**json.loads(figures.read_text()), "latency_ms": 250.5}
    figures.write_text(json.dumps(moved))
    shown = sh("dvc", "exp", "show", "--only-changed", "--md", cwd=work, env=env)
    assert "hil_yamnet_256.json:latency_ms" in shown
    assert "created" not in shown and "sha256" not in shown and "tools" not in shown
    assert _width(shown) <= TERMINAL, shown


def test_every_dvc_metric_is_a_compact_file_its_stage_writes() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = 0
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for entry in body.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            assert path.startswith("reports/metrics/"), (name, path)
            assert path in " ".join(body["cmd"].split()), f"stage {name} does not write its metric {path}"
            declared += 1
    assert declared == 4  # evaluate (a folder, one file per model), convert, hil and stream (per model)


def test_the_reference_figures_are_the_ones_its_records_give() -> None:
    evaluate = json.loads((REFERENCE / "evaluate.json").read_text())
    for model in MODELS:
        expected = {
            f"evaluate/{model}.json": evaluation_figures(evaluate["metrics"][model]),
            f"convert_{model}.json": convert_figures(
                json.loads((REFERENCE / f"convert_{model}.json").read_text())
            ),
            f"hil_{model}.json": hil_figures(json.loads((REFERENCE / f"hil_{model}.json").read_text())),
        }
        for name, figures in expected.items():
            written = json.loads((REFERENCE / "metrics" / name).read_text())
            assert written == figures, name
            assert set(written) <= COMPARED, name


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({}, "metrics: missing"),
        ({"metrics": {"clip_accuracy": 0.9}}, "top1_agreement: missing"),
        ({"metrics": {"clip_accuracy": float("nan"), "top1_agreement": 1.0}}, "metrics.clip_accuracy: nan"),
        ({"metrics": {"clip_accuracy": True, "top1_agreement": 1.0}}, "metrics.clip_accuracy: True"),
        ({"metrics": {"clip_accuracy": 0.9, "top1_agreement": 1.0, "latency_median_ms": "fast"}}, "'fast'"),
    ],
)
def test_a_hil_record_without_its_figures_is_refused_by_name(record: dict, expected: str) -> None:
    with pytest.raises(FiguresError, match=re.escape(expected)):
        hil_figures(record)


def test_convert_writes_its_compact_figures_beside_the_record(tmp_path: Path, monkeypatch) -> None:
    from components.convert import ConvertParams, run
    from tests.stedgeai.test_stedgeai_convert import _qdq_model

    monkeypatch.setenv("PATH", str(BIN))  # no stedgeai: the estimator's figures
    model = _qdq_model(tmp_path / "tiny_qdq.onnx")
    record = tmp_path / "reports" / "convert_tiny.json"
    figures = tmp_path / "reports" / "metrics" / "convert_tiny.json"
    full = run(ConvertParams(), model, "stm32n6", tmp_path / "out", record, figures)
    written = json.loads(figures.read_text())
    assert set(written) <= COMPARED and written["flash_bytes"] == full["weights_bytes"]
    assert "tools" in json.loads(record.read_text())  # provenance stays in the record
    with pytest.raises(ValueError, match="--dvc-metrics .*lies inside the --out"):
        run(ConvertParams(), model, "stm32n6", tmp_path / "out", record, tmp_path / "out" / "m.json")


# -- the reference run apart from the user's reports/ ------------------------------------------------------------
def test_the_repository_commits_no_run_output_under_reports() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files", "reports"], cwd=REPO, capture_output=True, text=True).stdout
    assert tracked == "", (
        f"committed under reports/ (the reference run belongs in docs/reference-run/):\n{tracked}"
    )
    for ignored in ("dvc_plots/index.html", "reports/index.html"):
        assert subprocess.run(["git", "check-ignore", "-q", ignored], cwd=REPO).returncode == 0, ignored
    assert (
        subprocess.run(["git", "check-ignore", "-q", "reports/metrics/hil_x.json"], cwd=REPO).returncode == 1
    )


# -- reports/index.html -----------------------------------------------------------------------------------------
def _page(reports: Path, capsys, *extra: str) -> tuple[int, str, str]:
    params = reports.parent / "params.yaml"
    if not params.exists():
        params.write_text("{}\n")
    code = aed_main(["report", "--params", str(params), "--reports", str(reports),
                     "--out", str(reports / "index.html"), *extra])  # fmt: skip
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _section(page: str, title: str) -> str:
    return page.split(f"<h2>{title}</h2>", 1)[1].split("<h2>", 1)[0]


def test_a_promotion_left_from_an_earlier_run_is_not_shown_as_this_runs(tmp_path: Path, capsys) -> None:
    """The run stopped at its gate today: yesterday's promotion record is still in reports/."""
    reports = _reference_copy(tmp_path / "reports")
    verdict = json.loads((reports / "gate_yamnet_256.json").read_text())
    hil = json.loads((reports / "hil_yamnet_256.json").read_text())
    hil["created"] = "2030-01-01T00:00:00+00:00"  # today's HIL record: yesterday's verdict judged another one
    (reports / "hil_yamnet_256.json").write_text(json.dumps(hil))
    code, out, _ = _page(reports, capsys)
    page = (reports / "index.html").read_text()
    assert code == 0
    assert (
        "gate_yamnet_256.json: not from this run" in out
        and "promote_yamnet_256.json: not from this run" in out
    )
    assert "yamnet_256" not in _section(page, "Promotion") and "yamnet_1024" in _section(page, "Promotion")
    assert "Not from this run" in _section(page, "Files")
    assert verdict["verdict"] == "pass" and "no gate verdict for this run" in _section(page, "Gate")


def test_files_of_a_model_this_run_did_not_evaluate_are_listed_apart(tmp_path: Path, capsys) -> None:
    reports = _reference_copy(tmp_path / "reports")
    evaluate = json.loads((reports / "evaluate.json").read_text())
    del evaluate["metrics"]["yamnet_1024"]  # this run: models.names [yamnet_256]
    (reports / "evaluate.json").write_text(json.dumps(evaluate))
    code, out, _ = _page(reports, capsys)
    page = (reports / "index.html").read_text()
    assert code == 0 and "hil_yamnet_1024.json: not from this run" in out
    assert "metrics/evaluate/yamnet_1024.json: not from this run" in out
    assert "yamnet_1024" not in _section(page, "Metrics") and "yamnet_1024" not in _section(page, "Gate")
    assert page.count('src="data:image/png;base64,') == 3  # yamnet_256: two confusion matrices, one curve


def test_a_three_class_run_renders(tmp_path: Path, capsys) -> None:
    """A user's own small dataset: three classes, one model, no board stages yet."""
    reports = tmp_path / "reports"
    classes = ["crying_baby", "dog", "rooster"]
    summary = {"clip_accuracy": {"random": 0.9, "mean": 0.9}, "n_clips": 12, "split": "random"}
    evaluate = {"metrics": {"yamnet_256": {"float32": summary, "tflite": summary}}}
    (reports / "yamnet_256" / "history").mkdir(parents=True)
    (reports / "evaluate.json").write_text(json.dumps(evaluate))
    matrix = [[4, 0, 0], [1, 3, 0], [0, 0, 4]]
    evaluation = {"class_names": classes, "formats": {"float32": {"confusion": matrix}}}
    (reports / "yamnet_256" / "evaluation.json").write_text(json.dumps(evaluation))
    (reports / "yamnet_256" / "history" / "random.csv").write_text(
        "phase,epoch,val_accuracy\nhead,1,0.5\nhead,2,x\n"
    )
    code, out, err = _page(reports, capsys)
    page = (reports / "index.html").read_text()
    assert (code, err) == (0, "")
    assert page.count('src="data:image/png;base64,') == 2
    assert "no gate verdict for this run" in _section(page, "Gate")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("truncated evaluate.json", "evaluate.json: not readable JSON"),
        ("evaluate.json is a list", "evaluate.json: expected a JSON object, found list"),
        ("hil record without latency", "hil_yamnet_256.json: latency_median_ms: missing"),
        ("history not UTF-8", "fold-1.csv: not a readable CSV"),
        ("no reports folder", "no such folder"),
        ("--out is a folder", "is a directory"),
        ("--out not html", "expected an .html file name"),
        ("reports is a file", "is a file, expected the run's reports folder"),
        ("unknown --model-name", "--model-name yamnet256: no report of it in"),
        ("model name is a path", "model name '../x': expected a plain name"),
        ("accuracy above 1", "float32.clip_accuracy.mean: 7.5 is not a fraction"),
        ("confusion not square", "formats.float32.confusion: expected a 10x10 table of counts"),
        ("gate checks not objects", "gate_yamnet_256.json: checks: every entry must be an object"),
        ("promotion inputs a list", "promote_yamnet_256.json: inputs: expected an object, found list"),
    ],
)
def test_bad_report_inputs_fail_with_one_line(tmp_path: Path, capsys, case: str, expected: str) -> None:
    reports = _reference_copy(tmp_path / "reports")
    extra: list[str] = []
    if case == "truncated evaluate.json":
        (reports / "evaluate.json").write_text((reports / "evaluate.json").read_text()[:100])
    elif case == "evaluate.json is a list":
        (reports / "evaluate.json").write_text("[1, 2]")
    elif case == "hil record without latency":
        hil = json.loads((reports / "hil_yamnet_256.json").read_text())
        del hil["metrics"]["latency_median_ms"]
        (reports / "hil_yamnet_256.json").write_text(json.dumps(hil))
    elif case == "history not UTF-8":
        (reports / "yamnet_256" / "history" / "fold-1.csv").write_bytes(b"\xff\xfe\x00bad")
    elif case == "no reports folder":
        shutil.rmtree(reports)
    elif case == "--out is a folder":
        extra = ["--out", str(tmp_path)]
    elif case == "--out not html":
        extra = ["--out", str(tmp_path / "page.json")]
    elif case == "reports is a file":
        shutil.rmtree(reports)
        reports.write_text("")
        extra = ["--out", str(tmp_path / "page.html")]
    elif case == "unknown --model-name":
        extra = ["--model-name", "yamnet256"]
    elif case == "model name is a path":
        _edit(reports / "evaluate.json", lambda d: d["metrics"].update({"../x": {}}))
    elif case == "accuracy above 1":
        _edit(
            reports / "evaluate.json",
            lambda d: d["metrics"]["yamnet_256"]["float32"]["clip_accuracy"].update(mean=7.5),
        )
    elif case == "confusion not square":
        _edit(
            reports / "yamnet_256" / "evaluation.json",
            lambda d: d["formats"]["float32"].update(confusion=[[1]]),
        )
    elif case == "gate checks not objects":
        _edit(reports / "gate_yamnet_256.json", lambda d: d.update(checks=["pass"]))
    elif case == "promotion inputs a list":
        _edit(reports / "promote_yamnet_256.json", lambda d: d.update(inputs=[]))
    code, _, err = _page(reports, capsys, *extra)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and expected in err and "Traceback" not in err, err


# -- the page in a browser, offline ----------------------------------------------------------------------------
def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium not installed (CI installs Debian's chromium package)")
    pytest.skip("chromium not installed (apt-get install chromium)")


# Written into the DOM once the page has loaded: each image's decoded size (0x0 if it could not load).
PROBE = (
    "<script>window.addEventListener('load', () => { for (const img of document.images) "
    "img.setAttribute('data-natural', img.naturalWidth + 'x' + img.naturalHeight); "
    "document.body.setAttribute('data-loaded', 'yes'); });</script>"
)


def test_the_page_renders_every_section_offline_in_headless_chromium(tmp_path: Path, capsys) -> None:
    browser = _chromium()
    reports = _reference_copy(tmp_path / "reports")
    code, _, _ = _page(reports, capsys)
    assert code == 0
    page = (reports / "index.html").read_text()
    # nothing outside the page: every src / href is embedded data, an anchor, or a relative file of the run
    for target in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert target.startswith(("data:image/png;base64,", "#")) or not re.match(r"^[a-z]+:|^//", target), (
            target
        )
    assert "@import" not in page and "url(" not in page
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert 'data-loaded="yes"' in dom, dom[:500]
    assert re.findall(r"<h2>([^<]*)</h2>", dom) == list(report.SECTIONS)
    sizes = [tuple(map(int, s.split("x"))) for s in re.findall(r'data-natural="(\d+x\d+)"', dom)]
    assert len(sizes) == 3 * len(MODELS)  # per model: float and int8 confusion matrices, one training curve
    assert all(w > 100 and h > 100 for w, h in sizes), sizes
    for model in MODELS:
        assert model in _section(dom, "Metrics") and f"{model}: verdict" in _section(dom, "Gate")
    assert "Not from this run" not in dom  # the reference run is consistent: nothing left over


def test_the_report_stage_runs_after_every_other_stage(tmp_path: Path) -> None:
    """The page shows the whole run: every stage of dvc.yaml is upstream of `report` (DVC builds the graph)."""
    work, env = _dvc_repo(tmp_path)
    stages = set(sh("dvc", "stage", "list", "--name-only", cwd=work, env=env).split())
    upstream = set(re.findall(r'^"([^"]+)";$', sh("dvc", "dag", "--dot", "report", cwd=work, env=env), re.M))
    assert "report" in stages and upstream == stages, stages - upstream


def test_evaluate_writes_one_compact_file_per_model(tmp_path: Path, monkeypatch) -> None:
    """The step's plumbing, with the evaluation itself replaced by the reference run's figures."""
    import components.evaluate as evaluate
    from aed.evaluation import EvaluateParams, ModelFolders

    reference = json.loads((REFERENCE / "evaluate.json").read_text())["metrics"]

    class Evaluated:
        def __init__(self, name: str) -> None:
            self.name = name

        def metrics(self) -> dict:
            return reference[self.name]

    # run() imports these where it uses them (aed --help stays light): replaced in their own modules
    monkeypatch.setattr("aed.patchstore.load_patch_store", lambda path: None)
    monkeypatch.setattr(
        "aed.evaluation.evaluate_model", lambda store, folders, params: Evaluated(folders.name)
    )
    monkeypatch.setattr("aed.evaluation.write_reports", lambda evaluation, folder: None)
    monkeypatch.setattr(evaluate, "write_record", lambda *args, **kwargs: None)
    folders = [ModelFolders.under(tmp_path / "models", name) for name in MODELS]
    target = tmp_path / "reports" / "metrics" / "evaluate"
    target.mkdir(parents=True)
    (target / "old_model.json").write_text('{"float_acc": 0.5}')  # an earlier run's model: DVC would list it
    (target / "notes.json").write_text('{"note": "mine"}')  # not evaluate's: left alone
    evaluate.run(EvaluateParams(), tmp_path / "patches", folders, tmp_path / "reports", None, target)
    for model in MODELS:
        assert json.loads((target / f"{model}.json").read_text()) == evaluation_figures(reference[model])
    assert sorted(p.name for p in target.iterdir()) == sorted([*(f"{m}.json" for m in MODELS), "notes.json"])
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match="--dvc-metrics-dir .*is a file"):
        evaluate.run(
            EvaluateParams(), tmp_path / "patches", folders, tmp_path / "reports", None, tmp_path / "a_file"
        )
