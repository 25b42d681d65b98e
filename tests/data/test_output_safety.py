"""Data safety: steps replace only what they wrote, never their own input, atomically, one writer at a
time, with a manifest the loader checks. The interrupt and concurrency tests run the real `aed patch` CLI as
subprocesses with the worktree on PYTHONPATH."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aed.datasets.ingest import IngestParams
from aed.firmware import ExportFirmwareParams
from aed.outputs import (
    MARKER,
    OutputError,
    OutputLocked,
    OutputSpec,
    output_lock,
    params_sha256,
    publishing,
    replacing,
)
from aed.patching import PatchParams
from aed.patchstore import PatchStoreError, load_patch_store, write_patch_store
from aed.quantize import QuantizeParams
from aed.validation.validate import ValidateParams
from components.cli import main as aed
from components.ingest import run as ingest
from components.patch import run as patch
from components.validate import run as validate
from tests.conftest import REPO, default_sigint, tone, write_audio

SPEC = OutputSpec("patch")


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its content: what 'nothing was deleted or changed' compares."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def user_folder(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "sub" / "index.csv").write_text("clip_id\nx\n")
    return path


def hidden_siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.aed-*") if not p.name.endswith("lock"))


# --- the mechanism -------------------------------------------------------------------------------------------


def attempt(output: Path, spec: OutputSpec = SPEC, sources: dict | None = None) -> None:
    with replacing(output, spec, sources):
        pytest.fail("a refused output must not be written")


def test_a_folder_without_the_step_marker_is_refused_and_kept(tmp_path):
    folder = user_folder(tmp_path / "out")
    before = tree(folder)
    with pytest.raises(OutputError, match=r"not written by `aed patch`.*no valid \.aed-output\.json"):
        attempt(folder, SPEC)
    assert tree(folder) == before and hidden_siblings(folder) == []


def test_a_folder_marked_by_another_step_is_refused(tmp_path):
    folder = tmp_path / "out"
    with replacing(folder, OutputSpec("train")) as staging:
        (staging / "model.keras").write_text("m")
    with pytest.raises(OutputError, match="names `aed train`"):
        attempt(folder, SPEC)
    assert (folder / "model.keras").read_text() == "m"


def test_a_file_or_a_link_to_a_foreign_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        attempt(tmp_path / "file", SPEC)
    user_folder(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(OutputError, match="not written by `aed patch`"):
        attempt(tmp_path / "link", SPEC)
    assert (tmp_path / "real" / "thesis.tex").exists() and (tmp_path / "file").read_text() == "x"


def test_a_linked_output_is_replaced_where_it_lies_and_the_link_kept(tmp_path):
    with replacing(tmp_path / "disk" / "raw", SPEC) as staging:
        (staging / "a").write_text("old")
    (tmp_path / "raw").symlink_to(tmp_path / "disk" / "raw")
    with replacing(tmp_path / "raw", SPEC) as staging:
        (staging / "a").write_text("new")
    assert (tmp_path / "raw").is_symlink() and (tmp_path / "disk" / "raw" / "a").read_text() == "new"


def test_absent_or_empty_folders_and_own_folders_are_replaced_whole(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "absent", tmp_path / "empty"):
        with replacing(folder, SPEC, params={"a": 1}) as staging:
            (staging / "old.txt").write_text("old")
        with replacing(folder, SPEC, params={"a": 2}) as staging:
            (staging / "new.txt").write_text("new")
        assert sorted(tree(folder)) == [MARKER, "new.txt"]  # the old file did not survive: no mix
        assert json.loads((folder / MARKER).read_text())["params_sha256"] == params_sha256({"a": 2})
        assert hidden_siblings(folder) == []


@pytest.mark.parametrize("relation", ["is", "inside", "contains"])
def test_an_output_overlapping_an_input_is_refused(tmp_path, relation):
    source = user_folder(tmp_path / "source")
    output = {"is": source, "inside": source / "sub", "contains": tmp_path}[relation]
    before = tree(tmp_path)
    with pytest.raises(OutputError, match="never replaces its own input"):
        attempt(output, SPEC, {"raw audio folder": source})
    assert tree(tmp_path) == before


def test_an_overlap_through_a_symlinked_path_is_refused(tmp_path):
    source = user_folder(tmp_path / "source")
    (tmp_path / "alias").symlink_to(source)
    with pytest.raises(OutputError, match="lies inside the raw audio folder"):
        attempt(tmp_path / "alias" / "sub", SPEC, {"raw audio folder": source})
    assert (source / "sub" / "index.csv").exists()


def test_a_failure_while_writing_keeps_the_old_output_and_removes_the_partial_one(tmp_path):
    folder = tmp_path / "out"
    with replacing(folder, SPEC) as staging:
        (staging / "a").write_text("old")
    before = tree(folder)
    with pytest.raises(RuntimeError, match="boom"), replacing(folder, SPEC) as staging:
        (staging / "a").write_text("half")
        raise RuntimeError("boom")
    assert tree(folder) == before and hidden_siblings(folder) == []


def test_a_second_writer_is_refused_with_the_holder_pid(tmp_path):
    folder = tmp_path / "out"
    with replacing(folder, SPEC) as staging:
        with pytest.raises(OutputLocked, match=rf"another process \(pid {os.getpid()}\) is writing it"):
            attempt(folder, SPEC)
        (staging / "a").write_text("first")
    assert (folder / "a").read_text() == "first"
    with output_lock(folder):  # released: the lock can be taken again
        pass


# --- the patch store -----------------------------------------------------------------------------------------


def store_clips(count: int, value: float = 1.0) -> list[tuple[dict, np.ndarray]]:
    return [
        (
            {"clip_id": f"c{n}", "label": "ab"[n % 2], "fold": 1, "split": ""},
            np.full((2, 64, 96, 1), value + n, np.float32),
        )
        for n in range(count)
    ]


@pytest.mark.parametrize(
    "damage",
    ["shard changed", "shard removed", "file added", "index changed", "manifest removed", "manifest broken"],
)
def test_the_loader_refuses_a_store_that_does_not_match_its_manifest(tmp_path, damage):
    root = tmp_path / "patches"
    write_patch_store(root, store_clips(3), ["a", "b"], shard_size=2)
    load_patch_store(root)
    if damage == "shard changed":
        np.save(root / "shard-00001.npy", np.zeros((2, 64, 96, 1), np.float32))
    elif damage == "shard removed":
        (root / "shard-00002.npy").unlink()
    elif damage == "file added":
        np.save(root / "shard-00003.npy", np.zeros((2, 64, 96, 1), np.float32))
    elif damage == "index changed":
        index = pd.read_csv(root / "index.csv")
        index.loc[0, "row"], index.loc[1, "row"] = 1, 0
        index.to_csv(root / "index.csv", index=False)
    elif damage == "manifest removed":
        (root / MARKER).unlink()
    else:
        (root / MARKER).write_text("{not json")
    with pytest.raises(PatchStoreError, match="manifest") as error:
        load_patch_store(root)
    assert "\n" not in str(error.value)


def test_non_finite_patches_are_refused_naming_the_clip_and_nothing_is_written(tmp_path):
    root = tmp_path / "patches"
    write_patch_store(root, store_clips(2), ["a", "b"])
    before = tree(root)
    clips = store_clips(3)
    clips[1][1][0, 5, 5, 0] = np.nan
    with pytest.raises(PatchStoreError, match=r"clip c1: 1 of \d+ patch values are NaN or infinite"):
        write_patch_store(root, clips, ["a", "b"])
    assert tree(root) == before and hidden_siblings(root) == []


def patch_dataset(root: Path, clips: int, seconds: float = 3.0) -> tuple[Path, Path]:
    """One audio file, many manifest rows: a dataset as long as needed at no disk cost."""
    write_audio(root / "raw" / "a.wav", tone(seconds))
    rows = [
        {
            "clip_id": f"c{n:05d}",
            "path": "a.wav",
            "label": "ab"[n % 2],
            "fold": 1,
            "split": "",
            "duration_s": 3,
        }
        for n in range(clips)
    ]
    manifest = root / f"validated_{clips}.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest, root / "raw"


def test_a_clip_giving_non_finite_patches_is_refused_naming_the_clip(tmp_path, monkeypatch):
    """Bad params (log_offset 0) and non-finite audio are refused before; this is the last guard, at the write."""
    import components.patch as step

    manifest, raw = patch_dataset(tmp_path, 2)
    frame = pd.read_csv(manifest)
    frame.loc[1, "clip_id"] = "quiet"
    frame.to_csv(manifest, index=False)
    computed = step.patch_clips

    def one_clip_goes_wrong(paths, config, jobs):
        for number, patches in enumerate(computed(paths, config, jobs)):
            yield (
                np.where(np.arange(patches.size).reshape(patches.shape) % 7 == 0, -np.inf, patches)
                if number
                else patches
            )

    monkeypatch.setattr(step, "patch_clips", one_clip_goes_wrong)
    params = PatchParams(jobs=1, remove_silence=False)
    with pytest.raises(PatchStoreError, match="clip quiet: .* are NaN or infinite"):
        patch(params, manifest, raw, tmp_path / "patches", None)
    assert not (tmp_path / "patches").exists()


def run_cli(*argv: str) -> tuple[int, str]:
    process = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *argv],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    return process.returncode, process.stderr


def params_file(path: Path, **patch_params) -> Path:
    path.write_text(
        yaml.safe_dump({"patch": {"jobs": 1, **patch_params}, "validate": {"classes": ["a", "b"]}})
    )
    return path


def patch_argv(params: Path, manifest: Path, raw: Path, out: Path) -> list[str]:
    return ["patch", "--params", str(params), "--manifest", str(manifest), "--raw-dir", str(raw),
            "--out", str(out), "--metrics", str(out.parent / "patch.json")]  # fmt: skip


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"patch_frames": 10**6}, "patch.patch_frames: 1000000 frames is longer than"),
        ({"patch_frames": 400}, "clip c00000: gives no patch"),  # 4 s patches, 3 s clips
    ],
)
def test_parameters_giving_no_patches_exit_2_with_one_line_and_keep_the_old_store(tmp_path, setting, message):
    manifest, raw = patch_dataset(tmp_path, 4)
    out = tmp_path / "patches"
    assert run_cli(*patch_argv(params_file(tmp_path / "good.yaml"), manifest, raw, out))[0] == 0
    before = tree(out)
    code, stderr = run_cli(*patch_argv(params_file(tmp_path / "bad.yaml", **setting), manifest, raw, out))
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert tree(out) == before


# --- interrupted and concurrent `aed patch` ------------------------------------------------------------------


def start_patch(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=default_sigint,
    )


def wait_for_new_shards(process: subprocess.Popen, parent: Path, since: float, count: int = 5) -> None:
    """Until the writer has written `count` shards of its new store (wherever it writes them)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        written = [p for p in parent.rglob("shard-*.npy") if p.stat().st_mtime > since]
        if len(written) >= count:
            return
        time.sleep(0.01)
    process.kill()
    pytest.fail("the writer wrote no shard within 120 s")


@pytest.fixture(scope="module")
def big_dataset(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("big")
    small, raw = patch_dataset(root, 20)
    large, _ = patch_dataset(root, 1000)  # several seconds of work: every signal lands midway
    return small, large, raw


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_killed_patch_run_leaves_the_complete_old_store_never_a_mix(tmp_path, big_dataset, signum):
    small, large, raw = big_dataset
    out = tmp_path / "work" / "patches"
    old_params = params_file(tmp_path / "old.yaml", patch_step=48, shard_size=1)  # as the new run's shards
    assert run_cli(*patch_argv(old_params, small, raw, out))[0] == 0
    old = load_patch_store(out)
    old_index, old_patches = old.index.copy(), old.patches()

    started = time.time()
    time.sleep(0.01)  # mtimes after `started` are the new run's
    process = start_patch(patch_argv(params_file(tmp_path / "new.yaml", shard_size=1), large, raw, out))
    wait_for_new_shards(process, out.parent, started)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    if signum != signal.SIGKILL:
        assert "interrupted; the partial output was removed, the old one kept" in stderr
        assert hidden_siblings(out) == []
    try:
        store = load_patch_store(out)
    except PatchStoreError:
        return  # refusing to load is allowed; loading a mix is not
    pd.testing.assert_frame_equal(store.index, old_index)
    np.testing.assert_array_equal(store.patches(), old_patches)

    # The next run cleans what a SIGKILL left and writes the new store whole.
    assert run_cli(*patch_argv(params_file(tmp_path / "next.yaml"), small, raw, out))[0] == 0
    assert (
        hidden_siblings(out) == [] and len(load_patch_store(out).index) == 20 * 3
    )  # 3 s clips, 3 patches each


def test_two_concurrent_writers_one_is_refused_and_the_store_is_the_other_one(tmp_path, big_dataset):
    small, large, raw = big_dataset
    out = tmp_path / "patches"
    first_params = params_file(tmp_path / "first.yaml", shard_size=1)
    started = time.time()
    time.sleep(0.01)
    first = start_patch(patch_argv(first_params, large, raw, out))
    wait_for_new_shards(first, tmp_path, started, count=2)
    second = start_patch(patch_argv(params_file(tmp_path / "second.yaml", patch_step=48), small, raw, out))
    _, second_err = second.communicate(timeout=120)
    first.communicate(timeout=300)
    assert second.returncode == 2 and first.returncode == 0
    assert f"another process (pid {first.pid}) is writing it" in second_err
    assert len(second_err.strip().splitlines()) == 1, second_err
    store = load_patch_store(out)
    # The identity a store has always had: every patch key but jobs, and silence_frame only off its default.
    identity = {**vars(PatchParams(jobs=1, shard_size=1)), "class_names": ["a", "b"]}
    identity.pop("jobs")
    identity.pop("silence_frame")
    assert store.params_sha256 == params_sha256(identity)
    assert len(store.index) == 1000 * 3 and set(store.index["clip_id"]) == {f"c{n:05d}" for n in range(1000)}


# --- ingest --raw-dir and validate --data-docs ---------------------------------------------------------------


def csv_source(root: Path) -> Path:
    write_audio(root / "clips" / "a.wav", tone(1.0))
    write_audio(root / "clips" / "b.wav", tone(1.0, frequency=900))
    (root / "labels.csv").write_text("filename,label,fold\nclips/a.wav,a,1\nclips/b.wav,b,1\n")
    return root


@pytest.mark.parametrize("where", ["unrelated folder", "the source", "inside the source", "above the source"])
def test_ingest_refuses_a_raw_dir_it_did_not_write_and_deletes_nothing(tmp_path, monkeypatch, where):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = csv_source(tmp_path / "data" / "src")
    user_folder(tmp_path / "mine")
    raw = {
        "unrelated folder": tmp_path / "mine",
        "the source": source,
        "inside the source": source / "clips",
        "above the source": tmp_path / "data",
    }[where]
    before = tree(tmp_path)
    with pytest.raises(OutputError) as error:
        ingest(IngestParams(source=str(source), layout="csv"), raw, tmp_path / "m.csv")
    assert tree(tmp_path) == before and "\n" not in str(error.value)


def test_ingest_refuses_the_mirror_as_raw_dir_through_the_cli(tmp_path, monkeypatch):
    mirror = csv_source(tmp_path / "mirror")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"ingest": {"layout": "csv"}}))
    monkeypatch.setenv("AED_DATA_MIRROR", str(mirror))
    (tmp_path / "link").symlink_to(tmp_path)
    before = tree(mirror)
    for raw in (mirror, tmp_path / "link" / "mirror" / "clips"):
        argv = ["ingest", "--params", str(tmp_path / "params.yaml"), "--raw-dir", str(raw),
                "--manifest", str(tmp_path / "m.csv"), "--metrics", str(tmp_path / "i.json")]  # fmt: skip
        assert aed(argv) == 2
    assert tree(mirror) == before


def test_ingest_replaces_its_own_raw_dir_whole(tmp_path, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    first = csv_source(tmp_path / "first")
    second = csv_source(tmp_path / "second")
    (second / "clips" / "a.wav").unlink()
    (second / "labels.csv").write_text("filename,label,fold\nclips/b.wav,b,1\n")
    raw = tmp_path / "raw"
    ingest(IngestParams(source=str(first), layout="csv"), raw, tmp_path / "m.csv")
    ingest(IngestParams(source=str(second), layout="csv"), raw, tmp_path / "m.csv")
    assert not (raw / "clips" / "a.wav").exists() and (raw / "clips" / "b.wav").exists()
    assert hidden_siblings(raw) == []


@pytest.fixture
def validate_inputs(tmp_path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = csv_source(tmp_path / "src")
    ingest(IngestParams(source=str(source), layout="csv"), tmp_path / "raw", tmp_path / "manifest.csv")
    return tmp_path / "manifest.csv", tmp_path / "raw"


@pytest.mark.parametrize("where", ["unrelated folder", "the raw folder", "inside the raw folder", "above"])
def test_validate_refuses_data_docs_it_did_not_write_and_deletes_nothing(tmp_path, validate_inputs, where):
    manifest, raw = validate_inputs
    user_folder(tmp_path / "mine")
    docs = {
        "unrelated folder": tmp_path / "mine",
        "the raw folder": raw,
        "inside the raw folder": raw / "clips",
        "above": tmp_path,
    }[where]
    before = tree(tmp_path)
    params = ValidateParams(classes=["a", "b"], jobs=1)
    with pytest.raises(OutputError):
        validate(params, manifest, raw, tmp_path / "v.csv", tmp_path / "validation.json", docs)
    assert tree(tmp_path) == before


def test_validate_replaces_its_own_data_docs(tmp_path, validate_inputs):
    manifest, raw = validate_inputs
    params = ValidateParams(classes=["a", "b"], jobs=1)
    docs = tmp_path / "docs"
    for _ in range(2):
        validate(params, manifest, raw, tmp_path / "v.csv", tmp_path / "validation.json", docs)
        assert (docs / "index.html").is_file() and (docs / MARKER).is_file()
    assert hidden_siblings(docs) == []
    assert "aed-tmp" not in (docs / "index.html").read_text()  # no link into the temporary folder


# --- the other steps' output folders -------------------------------------------------------------------------


def five_fold_store(root: Path) -> Path:
    clips = [
        ({"clip_id": f"{fold}-{n}", "label": "ab"[n % 2], "fold": fold, "split": ""}, np.ones((1, 64, 96, 1)))
        for fold in range(1, 6)
        for n in range(4)
    ]
    write_patch_store(root, clips, ["a", "b"])
    return root


def run_step(step: str, out: Path, tmp_path: Path) -> None:
    """Each step with valid inputs up to its output folder (the refusal comes before any model is read)."""
    from components import convert, export_firmware, quantize, train

    store = five_fold_store(tmp_path / "patches")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3")
    if step == "train":
        from aed.training import TrainParams

        train.run(TrainParams(), "yamnet_256", store, out, tmp_path / "reports")
    elif step == "quantize":
        (tmp_path / "float").mkdir()
        (tmp_path / "float" / "splits.json").write_text(json.dumps({"splits": {}}))
        quantize.run(QuantizeParams(), "yamnet_256", store, tmp_path / "float", out)
    elif step == "convert":
        convert.run(convert.ConvertParams(use_stedgeai="never"), model, "stm32u5", out, None)
    else:
        export_firmware.run(ExportFirmwareParams(), PatchParams().feature_config(), ["a"], model, out, None)


@pytest.mark.parametrize("step", ["train", "quantize", "convert", "export_firmware"])
def test_every_step_refuses_an_output_folder_it_did_not_write(tmp_path, step):
    folder = user_folder(tmp_path / "mine")
    before = tree(folder)
    with pytest.raises(OutputError, match=f"not written by `aed {step}`"):
        run_step(step, folder, tmp_path)
    assert tree(folder) == before


@pytest.mark.parametrize("step", ["train", "quantize"])
def test_a_model_step_refuses_to_write_into_its_patch_store(tmp_path, step):
    before = tree(five_fold_store(tmp_path / "patches"))
    with pytest.raises(OutputError, match="the patch store"):
        run_step(step, tmp_path / "patches" / "models", tmp_path)
    assert tree(tmp_path / "patches") == before


def test_single_file_outputs_never_overwrite_an_input_or_land_in_a_folder_written_whole(
    tmp_path, validate_inputs
):
    manifest, raw = validate_inputs
    before = tree(tmp_path)
    params = ValidateParams(classes=["a", "b"], jobs=1)
    with pytest.raises(OutputError, match="--validated .*: is the manifest"):
        validate(params, manifest, raw, manifest, tmp_path / "validation.json", None)
    with pytest.raises(OutputError, match="--report .*: lies inside the raw audio folder"):
        validate(params, manifest, raw, tmp_path / "v.csv", raw / "catalog.csv", None)
    with pytest.raises(OutputError, match="--manifest .*: lies inside the raw folder"):
        ingest(IngestParams(source=str(tmp_path / "src"), layout="csv"), raw, raw / "catalog.csv")
    with pytest.raises(OutputError, match="--metrics .*: lies inside the patch store"):
        patch(PatchParams(jobs=1), manifest, raw, tmp_path / "p", tmp_path / "p" / "patch.json")
    assert tree(tmp_path) == before


def test_files_published_into_a_shared_folder_arrive_together_or_not_at_all(tmp_path):
    shared = tmp_path / "reports" / "yamnet_256"
    (shared / "history").mkdir(parents=True)
    (shared / "history" / "fold-1.csv").write_text("train's")
    (shared / "evaluation.json").write_text("old")
    with pytest.raises(RuntimeError), publishing(shared) as staging:
        (staging / "evaluation.json").write_text("half")
        raise RuntimeError("evaluate failed")
    assert tree(shared) == {"history/fold-1.csv": b"train's", "evaluation.json": b"old"}
    with publishing(shared) as staging:
        (staging / "evaluation.json").write_text("new")
        (staging / "confusion_tflite.json").write_text("[]")
    assert tree(shared) == {
        "confusion_tflite.json": b"[]",
        "evaluation.json": b"new",
        "history/fold-1.csv": b"train's",
    }
    assert hidden_siblings(shared) == []
