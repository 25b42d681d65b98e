"""models.yamnet_1024_h5 as a local path or an http(s) URL (downloaded once, sha256 enforced), on loopback."""

from __future__ import annotations

import functools
import hashlib
import http.server
from pathlib import Path

import pytest

from aed.datasets.errors import DatasetError
from aed.models.config import ModelsParams
from aed.params import ParamsError
from tests.conftest import loopback_http


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "site"
    root.mkdir()
    (root / "yamnet.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with loopback_http(handler) as url:
        yield url, root / "yamnet.h5"


def test_url_is_downloaded_once_into_the_cache_and_verified(served, tmp_path: Path) -> None:
    base, original = served
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    params = ModelsParams(
        yamnet_1024_h5=f"{base}/yamnet.h5",
        yamnet_1024_h5_sha256=digest,
        weights_cache_dir=str(tmp_path / "cache"),
    )
    path, sha = params.h5_for("yamnet_1024")
    assert sha == digest and path.parent == tmp_path / "cache"
    assert path.read_bytes() == original.read_bytes()
    original.unlink()  # a second call uses the verified copy, not the network
    assert params.h5_for("yamnet_1024")[0] == path
    assert params.h5_for("yamnet_256") == (None, None)


def test_url_with_a_wrong_sha256_is_refused_and_named(served, tmp_path: Path, monkeypatch) -> None:
    base, _ = served
    monkeypatch.setattr("aed.datasets.fetch.time.sleep", lambda _seconds: None)  # no back-off between retries
    params = ModelsParams(
        yamnet_1024_h5=f"{base}/yamnet.h5", yamnet_1024_h5_sha256="0" * 64, weights_cache_dir=str(tmp_path)
    )
    with pytest.raises(DatasetError, match=r"yamnet\.h5: sha256 mismatch"):
        params.h5_for("yamnet_1024")
    assert not list(tmp_path.glob("*.h5"))  # nothing unverified is left where a loader would find it


def test_weights_without_a_pinned_sha256_are_refused() -> None:
    with pytest.raises(ParamsError, match="yamnet_1024_h5_sha256"):
        ModelsParams(yamnet_1024_h5="https://example.invalid/yamnet.h5").validate()
