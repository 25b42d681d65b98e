"""Loopback services for the pipeline tests: a stand-in KFP API server (moto comes from tests/conftest.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import kfp_loopback  # noqa: E402


@pytest.fixture
def kfp_server() -> Iterator[kfp_loopback.LoopbackKfp]:
    state = kfp_loopback.LoopbackKfp()
    server, thread = kfp_loopback.start(state)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# moto_endpoint and s3_env (a real moto S3 server on 127.0.0.1) come from tests/conftest.py.
