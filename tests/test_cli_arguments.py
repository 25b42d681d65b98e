"""One argument convention across `aed`: `--model PATH` is a model file the command reads, `--model-name NAME` a
model name (models.names); no model is positional. The old spellings (`--model NAME` for train, quantize,
evaluate and promote; `aed estimate MODEL`) still work and say on stderr what to write instead."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from components.cli import build_parser
from pipelines.cli import main, register

NOTE = "aed: note:"


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "aed") -> dict[str, argparse.ArgumentParser]:
    """{`aed train`: its parser, ...} for every (nested) subcommand."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"{prefix} {name}"] = sub
                found.update(_subparsers(sub, f"{prefix} {name}"))
    return found


def _visible(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [action for action in parser._actions if action.help is not argparse.SUPPRESS]


PARSERS = _subparsers(build_parser(None, {"pipeline": register}))


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_command_follows_the_model_convention(command: str) -> None:
    for action in _visible(PARSERS[command]):
        if not action.option_strings:  # a positional: never a model
            assert "model" not in action.dest, f"{command}: positional {action.dest}"
        if "--model" in action.option_strings:
            assert action.type is Path, f"{command}: --model must be a model file"
        if "--model-name" in action.option_strings:
            assert action.dest == "model_name" and action.type is not Path, command
        assert not ({"--model-file", "--name", "--model-path"} & set(action.option_strings)), command


def _parse(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[argparse.Namespace, str]:
    args = build_parser(argv[0], {"pipeline": register}).parse_args(argv)
    return args, capsys.readouterr().err


# (new spelling, old spelling) of the same command
BOTH_FORMS = {
    "train": (["train", "--model-name", "yamnet_1024"], ["train", "--model", "yamnet_1024"]),
    "quantize": (["quantize", "--model-name", "yamnet_256"], ["quantize", "--model=yamnet_256"]),
    "promote": (
        ["promote", "--model-name", "kws", "--gate", "g.json", "--artifact", "model=m", "--out", "p.json"],
        ["promote", "--model", "kws", "--gate", "g.json", "--artifact", "model=m", "--out", "p.json"],
    ),
}


@pytest.mark.parametrize("command", sorted(BOTH_FORMS))
def test_the_old_model_spelling_still_works_with_a_deprecation_note(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    new, old = BOTH_FORMS[command]
    new_args, new_err = _parse(new, capsys)
    old_args, old_err = _parse(old, capsys)
    assert vars(new_args) == vars(old_args)
    assert new_err == ""
    assert old_err.count("\n") == 1 and old_err.startswith(
        f"{NOTE} --model NAME is deprecated; use --model-name"
    )


def test_evaluate_mixes_both_spellings_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    args, err = _parse(["evaluate", "--model-name", "yamnet_256", "--model", "yamnet_1024"], capsys)
    assert args.model_name == ["yamnet_256", "yamnet_1024"]
    assert err.count(NOTE) == 1
    args, err = _parse(["evaluate"], capsys)
    assert args.model_name is None and err == ""  # default: models.names


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train"], "one of the arguments --model-name is required"),
        (["train", "--model-name", "yamnet_256", "--model", "yamnet_1024"], "not allowed with argument"),
        (["quantize", "--model-name"], "expected one argument"),
    ],
)
def test_a_missing_or_doubled_model_name_is_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith(NOTE)]
    assert done.value.code == 2 and len(err) == 1 and message in err[0], err


def test_estimate_takes_the_model_as_an_option_and_still_positionally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.tflite"
    assert main(["estimate", "--model", str(missing), "--target", "stm32u5"]) == 2
    new_err = capsys.readouterr().err
    assert new_err == f"aed estimate: error: {missing}: model file not found\n"
    assert main(["estimate", str(missing), "--target", "stm32u5"]) == 2
    old_err = capsys.readouterr().err
    assert old_err == f"{NOTE} aed estimate MODEL is deprecated; use aed estimate --model MODEL\n" + new_err
    assert main(["estimate", str(missing), "--model", str(missing), "--target", "stm32u5"]) == 2
    assert "give the model once" in capsys.readouterr().err
    assert main(["estimate", "--target", "stm32u5"]) == 2
    assert capsys.readouterr().err == "aed estimate: error: give the model file: --model PATH\n"


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.hil.conftest import build_tiny_int8

    return build_tiny_int8(tmp_path_factory.mktemp("model") / "tiny_int8.tflite")


def test_estimate_reads_the_same_model_either_way(
    tiny_int8: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["estimate", "--model", str(tiny_int8), "--target", "stm32u5", "--json"]) == 0
    new = capsys.readouterr()
    assert main(["estimate", str(tiny_int8), "--target", "stm32u5", "--json"]) == 0
    old = capsys.readouterr()
    figures = [{k: v for k, v in json.loads(out).items() if k != "elapsed_s"} for out in (old.out, new.out)]
    assert figures[0] == figures[1] and figures[0]["target"] == "stm32u5"
    assert new.err == "" and old.err.startswith(NOTE)
