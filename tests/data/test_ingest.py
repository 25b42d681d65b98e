import http.server
import json
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from aed.datasets.errors import DatasetError
from aed.datasets.fetch import download, extract_zip
from aed.datasets.fsd50k import unsmear
from aed.datasets.ingest import FSD50KOptions, IngestParams
from aed.records import sha256_file
from components.ingest import run
from tests.conftest import loopback_http, tone, write_audio


def ingest(tmp_path: Path, params: IngestParams, **kwargs) -> tuple[dict, pd.DataFrame]:
    metrics = run(params, tmp_path / "raw", tmp_path / "manifest.csv", tmp_path / "ingest.json", **kwargs)
    return metrics, pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)


def test_esc10_mirror_gives_400_clips_in_10_classes_and_5_folds(tmp_path, esc10_dir, monkeypatch):
    monkeypatch.setenv("AED_DATA_MIRROR", str(esc10_dir))
    metrics, manifest = ingest(tmp_path, IngestParams())
    assert metrics["n_clips"] == 400 and metrics["n_with_problem"] == 0
    assert set(Counter(manifest["label"]).values()) == {40} and len(set(manifest["label"])) == 10
    assert sorted(set(manifest["fold"])) == [1, 2, 3, 4, 5]
    assert set(manifest["sample_rate"]) == {16000} and set(manifest["duration_s"]) == {5.0}
    assert (tmp_path / "raw" / "ATTRIBUTION.txt").exists()  # CC BY 3.0: attribution travels with the copy
    first = manifest.iloc[0]
    assert sha256_file(tmp_path / "raw" / first["path"]) == first["sha256"]


def test_fetch_is_skipped_when_the_raw_folder_already_holds_the_source(tmp_path, esc10_dir, monkeypatch):
    monkeypatch.setenv("AED_DATA_MIRROR", str(esc10_dir))
    ingest(tmp_path, IngestParams())
    copied = next((tmp_path / "raw" / "audio").iterdir())
    before = copied.stat().st_mtime_ns
    ingest(tmp_path, IngestParams())
    assert copied.stat().st_mtime_ns == before
    source = json.loads((tmp_path / "raw" / "SOURCE.json").read_text())
    assert source["source"] == "local:esc10"  # no machine-specific path in the DVC-tracked folder


def make_csv_dataset(root: Path, rows: list[str]) -> Path:
    write_audio(root / "clips" / "a.wav", tone(1.0))
    write_audio(root / "clips" / "b.wav", tone(1.0, frequency=900))
    (root / "labels.csv").write_text("filename,label,fold\n" + "\n".join(rows) + "\n")
    return root


def test_custom_csv_takes_a_missing_extension_from_the_file_on_disk(tmp_path, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = make_csv_dataset(tmp_path / "src", ["clips/a.wav,yes,1", "clips/b,no,2"])
    metrics, manifest = ingest(tmp_path, IngestParams(source=str(source), layout="csv"))
    assert metrics["n_clips"] == 2 and metrics["n_with_problem"] == 0
    assert manifest.loc[1, "path"] == "clips/b.wav"


def test_a_clip_gone_from_the_raw_folder_keeps_its_row_with_its_problem(tmp_path, monkeypatch):
    """A row naming a file the source lacks stops the fetch (test_ingest_edits.py); a clip missing from data/raw
    afterwards (a partial `dvc pull` on a machine without the source) is described with its problem, and
    validate quarantines it."""
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = make_csv_dataset(tmp_path / "src", ["clips/a.wav,yes,1", "clips/b.wav,no,2"])
    params = IngestParams(source=str(source), layout="csv")
    ingest(tmp_path, params)
    (tmp_path / "raw" / "clips" / "b.wav").unlink()
    source.rename(tmp_path / "elsewhere")
    metrics, manifest = ingest(tmp_path, params, fetch=False)
    assert metrics["n_clips"] == 2 and metrics["n_with_problem"] == 1
    assert "file missing" in manifest.loc[1, "problem"]


def test_custom_csv_path_escaping_the_root_is_rejected(tmp_path, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = make_csv_dataset(tmp_path / "src", ["clips/a.wav,yes,1", "../../etc/passwd,no,1"])
    with pytest.raises(DatasetError, match=r"labels\.csv:3: path '\.\./\.\./etc/passwd' points outside"):
        ingest(tmp_path, IngestParams(source=str(source), layout="csv"))


def test_custom_csv_without_label_column(tmp_path, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "labels.csv").write_text("file,cls\na.wav,x\n")
    with pytest.raises(DatasetError, match=r"labels\.csv: missing column\(s\) \['filename', 'label'\]"):
        ingest(tmp_path, IngestParams(source=str(tmp_path / "src"), layout="csv"))


def test_describe_only_refuses_a_raw_folder_from_another_source(tmp_path, esc10_dir, monkeypatch):
    monkeypatch.setenv("AED_DATA_MIRROR", str(esc10_dir))
    run(IngestParams(), tmp_path / "raw", tmp_path / "manifest.csv", describe=False)
    monkeypatch.delenv("AED_DATA_MIRROR")
    with pytest.raises(DatasetError, match="does not hold the configured source"):
        ingest(tmp_path, IngestParams(), fetch=False)


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one payload with Range support; the first `cut_responses` answers stop half-way."""

    payload = b""
    cut_responses = 0
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802
        cls = type(self)
        cls.requests.append(self.headers.get("Range"))
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        body = cls.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.cut_responses > 0:
            cls.cut_responses -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    RangeHandler.requests = []
    with loopback_http(RangeHandler) as url:
        yield url


def esc50_zip(tmp_path: Path) -> bytes:
    archive = tmp_path / "esc.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        rows = ["filename,fold,target,category,esc10,src_file,take"]
        for number, (label, target, esc10) in enumerate(
            [("dog", 0, "True"), ("rain", 10, "True"), ("cat", 5, "False")]
        ):
            name = f"1-{number}-A-{target}.wav"
            write_audio(tmp_path / name, tone(1.0, frequency=300 + 200 * number))
            bundle.write(tmp_path / name, f"ESC-50-master/audio/{name}")
            rows.append(f"{name},1,{target},{label},{esc10},{number},A")
        bundle.writestr("ESC-50-master/meta/esc50.csv", "\n".join(rows) + "\n")
        bundle.writestr("ESC-50-master/LICENSE", "CC BY-NC\n")
    return archive.read_bytes()


def test_http_zip_download_resumes_after_a_cut_and_keeps_esc10_rows(tmp_path, http_server, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    payload = esc50_zip(tmp_path)
    RangeHandler.payload, RangeHandler.cut_responses = payload, 1
    import hashlib

    params = IngestParams(
        source=f"{http_server}/master.zip",
        sha256=hashlib.sha256(payload).hexdigest(),
        cache_dir=str(tmp_path / "cache"),
    )
    metrics, manifest = ingest(tmp_path, params)
    assert RangeHandler.requests[0] is None and RangeHandler.requests[1].startswith("bytes=")  # resumed
    assert metrics["n_clips"] == 2 and sorted(manifest["label"]) == ["dog", "rain"]
    assert (tmp_path / "raw" / "LICENSE").exists()


def test_download_with_wrong_sha256_retries_then_fails_clearly(tmp_path, http_server):
    RangeHandler.payload, RangeHandler.cut_responses = b"not the archive you pinned", 0
    with pytest.raises(
        DatasetError, match=r"sha256 mismatch: expected 0{64}, got [0-9a-f]{64}.* after 3 attempts"
    ):
        download(f"{http_server}/x.zip", tmp_path / "x.zip", "0" * 64, attempts=3, backoff_s=0)
    assert len(RangeHandler.requests) == 3 and not (tmp_path / "x.zip").exists()


def test_zip_member_escaping_the_destination_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../outside.txt", "x")
    with pytest.raises(DatasetError, match="points outside the archive root"):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path.parent / "outside.txt").exists()


def write_fsd50k(root: Path) -> Path:
    truth = root / "FSD50K.ground_truth"
    truth.mkdir(parents=True)
    ontology = [
        {"id": "/m/knock", "name": "Knock", "child_ids": []},
        {"id": "/m/door", "name": "Door", "child_ids": ["/m/knock"]},
        {"id": "/m/speech", "name": "Speech", "child_ids": []},
        {"id": "/m/dog", "name": "Dog", "child_ids": []},
        {"id": "/m/bird", "name": "Bird", "child_ids": []},
    ]
    (root / "ontology.json").write_text(json.dumps(ontology))
    header = "fname,labels,mids,split\n"
    (truth / "dev.csv").write_text(
        header
        + '1,"Knock,Door","/m/knock,/m/door",train\n'  # unsmeared to Knock
        + '2,"Knock,Speech","/m/knock,/m/speech",train\n'  # two leaves: not monolabel
        + "3,Speech,/m/speech,train\n4,Dog,/m/dog,train\n5,Bird,/m/bird,val\n"
    )
    (truth / "eval.csv").write_text(
        "fname,labels,mids\n10,Knock,/m/knock\n11,Speech,/m/speech\n12,Dog,/m/dog\n"
    )
    for part, names in (("dev", [1, 2, 3, 4, 5]), ("eval", [10, 11, 12])):
        for name in names:
            write_audio(root / f"FSD50K.{part}_audio" / f"{name}.wav", tone(1.0))
    return root


def test_fsd50k_unsmearing_monolabel_filter_and_unknown_class(tmp_path, monkeypatch):
    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    source = write_fsd50k(tmp_path / "fsd")
    options = FSD50KOptions(classes=["Knock", "Speech"], use_unknown_class=True, samples_per_other_class=2)
    _, manifest = ingest(tmp_path, IngestParams(source=str(source), layout="fsd50k", fsd50k=options))
    train = manifest[manifest["split"] == "train"]
    assert sorted(train[train["label"] != "other"]["clip_id"]) == ["dev-1", "dev-3"]
    assert Counter(train["label"])["other"] == 4  # 2 draws (with replacement) from each of Dog and Bird
    assert len(set(manifest["clip_id"])) == len(manifest)
    assert Counter(manifest[manifest["split"] == "test"]["label"]) == {"Knock": 1, "Speech": 1, "other": 2}


def test_unsmear_keeps_only_the_most_specific_labels():
    children = {"/m/door": {"/m/knock"}}
    assert unsmear(["Knock", "Door"], ["/m/knock", "/m/door"], children) == ["Knock"]


@pytest.mark.slow
def test_s3_prefix_source_through_a_real_s3_server(tmp_path, s3_env, monkeypatch):
    import boto3

    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    client = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    client.create_bucket(Bucket="datasets")
    source = make_csv_dataset(tmp_path / "src", ["clips/a.wav,yes,1", "clips/b.wav,no,2"])
    for path in source.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "datasets", f"mini/v1/{path.relative_to(source).as_posix()}")
    params = IngestParams(
        source="s3://datasets/mini/v1",
        layout="csv",
        s3_endpoint_url=s3_env,
        cache_dir=str(tmp_path / "cache"),
    )
    metrics, manifest = ingest(tmp_path, params)
    assert metrics["n_clips"] == 2 and metrics["n_with_problem"] == 0
    assert (tmp_path / "raw" / "clips" / "a.wav").read_bytes() == (source / "clips" / "a.wav").read_bytes()
    with pytest.raises(DatasetError, match="no objects under this prefix"):
        run(
            IngestParams(
                source="s3://datasets/nothing",
                layout="csv",
                s3_endpoint_url=s3_env,
                cache_dir=str(tmp_path / "cache2"),
            ),
            tmp_path / "raw2",
            tmp_path / "m2.csv",
        )
