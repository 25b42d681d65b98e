"""Shared test fixtures: paths to the ../shared assets (CI has them: a missing asset fails, never skips),
synthetic audio writers, and quiet third-party defaults."""

from __future__ import annotations

import contextlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

REPO = Path(__file__).resolve().parents[1]
SHARED_DEFAULT = REPO.parent / "shared"

os.environ.setdefault("AED_SHARED", str(SHARED_DEFAULT))
os.environ.setdefault("AED_DATA_MIRROR", str(Path(os.environ["AED_SHARED"]) / "data" / "esc10"))
os.environ.setdefault("AED_MODELS_MIRROR", str(Path(os.environ["AED_SHARED"]) / "models" / "yamnet"))
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _required_dir(variable: str) -> Path:
    path = Path(os.environ[variable])
    if not path.is_dir():
        pytest.fail(f"{variable}={path}: directory not found (CI runs with ../shared beside the clone)")
    return path


# What `make demo` (dvc repro) leaves in the clone. Tests work in their own tmp dirs: `make test` after `make demo`
# must neither depend on these outputs nor change them (the README runs the two commands in order in one clone).
WORKING_TREE_OUTPUTS = ("models", "artifacts", "reports", "work")


def _outputs_snapshot() -> dict[str, tuple[int, int]]:
    found = {}
    for name in WORKING_TREE_OUTPUTS:
        for path in (REPO / name).rglob("*"):
            with contextlib.suppress(OSError):  # a file removed while walking: the next snapshot shows it
                stat = path.stat()
                found[str(path.relative_to(REPO))] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(autouse=True)
def working_tree_outputs_untouched() -> Iterator[None]:
    """Fails the test that wrote into the clone's models/, artifacts/, reports/ or work/."""
    before = _outputs_snapshot()
    yield
    after = _outputs_snapshot()
    if after != before:
        changed = sorted(set(after.items()) ^ set(before.items()))
        pytest.fail(f"the test changed the working tree's outputs: {sorted({p for p, _ in changed})[:5]}")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _required_dir("AED_SHARED")


@pytest.fixture(scope="session")
def esc10_dir() -> Path:
    return _required_dir("AED_DATA_MIRROR")


@pytest.fixture(scope="session")
def yamnet_dir() -> Path:
    return _required_dir("AED_MODELS_MIRROR")


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return REPO


def tone(seconds: float = 2.0, sample_rate: int = 16000, frequency: float = 440.0, amplitude: float = 0.3):
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    rng = np.random.default_rng(0)
    return (amplitude * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def write_audio(path: Path, signal: np.ndarray, sample_rate: int = 16000, subtype: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal, sample_rate, subtype=subtype)
    return path


def default_sigint() -> None:
    """preexec_fn for a child that a test interrupts: a shell started in the background (nohup, CI) hands its
    children SIGINT ignored, and Python then keeps it ignored; a terminal's Ctrl-C is what the test imitates."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def loopback_http(handler) -> Iterator[str]:
    """An HTTP server with `handler` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (moto in server mode) on 127.0.0.1, in its own process group."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"moto_server did not listen on 127.0.0.1:{port} within 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Dummy credentials that only moto accepts; real runs take theirs from the AWS environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AED_S3_ENDPOINT_URL", raising=False)
    return moto_endpoint


def pytest_configure(config: pytest.Config) -> None:
    # tests/containers/conftest.py: skipped with a message without an engine or images, failed under CI=true.
    config.addinivalue_line("markers", "container: needs a container engine and the images of `make images`")
