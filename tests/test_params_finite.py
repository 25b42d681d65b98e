"""Params are finite and in range in every section; the front end's cross-field limits; params files that cannot
be read; `--set` on what nothing reads; vboard fault values. Each refusal names the file or key in one line."""

from __future__ import annotations

import dataclasses
import importlib
import math
import typing
from pathlib import Path

import pytest
import yaml

from aed.features import FeatureConfig
from aed.params import ParamsError, from_dict, load_section, read_params
from aed.patching import PatchParams

REPO = Path(__file__).resolve().parents[1]
STEPS = ("ingest", "validate", "patch", "train", "quantize", "evaluate", "convert", "export_firmware", "hil",
         "gate", "promote")  # fmt: skip


def _sections() -> dict[str, type]:
    """{params.yaml section: dataclass} for every section a step or the pipeline reads."""
    from pipelines.cli import PipelineParams
    from pipelines.glue import params_sections

    found: dict[str, type] = {"pipeline": PipelineParams}
    for step in STEPS:
        for name, cls in params_sections(importlib.import_module(f"components.{step}")).values():
            found[name] = cls
    return found


def _float_fields() -> list[tuple[str, str]]:
    """(section, key) of every float-typed param (float or float | None), nested dataclasses excluded."""
    fields = []
    for section, cls in sorted(_sections().items()):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            if hint is float or float in typing.get_args(hint):
                fields.append((section, field.name))
    return fields


FLOAT_FIELDS = _float_fields()


def test_the_sections_have_float_params() -> None:
    names = {f"{s}.{k}" for s, k in FLOAT_FIELDS}
    assert {"train.learning_rate", "gate.min_cosine", "patch.fmax", "patch.log_offset"} <= names, names


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(("section", "key"), FLOAT_FIELDS, ids=[f"{s}.{k}" for s, k in FLOAT_FIELDS])
def test_every_float_param_refuses_nan_and_inf(section: str, key: str, value: float, tmp_path: Path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.setdefault(section, {})[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as error:
        load_section(path, section, _sections()[section])
    message = str(error.value)
    assert f"{section}.{key}: expected a finite number" in message and str(path) in message
    assert "\n" not in message


def test_nan_in_a_per_model_override_is_refused() -> None:
    from aed.training import TrainParams

    params = from_dict(TrainParams, {"overrides": {"yamnet_256": {"learning_rate": float("nan")}}}, "train")
    with pytest.raises(ParamsError, match=r"train\.overrides\.yamnet_256\.learning_rate: expected a finite"):
        params.for_model("yamnet_256")


def test_huge_integers_for_a_float_param_are_refused() -> None:
    with pytest.raises(ParamsError, match=r"patch\.fmax: .* too large"):
        from_dict(PatchParams, {"fmax": 10**400}, "patch")


def test_mapping_values_are_typed() -> None:
    from components.hil import HilParams

    with pytest.raises(ParamsError, match=r"hil\.profiles\.yamnet_256: expected a string"):
        from_dict(HilParams, {"profiles": {"yamnet_256": 5}}, "hil")


# -- the front end -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"log_offset": 0.0}, "log_offset"),
        ({"log_offset": -1e-3}, "log_offset"),
        ({"fmin": -1.0}, "fmin"),
        ({"fmin": 7500.0}, "fmin"),
        ({"fmin": 8000.0}, "fmin"),
        ({"fmax": 8000.5}, "fmax"),
        ({"sample_rate": 8000}, "fmax"),  # 7500 Hz is above 8 kHz's Nyquist
        ({"win_length": 513}, "win_length"),
        ({"hop_length": 401}, "hop_length"),
        ({"hop_length": 0}, "hop_length"),
        ({"patch_step": 97}, "patch_step"),
        ({"patch_step": 0}, "patch_step"),
        ({"patch_frames": 998}, "patch_frames"),  # 10 s at 16 kHz, hop 160, n_fft 512: 997 frames
        ({"max_duration_s": 0.5, "min_length_s": 0.5}, "patch_frames"),
        ({"min_length_s": 11.0}, "min_length_s"),
        ({"n_mels": 200}, "n_mels"),  # more bands than FFT bins between fmin and fmax: empty bands
        ({"silence_top_db": math.nan}, "silence_top_db"),
        ({"max_duration_s": math.inf}, "max_duration_s"),
    ],
)
def test_front_end_cross_field_limits(changes: dict, key: str) -> None:
    with pytest.raises(ValueError, match=rf"^{key}: "):
        FeatureConfig(**changes)


def test_the_default_front_end_is_valid_and_the_longest_patch_fits() -> None:
    assert FeatureConfig().max_frames() == 997
    FeatureConfig(patch_frames=997, patch_step=1)


def test_patch_params_refuse_a_bad_front_end_at_load(tmp_path: Path) -> None:
    """Before any clip is read: the error comes from load_section, with the file and the key."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["patch"]["log_offset"] = 0
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError, match=rf"^{path}: patch\.log_offset: 0\.0 must be > 0"):
        load_section(path, "patch", PatchParams)


# -- params files --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("patch:\n  fmax: [7500\n  fmin: 125\n", "line 3"),
        ("patch:\n\tfmax: 1\n", "line 2"),
        ("patch: !!python/object/apply:os.system ['true']\n", "line 1"),
        ("- a\n- b\n", "expected a mapping of sections"),
        ("patch: {a: 1\n", "invalid YAML"),
    ],
)
def test_unreadable_params_files_are_one_line_naming_the_file(
    text: str, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as error:
        read_params(path)
    assert str(error.value).startswith(f"{path}: ") and fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_non_utf8_and_directory_params(tmp_path: Path) -> None:
    (tmp_path / "bin.yaml").write_bytes(b"patch:\n  fmax: \xff\xfe\n")
    with pytest.raises(ParamsError, match="not UTF-8"):
        read_params(tmp_path / "bin.yaml")
    with pytest.raises(ParamsError, match="not a regular file"):
        read_params(tmp_path)


@pytest.mark.parametrize("section", [5, [1, 2], "text", True])
def test_a_section_of_the_wrong_type_names_the_file_and_section(section: object, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"patch": section}))
    with pytest.raises(ParamsError, match=rf"^{path}: patch: expected a mapping of keys"):
        load_section(path, "patch", PatchParams)


# -- --set --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("bogus.key=1", "unknown section 'bogus'"),
        ("patch.bogus=1", "unknown key patch.bogus"),
        ("pipeline.hots=http://x", "unknown key pipeline.hots"),
        ("traing.epochs=3", "unknown section 'traing'"),
        (
            "config.fmax=1",
            "unknown section 'config'",
        ),  # export_firmware's FeatureConfig argument is no section
    ],
)
def test_set_refuses_what_nothing_reads(item: str, message: str) -> None:
    from pipelines.cli import load_checked

    with pytest.raises(ParamsError, match=rf"--set '{item}': {message}"):
        load_checked(REPO / "params.yaml", [item])


def test_set_still_accepts_known_keys_and_checks_their_values() -> None:
    from pipelines.cli import load_checked

    params, _, _ = load_checked(
        REPO / "params.yaml", ["patch.fmax=7000", "train.overrides.yamnet_256.epochs=3"]
    )
    assert params["patch"]["fmax"] == 7000
    with pytest.raises(ParamsError, match=r"patch\.fmax: expected a finite number"):
        load_checked(REPO / "params.yaml", ["patch.fmax=.inf"])


# -- vboard faults ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    ["drop=abc", "drop=0", "drop=-1", "stop=1.5", "version=x.y", "version=1.2.3", "version=256.0", "noise=nan",
     "noise=-0.1", "delay=inf", "delay=-1", "reset_pause=nan", "bogus=1", "drop", "=3"],
)  # fmt: skip
def test_bad_fault_values_are_refused(spec: str) -> None:
    from hil_runner.vboard.faults import parse_faults

    with pytest.raises(ValueError, match="--fault"):
        parse_faults([spec])


def test_good_fault_values_parse() -> None:
    from hil_runner.vboard.faults import parse_faults

    plan = parse_faults(["drop=2,noise=0.05", "version=4.0", "delay=0", "reset_pause=1"])
    assert (plan.drop, plan.noise, plan.version_word, plan.delay) == (2, 0.05, 0x400, 0.0)
