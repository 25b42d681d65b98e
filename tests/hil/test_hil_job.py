"""The HIL job's settings (one class, loaded straight from params.yaml's `hil` section, with its limits) and its
phases (typed, frozen results; the record they make keeps its layout)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from aed.params import ParamsError, from_dict, load_section
from aed.records import sha256_file
from hil_runner import job
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.farm import Lease
from hil_runner.farm.local import LocalFarm
from hil_runner.job import BoardRun, HilParams, JobConfig, load_eval_set, run_job
from hil_runner.protocol.host import Timeouts

REPO = Path(__file__).resolve().parents[2]
PROFILE = "b-u585i-iot02a"

# Every `hil` key with a value other than its default (each within its limits).
NOT_DEFAULTS = {
    "profile": "stm32n6570-dk",
    "profiles": {"yamnet_1024": "b-u585i-iot02a"},
    "farm": "local",
    "virtual_boards": 3,
    "inventory": "/farm/boards.yaml",
    "lock_dir": "/farm/locks",
    "coordinator": "10.0.0.2:20408",
    "lease_timeout_s": 30.0,
    "split": "test",
    "folds": [4, 5],
    "max_patches": 12,
    "latency_repeats": 7,
    "attempts": 4,
    "timeout_scale": 2.5,
    "settle_s": 0.1,
    "verify_signature": False,
    "firmware": "/images/validation.elf",
    "baud": 115200,
    "virtual_link": "tcp",
    "workdir": "/farm/work",
}

# The range of every limited key: [min, max], None for no bound.
LIMITS = {
    "virtual_boards": (1, 8),
    "lease_timeout_s": (1.0, None),
    "max_patches": (0, None),
    "latency_repeats": (1, None),
    "attempts": (1, None),
    "timeout_scale": (0.05, 100.0),
    "settle_s": (0.0, 5.0),
    "baud": (9600, None),
}


def _names(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def test_params_yaml_hil_section_loads_into_the_job_settings() -> None:
    section = yaml.safe_load((REPO / "params.yaml").read_text())["hil"]
    assert set(section) == _names(HilParams)
    params = load_section(REPO / "params.yaml", "hil", HilParams)
    assert params.profile_for("yamnet_1024") == "stm32n6570-dk"
    assert params.profile_for("yamnet_256") == params.profile_for(None) == "b-u585i-iot02a"
    assert params.lock_dir == Path("work/hil/locks") and params.timeout_scale == 1.0


def test_job_config_is_the_hil_settings_plus_what_only_a_caller_sets() -> None:
    assert issubclass(JobConfig, HilParams)
    assert _names(JobConfig) - _names(HilParams) == {"progress", "exchange_timeouts"}
    # No setting is declared twice: JobConfig's own annotations are only the two caller-only fields.
    assert set(JobConfig.__annotations__) == {"progress", "exchange_timeouts"}


def test_every_hil_setting_reaches_the_job_as_loaded() -> None:
    assert set(NOT_DEFAULTS) == _names(HilParams)  # a new key must be added here too
    params = from_dict(HilParams, NOT_DEFAULTS, "hil")
    config = JobConfig.for_model(params, "yamnet_256", progress=False)
    for name in _names(HilParams):
        assert getattr(config, name) == getattr(params, name) != getattr(HilParams(), name), name
    assert config.progress is False and config.exchange_timeouts is None
    assert JobConfig.for_model(params, "yamnet_1024").profile == "b-u585i-iot02a"  # hil.profiles[name]
    assert config.timeouts() == Timeouts(**{**Timeouts().scaled(2.5).__dict__, "settle": 0.1})


def test_the_limits_live_on_the_settings_class() -> None:
    found = {
        field.name: (field.metadata["min"], field.metadata["max"])
        for field in dataclasses.fields(HilParams)
        if field.metadata.get("min") is not None or field.metadata.get("max") is not None
    }
    assert found == LIMITS


@pytest.mark.parametrize(("name", "bounds"), sorted(LIMITS.items()))
def test_a_value_out_of_range_is_refused_at_load_naming_the_key(tmp_path, name, bounds) -> None:
    low, high = bounds
    for value in [low - 1 if isinstance(low, int) else low - 0.01] + ([high + 1] if high is not None else []):
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({"hil": {name: value}}))
        with pytest.raises(ParamsError, match=rf"^{re.escape(str(path))}: hil\.{name}: .* is out of range"):
            load_section(path, "hil", HilParams)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"profile": "nucleo-nope"}, "profile"),
        ({"profiles": {"yamnet_1024": "nucleo-nope"}}, "profiles.yamnet_1024"),
    ],
)
def test_an_unknown_board_profile_is_refused_at_load(tmp_path, section, key) -> None:
    """No board has it: refused before a farm is started (a labgrid lease would wait lease_timeout_s for it)."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"hil": section}))
    with pytest.raises(
        ParamsError, match=rf"hil\.{re.escape(key)}: unknown board profile 'nucleo-nope'; known: \["
    ):
        load_section(path, "hil", HilParams)


def _virtual_board(vboard_factory, tmp_path: Path) -> Board:
    slot = tmp_path / "slot.tflite"
    served = vboard_factory(PROFILE, slot=slot)
    return Board(name="vb0", profile=get_profile(PROFILE), port=served.descriptor, virtual=True, slot=slot)


def _config(**changes) -> JobConfig:
    return JobConfig(profile=PROFILE, latency_repeats=3, progress=False, exchange_timeouts=Timeouts(settle=0.05),
                     **changes)  # fmt: skip


def test_one_board_gives_a_typed_frozen_result(vboard_factory, tiny_model, patch_store, tmp_path) -> None:
    board = _virtual_board(vboard_factory, tmp_path)
    evalset = load_eval_set(patch_store, "test")
    reference = job.host_reference(tiny_model, evalset)
    lease = Lease(board=board, descriptor=board.port, via="local")
    run = job.run_on_board(lease, tiny_model, sha256_file(tiny_model), reference, _config())
    assert isinstance(run, BoardRun)
    assert run.loaded.source == "virtual" and run.loaded.signature_verified
    assert run.loaded.device.devid == board.profile.devid
    assert run.inference.outputs.shape == reference.outputs.shape and run.inference.patches_per_s > 0
    assert len(run.latency.durations_ms) == len(run.latency.cycles) == 3
    assert run.layers and sum(layer.duration_ms for layer in run.layers) > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.loaded = None  # type: ignore[misc]


# The record's layout, section by section, in the order the gate, the registry and people read it.
LAYOUT = {
    None: ["schema_version", "kind", "created", "inputs", "tools", "source", "model_sha256", "model", "board",
           "firmware", "key", "metrics", "fidelity", "accuracy", "latency", "memory", "layers", "throughput",
           "failed_attempts"],
    "inputs": ["model", "patches"],
    "model": ["path", "signature", "signature_verified", "n_nodes"],
    "board": ["name", "profile", "via", "descriptor", "device_id", "device", "sclock_hz", "hclock_hz", "extra",
              "cache", "virtual"],
    "firmware": ["protocol_version", "runtime", "runtime_version", "tool_version", "rtid", "compile_datetime",
                 "runtime_desc"],
    "key": ["profile", "device_id", "sclock_hz", "runtime_version", "tool_version", "kernels", "host_litert",
            "source", "board", "class_names", "eval_set_sha256", "eval_patches", "frontend_sha256",
            "dataset_sha256", "model_format", "runtime"],
    "metrics": ["clip_accuracy", "host_clip_accuracy", "top1_agreement", "cosine_min", "l2r_max",
                "latency_median_ms", "cycles_median", "weights_bytes", "activations_bytes", "macs"],
    "fidelity": ["top1_agreement", "cosine_mean", "cosine_min", "l2r_mean", "l2r_max", "max_abs_diff",
                 "bit_exact_fraction"],
    "accuracy": ["clip_accuracy", "host_clip_accuracy", "n_clips", "n_patches", "class_names"],
    "latency": ["median_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "repeats", "cycles_median", "clock_hz",
                "source"],
    "memory": ["weights_bytes", "activations_bytes", "macs", "source"],
    "throughput": ["patches_per_s", "eval_seconds"],
}  # fmt: skip


def test_the_record_keeps_its_layout_and_figures(vboard_factory, tiny_model, patch_store, tmp_path) -> None:
    farm = LocalFarm([_virtual_board(vboard_factory, tmp_path)], tmp_path / "locks")
    record = run_job(tiny_model, load_eval_set(patch_store, "test"), farm, _config(), tmp_path / "hil.json")
    for section, keys in LAYOUT.items():
        assert list(record if section is None else record[section]) == keys, section
    layer_keys = [list(layer) for layer in record["layers"]]
    assert layer_keys and all(keys == ["id", "name", "type", "duration_ms", "cycles"] for keys in layer_keys)
    latency, metrics = record["latency"], record["metrics"]
    assert latency["repeats"] == 3 and metrics["latency_median_ms"] == latency["median_ms"]
    assert metrics["cycles_median"] == latency["cycles_median"] > 0
    assert metrics["top1_agreement"] == record["fidelity"]["top1_agreement"] == 1.0
    assert record["accuracy"]["n_patches"] == record["key"]["eval_patches"] == 18
    assert record["accuracy"]["n_clips"] == 6 and record["failed_attempts"] == []
    assert record["memory"] == {**{name: metrics[name] for name in LAYOUT["memory"][:3]}, "source": "virtual"}
    assert record["key"]["model_format"] == "tflite" and record["key"]["source"] == "virtual"


def test_no_function_of_the_job_is_long() -> None:
    """The job reads as named phases: none of its functions is over 40 lines."""
    tree = ast.parse(Path(job.__file__).read_text())
    lengths = {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert {name: n for name, n in lengths.items() if n > 40} == {}
