"""A wrong model name, wherever one is accepted (a command-line argument, params `models.names`, a per-model
params key), stops the command with one line that names where it came from and lists the valid names: never a
KeyError, a traceback, or a silent fallback."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aed.model_specs import MODEL_SPECS, UnknownModelError, check_model_name
from aed.models.config import ModelsParams
from aed.params import ParamsError
from pipelines.cli import main

VALID = ", ".join(sorted(MODEL_SPECS))
# Every subcommand that takes a model name, with the other arguments it requires (never reached).
COMMANDS = {
    "train": ["train", "--model-name", "{name}"],
    "quantize": ["quantize", "--model-name", "{name}"],
    "evaluate": ["evaluate", "--model-name", "yamnet_256", "--model-name", "{name}"],
    "hil run": ["hil", "run", "--model", "m.tflite", "--model-name", "{name}"],
    "gate": ["gate", "--model-name", "{name}"],
    "train (old --model)": ["train", "--model", "{name}"],
    "quantize (old --model)": ["quantize", "--model={name}"],
    "evaluate (old --model)": ["evaluate", "--model", "{name}"],
}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    try:
        code = main(argv)
    except SystemExit as done:
        code = int(done.code or 0)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if not line.startswith("aed: note:")]


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", ["yamnet256", "YAMNet_256", "yamnet_1024 ", "", "../x"])
def test_a_wrong_model_name_on_the_command_line_is_one_line_listing_the_valid_ones(
    command: str,
    name: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # nothing may be written, wherever the command runs
    code, lines = _run([arg.format(name=name) for arg in COMMANDS[command]], capsys)
    assert code == 2
    assert len(lines) == 1, lines
    assert f"unknown model {name!r}" in lines[0] and f"valid: {VALID}" in lines[0]
    assert "Traceback" not in lines[0] and "KeyError" not in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_the_closest_valid_name_is_suggested() -> None:
    with pytest.raises(UnknownModelError, match=r"'yamnet256' \(did you mean yamnet_256\?\)"):
        check_model_name("yamnet256", "--model-name")
    with pytest.raises(UnknownModelError, match=r"^models.names: unknown model 'mobilenet'; valid: "):
        check_model_name("mobilenet", "models.names")
    assert check_model_name("yamnet_1024") == "yamnet_1024"


@pytest.mark.parametrize("names", [["yamnet256"], ["yamnet_256", "yamnet_1024x"], "yamnet_256", [3]])
def test_params_models_names_are_checked_with_the_valid_names(names: object) -> None:
    with pytest.raises(ParamsError, match=f"^models.names: .*valid: {VALID}|^models.names: expected a list"):
        ModelsParams(names=names).validate()  # type: ignore[arg-type]


def test_evaluate_with_a_wrong_name_in_params_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"models": {"names": ["yamnet_256", "yamnet256"]}}))
    monkeypatch.chdir(tmp_path)
    code, lines = _run(["evaluate", "--params", str(params)], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "models.names: unknown model 'yamnet256' (did you mean yamnet_256?)" in lines[0]


def test_convert_lists_the_models_that_have_a_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """convert's names are the keys of convert.targets (a user may convert any model they name there)."""
    params = tmp_path / "params.yaml"
    params.write_text("convert:\n  targets: {yamnet_256: stm32u5, yamnet_1024: stm32n6}\n")
    model = tmp_path / "m.tflite"
    model.write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    argv = ["convert", "--params", str(params), "--model", str(model), "--model-name", "yamnet256",
            "--out", str(tmp_path / "out"), "--record", str(tmp_path / "c.json")]  # fmt: skip
    code, lines = _run(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert "no target for model 'yamnet256'; models with one: yamnet_1024, yamnet_256" in lines[0]
