"""What training says on the console: each effective setting with its source (`aed train`, `aed params show`),
a teacher skipped when it is not among models.names, and one progress line per epoch outside a terminal."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml

from aed.params import ParamsError, read_params
from aed.settings import Setting, effective_settings, format_settings
from aed.training import TrainParams, progress
from aed.training.fit import FitData, FitPlan, Selection, ValidationSet, train_on_cache

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def _params_file(tmp_path: Path, **train: object) -> Path:
    """The repository's params.yaml with train keys replaced (the issue's user: a short run, fine_tune_epochs 0)."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"].update(train)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _aed(*argv: str) -> tuple[int, str, str]:
    from pipelines.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:
            code = int(exit_.code or 0)
    return code, out.getvalue(), err.getvalue()


def _row(rows: list[Setting], key: str) -> Setting:
    (row,) = [row for row in rows if row.key == key]
    return row


# -- the rows -------------------------------------------------------------------------------------------------
def test_an_override_that_beats_the_top_level_value_is_named_as_the_source() -> None:
    section = {"fine_tune_epochs": 0, "epochs": 5, "overrides": {"yamnet_256": {"fine_tune_epochs": 40}}}
    rows = effective_settings("train", TrainParams, section, "yamnet_256")
    assert _row(rows, "train.fine_tune_epochs") == Setting(
        "train.fine_tune_epochs", 40, "train.overrides.yamnet_256"
    )
    assert _row(rows, "train.epochs") == Setting("train.epochs", 5, "params.yaml")
    assert _row(rows, "train.seed") == Setting("train.seed", 120, "default")
    assert "train.overrides" not in {row.key for row in rows}  # folded into the values
    other = effective_settings("train", TrainParams, section, "yamnet_1024")
    assert _row(other, "train.fine_tune_epochs") == Setting("train.fine_tune_epochs", 0, "params.yaml")
    top = effective_settings("train", TrainParams, section)
    assert _row(top, "train.fine_tune_epochs").value == 0
    assert _row(top, "train.overrides").value == {"yamnet_256": {"fine_tune_epochs": 40}}
    # a key set to its default value in the file is still the file's
    assert _row(effective_settings("train", TrainParams, {"seed": 120}), "train.seed").source == "params.yaml"


def test_every_field_of_the_class_has_a_row_and_nested_classes_are_dotted() -> None:
    from aed.datasets.ingest import IngestParams

    rows = effective_settings("ingest", IngestParams, {"fsd50k": {"classes": ["Dog"]}})
    assert _row(rows, "ingest.fsd50k.classes") == Setting("ingest.fsd50k.classes", ["Dog"], "params.yaml")
    assert _row(rows, "ingest.fsd50k.use_unknown_class").source == "default"
    assert len(effective_settings("train", TrainParams, None)) == len(TrainParams.__dataclass_fields__)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"epochs": "ten"}, "train.epochs: expected an integer, got 'ten'"),
        ({"epoch": 3}, "train: unknown key(s) ['epoch']"),
        ({"overrides": {"yamnet_256": {"epoch": 3}}}, "train.overrides.yamnet_256: unknown key(s) ['epoch']"),
        ({"overrides": {"yamnet_256": 3}}, "train.overrides.yamnet_256: expected a mapping of keys, got 3"),
    ],
)
def test_a_bad_section_is_refused_like_the_step_refuses_it(section: dict, message: str) -> None:
    with pytest.raises(ParamsError) as error:
        effective_settings("train", TrainParams, section, "yamnet_256")
    assert message in str(error.value)


def test_a_section_that_is_not_a_mapping_or_a_bad_override_of_another_model_is_refused() -> None:
    with pytest.raises(ParamsError, match="train: expected a mapping of keys, got list"):
        effective_settings("train", TrainParams, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ParamsError, match="train.overrides.yamnet_1024: expected a mapping of keys, got 5"):
        effective_settings("train", TrainParams, {"overrides": {"yamnet_1024": 5}})


def test_values_are_shown_as_params_yaml_spells_them() -> None:
    rows = [
        Setting("a.x", None, "default"),
        Setting("a.flag", True, "params.yaml"),
        Setting("a.n", [1, "b"], "d"),
    ]
    lines = format_settings(rows)
    assert [line.split()[:2] for line in lines] == [["a.x", "null"], ["a.flag", "true"], ["a.n", "[1,"]]
    assert all(line.endswith(f"({row.source})") for line, row in zip(lines, rows, strict=True))


# -- aed params show ------------------------------------------------------------------------------------------
def test_params_show_prints_every_section_with_sources(tmp_path: Path) -> None:
    path = _params_file(tmp_path, fine_tune_epochs=0)
    code, out, err = _aed("params", "show", "--params", str(path), "--model-name", "yamnet_256")
    assert code == 0, err
    for section in (
        "ingest",
        "validate",
        "patch",
        "models",
        "train",
        "quantize",
        "gate",
        "promote",
        "pipeline",
    ):
        assert f"\n{section}:\n" in f"\n{out}", section
    assert re.search(r"train\.fine_tune_epochs\s+40\s+\(train\.overrides\.yamnet_256\)", out), out
    assert re.search(r"train\.teacher\s+yamnet_1024\s+\(train\.overrides\.yamnet_256\)", out)
    code, out, err = _aed("params", "show", "--params", str(path), "--section", "train")
    assert code == 0 and re.search(r"train\.fine_tune_epochs\s+0\s+\(params\.yaml\)", out), err
    assert "ingest:" not in out and "train.overrides " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model-name", "yamnet256"],
            "unknown model 'yamnet256' (did you mean yamnet_256?); valid: yamnet_1024, yamnet_256",
        ),
        (["--section", "trian"], "--section 'trian': unknown section; known:"),
    ],
)
def test_params_show_refuses_a_bad_name_in_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    code, out, err = _aed("params", "show", "--params", str(REPO_PARAMS), *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and out == ""


def test_params_show_names_a_bad_value_and_a_section_no_step_reads(tmp_path: Path) -> None:
    path = _params_file(tmp_path, epochs=-1)
    code, _, err = _aed("params", "show", "--params", str(path))
    assert code == 2 and "train.epochs: -1 is out of range" in err and str(path) in err, err
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["trian"] = {"epochs": 3}
    path.write_text(yaml.safe_dump(params))
    code, out, err = _aed("params", "show", "--params", str(path))
    assert code == 0 and "trian: read by no step" in out, err


# -- aed train ------------------------------------------------------------------------------------------------
def test_train_prints_the_same_table_before_any_work(tmp_path: Path) -> None:
    """`aed train` prints its model's settings (then fails here on the missing patch store): the very lines of
    `aed params show --model-name NAME --section train`."""
    path = _params_file(tmp_path, fine_tune_epochs=0)
    teacher = tmp_path / "teacher"
    code, out, err = _aed(
        "train", "--params", str(path), "--model-name", "yamnet_256", "--patches", str(tmp_path / "none"),
        "--teacher", str(teacher),
    )  # fmt: skip
    assert code == 2 and "none" in err, err
    printed = [line for line in out.splitlines() if line.startswith("  train.")]
    _, shown, _ = _aed(
        "params", "show", "--params", str(path), "--model-name", "yamnet_256", "--section", "train"
    )
    assert printed and printed == shown.splitlines()[1:]
    assert re.search(r"train\.fine_tune_epochs\s+40\s+\(train\.overrides\.yamnet_256\)", out)
    expected = effective_settings("train", TrainParams, read_params(path)["train"], "yamnet_256")
    assert printed == format_settings(expected)


def test_train_skips_a_teacher_outside_models_names_visibly(tmp_path: Path) -> None:
    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["models"]["names"] = ["yamnet_256"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    code, out, err = _aed(
        "train", "--params", str(path), "--model-name", "yamnet_256", "--patches", str(tmp_path)
    )
    assert code == 2 and "index.csv" in err, err  # it got past the teacher check to the patch store
    assert (
        "train yamnet_256: distillation skipped: its teacher yamnet_1024 is not in models.names ['yamnet_256']"
        in out
    )


# -- progress -------------------------------------------------------------------------------------------------
def _fit(epochs: int, capsys: pytest.CaptureFixture) -> tuple[str, str]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, labels = rng.normal(size=(12, 4)).astype(np.float32), np.arange(12) % 3
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    data = FitData(lambda _k: x, 1, labels, ValidationSet(x, labels, np.arange(12)))
    plan = FitPlan("head", epochs, 0.01, label="yamnet_256 fold-1")
    capsys.readouterr()
    train_on_cache(model, data, plan, TrainParams(batch_size=4), rng, Selection())
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_outside_a_terminal_each_epoch_prints_one_line(capsys: pytest.CaptureFixture) -> None:
    out, _ = _fit(3, capsys)
    lines = [line for line in out.splitlines() if line.startswith("train ")]
    pattern = (
        r"train yamnet_256 fold-1 head epoch (\d)/3: loss \d+\.\d{4}, accuracy \d\.\d{4}, "
        r"val_accuracy \d\.\d{4}, \d+\.\d s"
    )
    assert [re.fullmatch(pattern, line).group(1) for line in lines] == ["1", "2", "3"], out


def test_on_a_terminal_a_bar_replaces_the_lines(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    out, err = _fit(2, capsys)
    assert "epoch 1/2" not in out
    assert "yamnet_256 fold-1 head" in err and "2/2" in err  # tqdm's bar and its count
    # a split worker shares the terminal with others: lines, never a bar
    monkeypatch.setattr(progress, "_lines_only", False)
    progress.use_lines()
    out, _ = _fit(2, capsys)
    assert "head epoch 2/2" in out


def test_the_line_shows_missing_validation_figures_as_a_dash() -> None:
    row = {"loss": 0.5, "accuracy": 1.0, "val_accuracy": float("nan")}
    line = progress.epoch_line("yamnet_1024 final", "fine_tune", 2, 20, row, 3.25)
    assert (
        line
        == "train yamnet_1024 final fine_tune epoch 2/20: loss 0.5000, accuracy 1.0000, val_accuracy -, 3.2 s"
    )


# -- a real run (YAMNet-256, tiny store) ----------------------------------------------------------------------
@pytest.mark.slow
def test_a_run_without_its_teacher_records_the_skip(
    yamnet_dir: Path, tiny_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import components.train as train
    from aed.models.config import ModelsParams

    params = TrainParams(
        folds=[2], final_model=False, epochs=2, fine_tune_epochs=0, augment_copies=1, batch_size=8,
        overrides={"yamnet_256": {"teacher": "yamnet_1024"}},
    )  # fmt: skip
    models = ModelsParams(names=["yamnet_256"])
    record = train.run(params, "yamnet_256", tiny_store, tmp_path / "m", tmp_path / "r", models)
    out = capsys.readouterr().out
    skipped = "its teacher yamnet_1024 is not in models.names ['yamnet_256']"
    assert record["distillation"] == {"teacher": "yamnet_1024", "used": False, "skipped": skipped}
    written = json.loads((tmp_path / "m" / "train.json").read_text())
    assert written["distillation"] == record["distillation"] and written["params"]["teacher"] is None
    assert record["splits"]["fold-2"]["distilled"] is False
    assert f"distillation skipped: {skipped}" in out
    assert "train yamnet_256 fold-2 head epoch 2/2: loss" in out
