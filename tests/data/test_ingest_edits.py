"""Edits to a local dataset are seen (issue 17, point 10): a local folder is compared with data/raw by content
(the selection built from its metadata, each file's size and modification time, sha256 when only the time differs),
so an added row, a changed file or a removed clip is fetched again and an unchanged folder is not; `--force`
fetches regardless; a metadata row naming a missing file stops the fetch with its row."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from aed.datasets.errors import DatasetError
from aed.datasets.ingest import FSD50KOptions, IngestParams
from components.ingest import run
from tests.conftest import tone, write_audio

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def no_mirror(monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)


def make_dataset(root: Path) -> Path:
    """Three clips on disk, two of them listed."""
    for number, name in enumerate(("a", "b", "c")):
        write_audio(root / "clips" / f"{name}.wav", tone(1.0, frequency=300 + 100 * number))
    (root / "labels.csv").write_text("filename,label,fold\nclips/a.wav,dog,1\nclips/b.wav,rooster,2\n")
    return root


def fetch(source: Path, raw: Path, force: bool = False) -> str:
    """`aed ingest --fetch-only [--force]`: what it says it did."""
    params = IngestParams(source=str(source), layout="csv")
    return run(params, raw, raw.parent / "m.csv", describe=False, force=force)["fetch"]


def raw_matches(source: Path, raw: Path) -> bool:
    """data/raw holds the source as it is now: the same rows, the same bytes for every listed file."""
    rows = pd.read_csv(source / "labels.csv", dtype=str)
    catalog = pd.read_csv(raw / "catalog.csv", dtype=str)
    same_rows = list(catalog["path"]) == list(rows["filename"]) and list(catalog["label"]) == list(
        rows["label"]
    )
    return same_rows and all((raw / p).read_bytes() == (source / p).read_bytes() for p in rows["filename"])


def add_row(source: Path) -> None:
    with open(source / "labels.csv", "a") as handle:
        handle.write("clips/c.wav,dog,2\n")


def remove_row(source: Path) -> None:
    (source / "labels.csv").write_text("filename,label,fold\nclips/a.wav,dog,1\n")


def relabel_row(source: Path) -> None:
    (source / "labels.csv").write_text("filename,label,fold\nclips/a.wav,rooster,1\nclips/b.wav,rooster,2\n")


def edit_file_same_size(source: Path) -> None:
    path = source / "clips" / "a.wav"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))  # a coarse clock


def replace_file(source: Path) -> None:
    write_audio(source / "clips" / "b.wav", tone(2.0, frequency=1200))


def rename_file_and_row(source: Path) -> None:
    (source / "clips" / "b.wav").rename(source / "clips" / "b2.wav")
    (source / "labels.csv").write_text("filename,label,fold\nclips/a.wav,dog,1\nclips/b2.wav,rooster,2\n")


@pytest.mark.parametrize(
    "edit",
    [add_row, remove_row, relabel_row, edit_file_same_size, replace_file, rename_file_and_row],
    ids=lambda edit: edit.__name__,
)
def test_an_edit_of_a_local_folder_is_fetched_again(tmp_path, caplog, edit: Callable[[Path], None]):
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    assert fetch(source, raw) == "fetched"
    edit(source)
    assert not raw_matches(source, raw)
    with caplog.at_level(logging.INFO):
        assert fetch(source, raw) == "fetched again"
    assert raw_matches(source, raw)
    assert "fetching again" in caplog.text and "not fetching again" not in caplog.text


def test_a_new_licence_file_is_fetched_again(tmp_path):
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    (source / "LICENSE").write_text("CC0\n")
    fetch(source, raw)
    assert (raw / "LICENSE").read_text() == "CC0\n"


def raw_state(raw: Path) -> dict[str, tuple[int, int]]:
    """Each file's inode and modification time: a fetch replaces the folder, so every inode changes."""
    return {p.relative_to(raw).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in raw.rglob("*")}


def test_an_unchanged_folder_is_not_fetched_again(tmp_path, caplog):
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    before = raw_state(raw)
    with caplog.at_level(logging.INFO):
        assert fetch(source, raw) == "up to date"
    assert raw_state(raw) == before
    assert "already holds the current content" in caplog.text and "2 files compared" in caplog.text


def test_a_touched_file_with_the_same_bytes_is_not_fetched_again(tmp_path):
    """Only the modification time differs (a `touch`, a fresh checkout): the bytes decide, and the copy takes
    the source's time so that the next check is a stat again."""
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    os.utime(source / "clips" / "a.wav", ns=(0, 1_000_000_000_000_000_000))
    inodes = {path: inode for path, (inode, _) in raw_state(raw).items()}
    fetch(source, raw)
    assert {path: inode for path, (inode, _) in raw_state(raw).items()} == inodes
    assert (raw / "clips" / "a.wav").stat().st_mtime_ns == 1_000_000_000_000_000_000


def test_a_raw_folder_fetched_before_the_content_check_is_not_fetched_again(tmp_path):
    """data/raw written by an older ingest (or checked out by DVC) has its own modification times: same
    bytes, no new fetch, so the DVC hash of a data/raw already committed stays."""
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    for path in raw.rglob("*.wav"):
        os.utime(path, ns=(0, 5_000_000_000))
    inodes = {path: inode for path, (inode, _) in raw_state(raw).items()}
    fetch(source, raw)
    assert {path: inode for path, (inode, _) in raw_state(raw).items()} == inodes


def test_force_fetches_again_what_the_content_check_cannot_see(tmp_path):
    """A copy altered in place with its size and time kept looks current; --force fetches regardless."""
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    copy = raw / "clips" / "a.wav"
    stat = copy.stat()
    copy.write_bytes(bytes(stat.st_size))
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fetch(source, raw) == "up to date"
    assert not raw_matches(source, raw)
    assert fetch(source, raw, force=True) == "fetched again"
    assert raw_matches(source, raw)


def test_a_clip_copied_into_the_raw_folder_is_not_deleted_by_a_fetch(tmp_path):
    """New clips belong in the source; one put into data/raw stops the fetch that would replace data/raw
    (and delete it) until it is moved or --force says to drop it."""
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    shutil.copyfile(source / "clips" / "c.wav", raw / "clips" / "new.wav")
    add_row(source)
    with pytest.raises(DatasetError, match=r"raw: holds 1 file\(s\) no fetch wrote \(clips/new\.wav\)"):
        fetch(source, raw)
    assert (raw / "clips" / "new.wav").exists()
    fetch(source, raw, force=True)
    assert raw_matches(source, raw) and not (raw / "clips" / "new.wav").exists()


def test_force_with_no_fetch_is_refused(tmp_path):
    with pytest.raises(DatasetError, match="--force .* cannot be combined with --no-fetch"):
        run(IngestParams(), tmp_path / "raw", tmp_path / "m.csv", fetch=False, force=True)


def test_describing_without_fetching_stops_on_an_edit_made_since_the_fetch(tmp_path):
    """The DVC stage (`--no-fetch`) refuses to describe a data/raw older than its local source, and leaves
    data/raw untouched; it describes an unchanged one, and one whose source is not reachable from here."""
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    params = IngestParams(source=str(source), layout="csv")
    fetch(source, raw)
    for path in raw.rglob("*.wav"):  # as after `dvc pull`: other modification times, same bytes
        os.utime(path, ns=(0, 5_000_000_000))
    before = raw_state(raw)
    assert run(params, raw, tmp_path / "m.csv", fetch=False)["n_clips"] == 2
    assert raw_state(raw) == before
    add_row(source)
    with pytest.raises(
        DatasetError, match=r"raw: older than its source .*1 file\(s\) added \(clips/c\.wav\)"
    ):
        run(params, raw, tmp_path / "m.csv", fetch=False)
    assert raw_state(raw) == before
    shutil.move(source, tmp_path / "elsewhere")
    assert run(params, raw, tmp_path / "m.csv", fetch=False)["n_clips"] == 2


def test_rows_naming_missing_files_stop_the_fetch_one_line_each(tmp_path, caplog):
    source, raw = make_dataset(tmp_path / "src"), tmp_path / "raw"
    fetch(source, raw)
    before = raw_state(raw)
    (source / "labels.csv").write_text(
        "filename,label,fold\nclips/a.wav,dog,1\nclips/gone.wav,dog,1\nclips/b.wav,rooster,2\nclips/lost,dog,2\n"
    )
    with caplog.at_level(logging.ERROR), pytest.raises(DatasetError) as raised:
        fetch(source, raw)
    message = str(raised.value)
    assert "labels.csv:3: file clips/gone.wav not found" in message and "2 row(s)" in message
    lines = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert len(lines) == 2
    assert "labels.csv:3: file clips/gone.wav not found" in lines[0]
    assert "labels.csv:5: file clips/lost.wav not found" in lines[1]
    assert raw_state(raw) == before  # the earlier fetch is kept whole


def test_esc50_rows_naming_missing_files_give_the_metadata_row(tmp_path, caplog):
    """The row number is the metadata file's line, counting the rows ESC-10 leaves out."""
    source = tmp_path / "esc"
    rows = ["filename,fold,target,category,esc10"]
    for number, (category, esc10) in enumerate([("dog", "True"), ("cat", "False"), ("rain", "True")]):
        name = f"1-{number}-A-0.wav"
        rows.append(f"{name},1,0,{category},{esc10}")
        if category != "rain":
            write_audio(source / "audio" / name, tone(1.0))
    (source / "meta.csv").write_text("\n".join(rows) + "\n")
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(DatasetError, match=r"meta\.csv:4: file audio/1-2-A-0"),
    ):
        run(IngestParams(source=str(source)), tmp_path / "raw", tmp_path / "m.csv", describe=False)
    assert not (tmp_path / "raw").exists()


def test_fsd50k_rows_naming_missing_files_give_the_ground_truth_row(tmp_path):
    from tests.data.test_ingest import write_fsd50k

    source = write_fsd50k(tmp_path / "fsd")
    (source / "FSD50K.dev_audio" / "3.wav").unlink()  # Speech, line 4 of dev.csv
    params = IngestParams(
        source=str(source), layout="fsd50k", fsd50k=FSD50KOptions(classes=["Knock", "Speech"])
    )
    with pytest.raises(DatasetError, match=r"dev\.csv:4: file FSD50K\.dev_audio/3\.wav not found; 1 row"):
        run(params, tmp_path / "raw", tmp_path / "m.csv", describe=False)


def test_a_metadata_file_without_rows_is_refused(tmp_path):
    source = make_dataset(tmp_path / "src")
    (source / "labels.csv").write_text("filename,label,fold\n")
    with pytest.raises(DatasetError, match="the csv layout finds no clips to fetch"):
        fetch(source, tmp_path / "raw")


def aed(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("AED_DATA_MIRROR", None)
    return subprocess.run(["aed", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cli_missing_file_rows_exit_2_without_a_traceback(tmp_path):
    source = make_dataset(tmp_path / "src")
    add_row(source)
    (source / "clips" / "c.wav").unlink()
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"ingest": {"source": str(source), "layout": "csv"}})
    )
    result = aed("ingest", "--fetch-only", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "labels.csv:4: file clips/c.wav not found in" in result.stderr  # the row's own line
    assert (
        result.stderr.strip().splitlines()[-1].startswith("aed ingest: error: ")
        and "1 row(s)" in result.stderr
    )


@pytest.mark.slow
def test_edit_shows_in_dvc_status_after_make_data(tmp_path):
    """`make data` is `aed ingest --fetch-only` then `dvc commit data.dvc`: after an added row the raw folder
    differs from what DVC recorded, so `dvc status` shows it before the commit and the commit changes the hash."""
    source = make_dataset(tmp_path / "src")
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump({"ingest": {"source": str(source), "layout": "csv"}}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    dvc = shutil.which("dvc", path=str(BIN))

    def sh(*args: str) -> str:
        result = subprocess.run(args, cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    sh(dvc, "init", "--no-scm", "-q")
    assert aed("ingest", "--fetch-only", cwd=work).returncode == 0
    sh(dvc, "add", "-q", "data/raw")
    recorded = (work / "data" / "raw.dvc").read_text()
    assert "modified" not in sh(dvc, "status", "data/raw.dvc")
    add_row(source)
    fetched = aed("ingest", "--fetch-only", cwd=work)
    assert fetched.returncode == 0 and "fetching again" in fetched.stderr
    assert "modified:" in sh(dvc, "status", "data/raw.dvc")
    sh(dvc, "commit", "--force", "-q", "data/raw.dvc")
    assert (work / "data" / "raw.dvc").read_text() != recorded


@pytest.mark.slow
def test_an_s3_prefix_is_synced_by_etag_and_its_edits_fetched_again(tmp_path, s3_env):
    """Unchanged objects are not downloaded again (their staged copies keep their inode); a changed object, a new
    row and its clip, and an object deleted from the bucket are all seen."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    client.create_bucket(Bucket="edits")
    source = make_dataset(tmp_path / "src")

    def upload(relative: str) -> None:
        client.upload_file(str(source / relative), "edits", f"set/{relative}")

    for relative in ("labels.csv", "clips/a.wav", "clips/b.wav", "clips/c.wav"):
        upload(relative)
    cache, raw = tmp_path / "cache", tmp_path / "raw"
    params = IngestParams(source="s3://edits/set", layout="csv", s3_endpoint_url=s3_env, cache_dir=str(cache))

    def fetch_s3(force: bool = False) -> None:
        run(params, raw, tmp_path / "m.csv", describe=False, force=force)

    fetch_s3()
    staged = cache / "s3" / "edits" / "set"
    staged_inodes = {p.name: p.stat().st_ino for p in staged.rglob("*.wav")}
    raw_before = raw_state(raw)
    fetch_s3()
    assert raw_state(raw) == raw_before
    assert {p.name: p.stat().st_ino for p in staged.rglob("*.wav")} == staged_inodes  # nothing downloaded

    replace_file(source)
    add_row(source)
    upload("clips/b.wav")
    upload("labels.csv")
    fetch_s3()
    assert raw_matches(source, raw)
    assert {p.name: p.stat().st_ino for p in staged.rglob("*.wav")}["a.wav"] == staged_inodes["a.wav"]

    remove_row(source)
    upload("labels.csv")
    client.delete_object(Bucket="edits", Key="set/clips/c.wav")
    fetch_s3()
    assert raw_matches(source, raw) and not (staged / "clips" / "c.wav").exists()
    assert not (raw / "clips" / "c.wav").exists()

    fetch_s3(force=True)
    assert {p.name: p.stat().st_ino for p in staged.rglob("*.wav")}["a.wav"] != staged_inodes["a.wav"]


@pytest.mark.slow
def test_a_row_added_to_the_mirror_shows_in_dvc_status_and_reaches_the_manifest(
    tmp_path, repo_dir, esc10_dir
):
    """The project's own data.dvc and ingest stage: after a row is added to the local source, `make data`
    (`aed ingest --fetch-only` + `dvc commit data.dvc`) fetches it, `dvc status` shows data.dvc and the ingest
    stage changed, and `dvc repro` describes the new clip."""
    from tests.dvc_workspace import dvc_workspace, sh, small_mirror

    mirror = small_mirror(esc10_dir, tmp_path / "mirror", 1, ["category"])
    work = tmp_path / "work"
    env = dvc_workspace(work, repo_dir, mirror, ("ingest",), lambda params: None)
    sh("dvc", "repro", cwd=work, env=env)
    assert "up to date" in sh("dvc", "status", cwd=work, env=env)

    meta = pd.read_csv(mirror / "meta.csv", dtype=str)
    extra = meta.iloc[[0]].assign(filename="9-999999-A-0.wav")
    shutil.copyfile(mirror / "audio" / meta.iloc[0]["filename"], mirror / "audio" / "9-999999-A-0.wav")
    pd.concat([meta, extra]).to_csv(mirror / "meta.csv", index=False)

    fetched = sh("aed", "ingest", "--fetch-only", cwd=work, env=env)
    assert "fetching again" in fetched and "1 file(s) added (audio/9-999999-A-0.wav)" in fetched
    status = sh("dvc", "status", cwd=work, env=env)
    assert "data.dvc" in status and "modified:" in status and "data/raw" in status
    sh("dvc", "commit", "--force", "-q", "data.dvc", cwd=work, env=env)
    assert "ingest" in sh("dvc", "status", cwd=work, env=env)
    sh("dvc", "repro", cwd=work, env=env)
    assert yaml.safe_load((work / "reports" / "ingest.json").read_text())["n_clips"] == 11
