"""A corpus of bad inputs driven through the real `aed` CLI: every case must end with one clear line and exit 2
(130 for Ctrl-C), never a Python traceback and never a hang.

Most cases run in-process through `pipelines.cli.main` (the console script) (fast: TensorFlow is imported once); a few run as real
subprocesses, where a traceback would really be printed: SIGINT during `aed hil run`, a listener that does not
speak HTTP given to `aed pipeline submit`, and broken params files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.cli import main
from tests.conftest import default_sigint

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
BOARD = "b-u585i-iot02a"


# -- the corpus directory --------------------------------------------------------------------------------------
def _params_with(path: Path, changes: dict[str, dict]) -> Path:
    """params.yaml with `changes` ({section: {key: value}}) merged in, written to `path`."""
    data = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in DEFAULT_PARAMS.items()
    }
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return path


# Bad params files: name -> {section: {key: value}} merged into the repository's params.yaml.
BAD_PARAMS: dict[str, dict[str, dict]] = {
    "fmax_inf": {"patch": {"fmax": float("inf")}},
    "fmin_nan": {"patch": {"fmin": float("nan")}},
    "log_offset_zero": {"patch": {"log_offset": 0.0}},
    "log_offset_nan": {"patch": {"log_offset": float("nan")}},
    "win_over_fft": {"patch": {"win_length": 600}},
    "hop_over_win": {"patch": {"hop_length": 500}},
    "step_over_frames": {"patch": {"patch_step": 100}},
    "fmin_over_fmax": {"patch": {"fmin": 8000.0}},
    "fmax_over_nyquist": {"patch": {"fmax": 9000.0}},
    "huge_patch_frames": {"patch": {"patch_frames": 5000, "patch_step": 72}},
    "min_length_over_max": {"patch": {"min_length_s": 20.0}},
    "lr_nan": {"train": {"learning_rate": float("nan")}},
    "override_nan": {"train": {"overrides": {"yamnet_256": {"teacher_weight": float("nan")}}}},
    "gate_cosine_nan": {"gate": {"min_cosine": float("nan")}},
    "gate_drop_neg_inf": {"gate": {"max_accuracy_drop": float("-inf")}},
    "validate_share_nan": {"validate": {"min_share": float("nan")}},
    "validate_silent_inf": {"validate": {"silent_peak_dbfs": float("-inf")}},
    "hil_scale_inf": {"hil": {"timeout_scale": float("inf")}},
    "convert_timeout_nan": {"convert": {"timeout_s": float("nan")}},
    "promote_timeout_inf": {"promote": {"timeout_s": float("inf")}},
    "export_ood_nan": {"export_firmware": {"ood_threshold": float("nan")}},
    "pipeline_timeout_nan": {"pipeline": {"request_timeout_s": float("nan")}},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aed.patchstore import write_patch_store

    d = tmp_path_factory.mktemp("corpus")
    (d / "good.yaml").write_text((REPO / "params.yaml").read_text())
    (d / "broken.yaml").write_text("patch:\n  fmax: [7500\n  fmin: 125\n")
    (d / "tabs.yaml").write_text("patch:\n\tfmax: 7500\n")
    (d / "wrong_type.yaml").write_text("patch: 5\n")
    (d / "wrong_type_list.yaml").write_text("train: [1, 2]\n")
    (d / "top_list.yaml").write_text("- patch\n- train\n")
    (d / "pyobj.yaml").write_text("patch: !!python/object/apply:os.system ['true']\n")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00\x81garbage\x00\x9f")
    for name, changes in BAD_PARAMS.items():
        _params_with(d / f"{name}.yaml", changes)
    (d / "a_dir").mkdir()
    (d / "dir.tflite").mkdir()
    (d / "empty.yaml").write_text("")
    _params_with(d / "override_scalar.yaml", {"train": {"overrides": {"yamnet_256": 5}}})
    _params_with(d / "profiles_int.yaml", {"hil": {"profiles": {"yamnet_256": 5}}})
    (d / "empty.tflite").write_bytes(b"")
    real = Path(os.environ.get("AED_SHARED_DIR", REPO.parent / "shared")) / "models/yamnet"
    tflite = next(real.glob("*.tflite"), None)
    head = tflite.read_bytes()[:4096] if tflite else b"\x1c\x00\x00\x00TFL3" + bytes(4000)
    (d / "truncated.tflite").write_bytes(head)
    (d / "tflite.onnx").write_bytes(head)
    (d / "garbage.onnx").write_bytes(b"this is not a protobuf" * 10)
    (d / "not_json.json").write_text("{ not json")
    (d / "list.json").write_text("[1, 2, 3]\n")
    (d / "null_key.json").write_text('{"key": null, "metrics": []}\n')
    (d / "manifest_garbage.csv").write_text("a,b\n1,2\n")
    (d / "manifest_binary.csv").write_bytes(b"\x00\xff\xfe\x81" * 50)
    (d / "fsd_bad.yaml").write_text(
        yaml.safe_dump({**DEFAULT_PARAMS, "ingest": {**DEFAULT_PARAMS["ingest"], "layout": "nope"}})
    )
    # A small, valid patch store, and model folders whose files are truncated.
    classes = [f"c{i}" for i in range(3)]
    rng = np.random.default_rng(0)
    clips = [
        ({"clip_id": f"k{i}", "label": classes[i % 3], "fold": 1, "split": "test"},
         rng.normal(size=(2, 64, 96, 1)).astype(np.float32))
        for i in range(6)
    ]  # fmt: skip
    write_patch_store(d / "patches", clips, classes)
    splits = {"splits": {"fold-1": {"test_fold": 1, "train": ["k0", "k1"], "val": [], "test": ["k2"]}}}
    for model_dir in (d / "models/yamnet_256/float", d / "models/yamnet_256/int8"):
        (model_dir / "fold-1").mkdir(parents=True)
        (model_dir / "splits.json").write_text(json.dumps(splits))
    (d / "models/yamnet_256/float/fold-1/model.keras").write_bytes(b"PK\x03\x04truncated")
    (d / "models/yamnet_256/int8/fold-1/model_int8.tflite").write_bytes(head)
    (d / "bad_splits").mkdir()
    (d / "bad_splits/splits.json").write_text("{ not json")
    (d / "int8_dir").mkdir()
    (d / "int8_dir/model_int8.tflite").write_bytes(head)
    return d


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]  # "{d}" is replaced by the corpus directory
    code: int = 2
    one_line: bool = True  # False: the step's own report comes first (the gate's table on stdout)
    expect: str = ""  # the error line must contain this (the file or key at fault), not just any error

    def args(self, d: Path) -> list[str]:
        return [arg.replace("{d}", str(d)) for arg in self.argv]


def _c(name: str, *argv: str, code: int = 2, expect: str = "") -> Case:
    return Case(name, argv, code, expect=expect)


def _line(name: str, command: str, code: int = 2, expect: str = "") -> Case:
    """A case written as its command line (split as a shell would), one line per case."""
    return _c(name, *shlex.split(command), code=code, expect=expect)


def _gate(name: str, record: str) -> Case:
    """A gate with an unusable record: UNDECIDABLE, exit 2, its table on stdout (the record's content checks
    themselves are the gate's own tests)."""
    argv = ("gate", "--params", "{d}/good.yaml", "--record", record, "--baseline", "{d}/missing_baseline.json",
            "--verdict", "{d}/v.json")  # fmt: skip
    return Case(name, argv, one_line=False)


PARAMS_CASES = [
    _line("broken yaml", "patch --params {d}/broken.yaml"),
    _line("yaml with tabs", "gate --params {d}/tabs.yaml"),
    _line("section of wrong type", "patch --params {d}/wrong_type.yaml"),
    _line("section is a list", "train --params {d}/wrong_type_list.yaml --model-name yamnet_256"),
    _line("top level is a list", "validate --params {d}/top_list.yaml"),
    _line("python object tag", "patch --params {d}/pyobj.yaml"),
    _line("params not utf-8", "patch --params {d}/binary.yaml"),
    _line("params missing", "gate --params {d}/missing.yaml"),
    _line("params is a directory", "patch --params {d}/a_dir"),
    _line("bad ingest layout", "ingest --params {d}/fsd_bad.yaml --raw-dir {d}/raw"),
]

STEP_OF_SECTION = {
    "patch": ("patch", "--manifest", "{d}/missing.csv", "--raw-dir", "{d}/raw", "--out", "{d}/p_out"),
    "train": ("train", "--model-name", "yamnet_256", "--patches", "{d}/patches", "--out", "{d}/t_out"),
    "gate": ("gate", "--record", "{d}/missing.json", "--verdict", "{d}/verdict.json"),
    "validate": (
        "validate",
        "--manifest",
        "{d}/missing.csv",
        "--raw-dir",
        "{d}/raw",
        "--data-docs",
        "{d}/dd",
    ),
    "hil": ("hil", "run", "--model", "{d}/missing.tflite", "--patches", "{d}/patches", "--out", "{d}/h.json"),
    "convert": (
        "convert",
        "--model",
        "{d}/missing.tflite",
        "--target",
        "stm32u5",
        "--out",
        "{d}/c",
        "--record",
        "{d}/c.json",
    ),  # fmt: skip
    "promote": (
        "promote",
        "--model-name",
        "yamnet_256",
        "--gate",
        "{d}/missing.json",
        "--artifact",
        "m={d}/x",
        "--out",
        "{d}/prom.json",
    ),  # fmt: skip
    "export_firmware": ("export-firmware", "--model", "{d}/missing.tflite", "--out", "{d}/fw"),
    "pipeline": ("pipeline", "compile", "--out", "{d}/pipe.yaml"),
}


def _param_case(name: str) -> Case:
    section = next(iter(BAD_PARAMS[name]))
    step = STEP_OF_SECTION[section]
    split = 2 if step[0] in ("hil", "pipeline") else 1
    key = f"{section}.{next(iter(BAD_PARAMS[name][section]))}"
    argv = (*step[:split], "--params", f"{{d}}/{name}.yaml", *step[split:])
    return Case(f"param {name}", argv, expect=key)


FRONT_END_ON_EXPORT = [
    Case(
        f"export-firmware {name}",
        (
            "export-firmware",
            "--params",
            f"{{d}}/{name}.yaml",
            "--model",
            "{d}/missing.tflite",
            "--out",
            "{d}/fw",
        ),
    )  # fmt: skip
    for name in ("log_offset_zero", "fmax_inf")
]

SET_CASES = [
    _line(
        "--set unknown section",
        "pipeline compile --params {d}/good.yaml --set bogus.key=1 --out {d}/pipe.yaml",
    ),
    _line(
        "--set unknown key", "pipeline compile --params {d}/good.yaml --set patch.bogus=1 --out {d}/pipe.yaml"
    ),
    _line(
        "--set nan", "pipeline run-local --params {d}/good.yaml --set train.learning_rate=.nan --root {d}/pr"
    ),
    _line("--set without =", "pipeline compile --params {d}/good.yaml --set patch.fmax --out {d}/pipe.yaml"),
    _line(
        "--set python tag",
        "pipeline compile --params {d}/good.yaml --set 'patch.fmax=!!python/object/apply:os.system ['\"'\"'true'\"'\"']' --out {d}/pipe.yaml",
    ),
    _line(
        "--set section to scalar", "pipeline compile --params {d}/good.yaml --set patch=3 --out {d}/pipe.yaml"
    ),
]

MODEL_CASES = [
    _line("estimate truncated tflite", "estimate --model {d}/truncated.tflite --target stm32u5"),
    _line("estimate empty tflite", "estimate --model {d}/empty.tflite --target stm32u5"),
    _line("estimate garbage onnx", "estimate --model {d}/garbage.onnx --target stm32n6"),
    _line("estimate directory", "estimate --model {d}/a_dir --target stm32u5"),
    _line("estimate missing", "estimate --model {d}/missing.tflite --target stm32u5"),
    _line("estimate bad target", "estimate --model {d}/truncated.tflite --target stm32f4"),
    _line(
        "convert truncated tflite",
        "convert --params {d}/good.yaml --model {d}/truncated.tflite --target stm32u5 --out {d}/c_out --record {d}/c.json",
    ),
    _line(
        "convert model is a directory",
        "convert --params {d}/good.yaml --model {d}/a_dir --target stm32u5 --out {d}/c_out --record {d}/c.json",
    ),
    _line(
        "convert no target",
        "convert --params {d}/good.yaml --model {d}/truncated.tflite --model-name nope --out {d}/c_out --record {d}/c.json",
    ),
    _line(
        "export-firmware truncated tflite",
        "export-firmware --params {d}/good.yaml --model {d}/truncated.tflite --out {d}/fw",
    ),
    _line(
        "quantize truncated keras",
        "quantize --params {d}/good.yaml --model-name yamnet_256 --patches {d}/patches --model-dir {d}/models/yamnet_256/float --out {d}/q_out",
    ),
    _line(
        "evaluate truncated models",
        "evaluate --params {d}/good.yaml --model-name yamnet_256 --patches {d}/patches --models-root {d}/models --reports {d}/rep --metrics {d}/rep/m.json",
    ),
    _line(
        "hil truncated tflite",
        "hil run --params {d}/good.yaml --model {d}/truncated.tflite --patches {d}/patches --out {d}/h.json --no-progress",
    ),
    _line(
        "hil quantized dir truncated",
        "hil run --params {d}/good.yaml --quantized-dir {d}/int8_dir --patches {d}/patches --out {d}/h.json --no-progress",
    ),
    _line(
        "hil patches missing",
        "hil run --params {d}/good.yaml --model {d}/truncated.tflite --patches {d}/missing --out {d}/h.json --no-progress",
    ),
    _line(
        "hil unknown board",
        "hil run --params {d}/good.yaml --model {d}/truncated.tflite --boards nucleo-nope --patches {d}/patches --out {d}/h.json",
    ),
    _line(
        "train patches missing",
        "train --params {d}/good.yaml --model-name yamnet_256 --patches {d}/missing --out {d}/t_out",
    ),
    _line(
        "train patches is empty dir",
        "train --params {d}/good.yaml --model-name yamnet_256 --patches {d}/a_dir --out {d}/t_out",
    ),
    _line(
        "train unknown model",
        "train --params {d}/good.yaml --model-name resnet --patches {d}/patches --out {d}/t_out",
    ),
]

OUT_IS_A_FOLDER = [
    _line("estimate --out folder", "estimate --model {d}/truncated.tflite --target stm32u5 --out {d}/a_dir"),
    _line(
        "gate --verdict folder",
        "gate --params {d}/good.yaml --record {d}/not_json.json --verdict {d}/a_dir --baseline {d}/not_json.json",
    ),
    _line(
        "hil --out folder",
        "hil run --params {d}/good.yaml --model {d}/truncated.tflite --patches {d}/patches --out {d}/a_dir --no-progress",
    ),
    _line(
        "patch --metrics folder",
        "patch --params {d}/good.yaml --manifest {d}/a_dir --raw-dir {d}/raw --out {d}/p_out --metrics {d}/a_dir",
    ),
]

RECORD_CASES = [
    _gate("gate record not json", "{d}/not_json.json"),
    _gate("gate record missing", "{d}/missing.json"),
    _gate("gate record is a directory", "{d}/a_dir"),
    _gate("gate record with a null key", "{d}/null_key.json"),
    _line(
        "promote gate not json",
        "promote --params {d}/good.yaml --model-name yamnet_256 --gate {d}/not_json.json --artifact m={d}/truncated.tflite --out {d}/prom.json",
    ),
    _line(
        "promote bad artifact arg",
        "promote --params {d}/good.yaml --model-name yamnet_256 --gate {d}/list.json --artifact no-equals-sign --out {d}/prom.json",
    ),
    _line(
        "validate manifest missing",
        "validate --params {d}/good.yaml --manifest {d}/missing.csv --raw-dir {d}/raw --data-docs {d}/dd --report {d}/vr.json --validated {d}/v.csv",
    ),
    _line(
        "validate manifest is a directory",
        "validate --params {d}/good.yaml --manifest {d}/a_dir --raw-dir {d}/raw --data-docs {d}/dd --report {d}/vr.json --validated {d}/v.csv",
    ),
    _line(
        "validate manifest wrong columns",
        "validate --params {d}/good.yaml --manifest {d}/manifest_garbage.csv --raw-dir {d}/raw --data-docs {d}/dd --report {d}/vr.json --validated {d}/v.csv",
    ),
    _line(
        "patch manifest wrong columns",
        "patch --params {d}/good.yaml --manifest {d}/manifest_garbage.csv --raw-dir {d}/raw --out {d}/p_out --metrics {d}/pm.json",
    ),
    _line(
        "patch manifest binary",
        "patch --params {d}/good.yaml --manifest {d}/manifest_binary.csv --raw-dir {d}/raw --out {d}/p_out --metrics {d}/pm.json",
    ),
    _line(
        "ingest no-fetch raw dir missing",
        "ingest --params {d}/good.yaml --no-fetch --raw-dir {d}/missing --manifest {d}/m.csv --metrics {d}/im.json",
    ),
]

VBOARD = ("hil", "vboard", "--profile", BOARD, "--model", "{d}/truncated.tflite", "--tcp", "127.0.0.1:0")
VBOARD_FAULTS = ("drop=abc", "drop=-1", "drop=0", "version=x.y", "version=1.2.3", "version=300.1", "noise=nan",
                 "noise=-1", "delay=inf", "delay=-5", "reset_pause=nan", "bogus=1", "drop", "=3")  # fmt: skip
VBOARD_CASES = [_c(f"vboard --fault {fault}", *VBOARD, "--fault", fault) for fault in VBOARD_FAULTS] + [
    _c(
        "vboard bad tcp port",
        "hil",
        "vboard",
        "--profile",
        BOARD,
        "--model",
        "{d}/truncated.tflite",
        "--tcp",
        "127.0.0.1:notaport",
    ),  # fmt: skip
    _c(
        "vboard tcp port out of range",
        "hil",
        "vboard",
        "--profile",
        BOARD,
        "--model",
        "{d}/truncated.tflite",
        "--tcp",
        "127.0.0.1:99999",
    ),  # fmt: skip
    _c("vboard no model", "hil", "vboard", "--profile", BOARD),
    _c(
        "vboard missing model",
        "hil",
        "vboard",
        "--profile",
        BOARD,
        "--model",
        "{d}/missing.tflite",
        "--tcp",
        "127.0.0.1:0",
    ),  # fmt: skip
    _c("vboard truncated model", *VBOARD),
    _line("vboard unknown profile", "hil vboard --profile nope --model {d}/truncated.tflite"),
]

PIPELINE_CASES = [
    _line("submit host not a url", "pipeline submit --params {d}/good.yaml --host localhost:1"),
    _line(
        "schedule bad cron",
        "pipeline schedule --params {d}/good.yaml --host http://127.0.0.1:9 --cron 'every day'",
    ),
    _line(
        "run-local unknown --until", "pipeline run-local --params {d}/good.yaml --until nope --root {d}/pr"
    ),
]

ARGPARSE_CASES = [
    _c("no command"),
    _c("unknown command", "frobnicate"),
    _line("estimate without --target", "estimate --model {d}/truncated.tflite"),
    _line("hil run bad --max-patches", "hil run --model x.tflite --max-patches many"),
    _line("unknown option", "patch --frobnicate"),
]

MORE_CASES = [
    _line(
        "quantize splits not json",
        "quantize --params {d}/good.yaml --model-name yamnet_256 --patches {d}/patches --model-dir {d}/bad_splits --out {d}/q_out",
    ),
    _line(
        "override not a mapping",
        "train --params {d}/override_scalar.yaml --model-name yamnet_256 --patches {d}/patches --out {d}/t_out",
        expect="train.overrides",
    ),
    _line(
        "hil profiles value not a string",
        "hil run --params {d}/profiles_int.yaml --model {d}/truncated.tflite --patches {d}/patches --out {d}/h.json",
        expect="hil.profiles",
    ),
    _line(
        "hil --max-patches negative",
        "hil run --params {d}/good.yaml --model {d}/truncated.tflite --patches {d}/patches --out {d}/h.json --max-patches -5",
        expect="max-patches",
    ),
    _line(
        "estimate directory named .tflite",
        "estimate --model {d}/dir.tflite --target stm32u5",
        expect="dir.tflite",
    ),
    _line(
        "estimate onnx that is a tflite",
        "estimate --model {d}/tflite.onnx --target stm32n6",
        expect="tflite.onnx",
    ),
    _line(
        "export-firmware clip missing",
        "export-firmware --params {d}/good.yaml --model {d}/truncated.tflite --out {d}/fw --clip {d}/missing.wav",
    ),
    _line(
        "convert --out is a file",
        "convert --params {d}/good.yaml --model {d}/truncated.tflite --target stm32u5 --out {d}/not_json.json --record {d}/c.json",
    ),
    _line(
        "ingest raw dir is a file",
        "ingest --params {d}/good.yaml --no-fetch --raw-dir {d}/not_json.json --manifest {d}/m.csv --metrics {d}/im.json",
    ),
    _line(
        "params empty file then missing manifest",
        "patch --params {d}/empty.yaml --manifest {d}/missing.csv --out {d}/p_out",
        expect="missing.csv",
    ),
    _line(
        "pipeline compile params missing",
        "pipeline compile --params {d}/missing.yaml --out {d}/pipe.yaml",
        expect="missing.yaml",
    ),
    _c(
        "hil vboard slot is a directory",
        "hil",
        "vboard",
        "--profile",
        BOARD,
        "--slot",
        "{d}/a_dir",
        "--tcp",
        "127.0.0.1:0",
    ),  # fmt: skip
]

# The file or key each case's one line must name.
EXPECT = {
    "broken yaml": "broken.yaml: line 3",
    "yaml with tabs": "tabs.yaml: line 2",
    "section of wrong type": "wrong_type.yaml: patch",
    "section is a list": "wrong_type_list.yaml: train",
    "top level is a list": "top_list.yaml",
    "python object tag": "pyobj.yaml: line 1",
    "params not utf-8": "binary.yaml",
    "params missing": "missing.yaml",
    "params is a directory": "a_dir",
    "bad ingest layout": "ingest.layout",
    "--set unknown section": "--set 'bogus.key=1'",
    "--set unknown key": "--set 'patch.bogus=1'",
    "--set nan": "train.learning_rate",
    "--set without =": "--set",
    "--set python tag": "--set",
    "--set section to scalar": "--set",
    "estimate truncated tflite": "truncated.tflite",
    "estimate empty tflite": "empty.tflite",
    "estimate garbage onnx": "garbage.onnx",
    "estimate directory": "a_dir",
    "estimate missing": "missing.tflite",
    "convert truncated tflite": "truncated.tflite",
    "convert model is a directory": "a_dir",
    "export-firmware truncated tflite": "truncated.tflite",
    "quantize truncated keras": "model.keras",
    "quantize splits not json": "splits.json",
    "hil truncated tflite": "truncated.tflite",
    "hil patches missing": "missing",
    "estimate --out folder": "a_dir",
    "validate manifest missing": "missing.csv",
    "validate manifest is a directory": "a_dir",
    "validate manifest wrong columns": "column",
    "patch manifest wrong columns": "column",
    "export-firmware log_offset_zero": "patch.log_offset",
    "export-firmware fmax_inf": "patch.fmax",
    "submit host not a url": "localhost:1",
    "schedule bad cron": "every day",
    "run-local unknown --until": "--until",
    "vboard bad tcp port": "notaport",
    "vboard tcp port out of range": "99999",
    "vboard missing model": "missing.tflite",
    "vboard truncated model": "truncated.tflite",
    **{f"vboard --fault {fault}": "--fault" for fault in VBOARD_FAULTS},
}

CASES = [
    dataclasses.replace(case, expect=case.expect or EXPECT.get(case.name, ""))
    for case in PARAMS_CASES
    + [_param_case(name) for name in BAD_PARAMS]
    + FRONT_END_ON_EXPORT
    + SET_CASES
    + MODEL_CASES
    + OUT_IS_A_FOLDER
    + RECORD_CASES
    + VBOARD_CASES
    + PIPELINE_CASES
    + ARGPARSE_CASES
    + MORE_CASES
]


def run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int | str, str, str]:
    """(exit code or 'traceback', stdout, stderr). An exception escaping main() is what the console script
    prints as a traceback."""
    try:
        code: int | str = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException as error:  # noqa: BLE001 - any escaping exception is the failure this test looks for
        captured = capsys.readouterr()
        return "traceback", captured.out, captured.err + f"\n{type(error).__name__}: {error}"
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _aed_lines(text: str) -> list[str]:
    """The lines our CLI printed, without the C++ start-up notices TensorFlow writes straight to fd 2."""
    return [line for line in _one_line(text) if line.startswith("aed ")]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gives_one_line_and_exit_2(
    case: Case, corpus: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The assertion messages start with a tag ([traceback], [exit], [lines], [unrelated]) so that a run over
    older code can be tallied by kind."""
    monkeypatch.chdir(corpus)
    code, out, err = run_in_process(case.args(corpus), capsys)
    assert "Traceback" not in out + err and code != "traceback", f"[traceback] {case.name}\n{out}\n{err}"
    assert code == case.code, f"[exit] {case.name}: exit {code}\n{out}\n{err}"
    if not case.one_line:
        return
    lines = _one_line(err)
    assert len(lines) == 1, f"[lines] {case.name}: expected one line on stderr, got {lines}"
    assert lines[0].startswith("aed"), f"[lines] {lines[0]}"
    expected = case.expect.replace("{d}", str(corpus))
    assert expected in lines[0], f"[unrelated] {case.name}: {expected!r} not in {lines[0]!r}"


# -- subprocesses ----------------------------------------------------------------------------------------------
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}


def _aed(*argv: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ("patch", "--params", "{d}/broken.yaml"),
        ("patch", "--params", "{d}/pyobj.yaml"),
        ("patch", "--params", "{d}/wrong_type.yaml"),
        ("estimate", "--model", "{d}/truncated.tflite", "--target", "stm32u5"),
    ],
    ids=["broken yaml", "python tag", "wrong type", "truncated tflite"],
)
def test_console_script_prints_one_line(argv: tuple[str, ...], corpus: Path) -> None:
    result = _aed(*(arg.replace("{d}", str(corpus)) for arg in argv), cwd=corpus)
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(_aed_lines(result.stderr)) == 1 and _one_line(result.stderr)[-1].startswith("aed "), (
        result.stderr
    )


def test_yaml_error_names_the_file_and_line(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_in_process(["patch", "--params", str(corpus / "broken.yaml")], capsys)
    assert code == 2
    assert "broken.yaml" in err and "line 3" in err, err


@pytest.fixture
def not_http_listener() -> Iterator[str]:
    """A TCP listener that answers every connection with bytes that are not HTTP, then closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"\x00\x01SSH-2.0-not-http\r\n\xff\xfe")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def test_submit_to_a_listener_that_does_not_speak_http(corpus: Path, not_http_listener: str) -> None:
    result = _aed("pipeline", "submit", "--params", str(corpus / "good.yaml"), "--host", not_http_listener,
                  cwd=corpus, timeout=120)  # fmt: skip
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    lines = _aed_lines(result.stderr)
    assert len(lines) == 1 and "did not answer in HTTP" in lines[0], result.stderr


@pytest.fixture(scope="module")
def tiny_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.hil.conftest import build_tiny_int8

    return build_tiny_int8(tmp_path_factory.mktemp("model") / "tiny_int8.tflite")


def test_sigint_during_hil_run_prints_one_line_and_exits_130(corpus: Path, tiny_int8: Path) -> None:
    """Ctrl-C while the virtual boards run the job: one line, exit 130, no traceback from any thread or child."""
    params = _params_with(corpus / "slow_hil.yaml", {"hil": {"virtual_link": "tcp", "latency_repeats": 1000}})
    argv = ["hil", "run", "--params", str(params), "--model", str(tiny_int8), "--patches",
            str(corpus / "patches"), "--out", str(corpus / "sigint.json"), "--no-progress"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *argv],
        cwd=corpus, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=default_sigint,
    )  # fmt: skip
    try:
        _wait_for_boards(process)
        os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "Traceback" not in out + err, err
    assert process.returncode == 130, err
    lines = _aed_lines(err)
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert not (corpus / "sigint.json").exists()


def _wait_for_boards(process: subprocess.Popen[str], timeout: float = 90) -> None:
    """Until the job has spawned its virtual boards (a vboard child process exists), then a little more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hil run ended before the interrupt: {process.communicate()}")
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        if children.exists() and children.read_text().strip():
            time.sleep(1.0)
            return
        time.sleep(0.2)
    pytest.fail("no virtual board was started")


# -- the CLI's own handling ---------------------------------------------------------------------------------------
def _with_handler(monkeypatch: pytest.MonkeyPatch, handler: object) -> None:
    """`aed estimate` whose handler is replaced (the parser and error handling stay the real ones)."""
    import components.estimate as estimate

    def register(subparsers: object) -> None:
        parser = subparsers.add_parser("estimate")  # type: ignore[attr-defined]
        parser.set_defaults(handler=handler)

    monkeypatch.setattr(estimate, "register", register)


def test_an_unexpected_exception_is_one_internal_error_line_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: object) -> int:
        return {}["missing"]  # a bug, not the user's input

    _with_handler(monkeypatch, broken)
    code, out, err = run_in_process(["estimate"], capsys)
    assert code == 1 and out == ""
    assert _one_line(err) == [
        "aed estimate: internal error: KeyError: 'missing' (run with -v for the traceback)"
    ]
    with pytest.raises(KeyError):
        main(["-v", "estimate"])


def test_ctrl_c_is_one_line_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    _with_handler(monkeypatch, interrupted)
    code, _, err = run_in_process(["estimate"], capsys)
    assert code == 130 and _one_line(err) == ["aed estimate: interrupted"]


def test_secrets_are_masked_in_printed_lines_and_log_records(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    def leaky(args: object) -> int:
        print("fetching https://alice:hunter2pass@example.org/data.zip")
        logging.getLogger("aed.test").warning(
            "retry %s", "s3://KEY:topsecret@bucket/x?X-Amz-Signature=abc123"
        )
        raise OSError("cannot reach https://bob:swordfish@kfp.example.org")

    _with_handler(monkeypatch, leaky)
    code, out, err = run_in_process(["estimate"], capsys)
    assert code == 2
    assert "hunter2pass" not in out and "alice:***@example.org" in out
    assert "swordfish" not in err and "bob:***@kfp.example.org" in err
    handler = logging.StreamHandler(stream := __import__("io").StringIO())
    from components.cli import RedactingFilter

    handler.addFilter(RedactingFilter())
    logging.getLogger().addHandler(handler)
    try:
        logging.getLogger("aed.test").warning(
            "retry %s", "s3://KEY:topsecret@bucket/x?X-Amz-Signature=abc123"
        )
    finally:
        logging.getLogger().removeHandler(handler)
    assert "topsecret" not in stream.getvalue() and "abc123" not in stream.getvalue()
    assert "KEY:***@bucket" in stream.getvalue()
