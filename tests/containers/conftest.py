"""The container tests' engine and images: without them a test is skipped with the reason (`make test` on a laptop
without Docker), but under CI=true it fails, so that CI never passes without running them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.images import ROLES, Images

REPO = Path(__file__).resolve().parents[2]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(
            f"CI=true: {reason}; the container tests must run in CI (.ci/run starts an engine and builds)"
        )
    pytest.skip(f"container tests skipped: {reason}")


def role_images() -> Images:
    """The images `make images` builds and the tasks name: params.yaml's registry and tag (empty: the version)."""
    settings = yaml.safe_load((REPO / "params.yaml").read_text())["pipeline"]
    return Images(settings["image_registry"], settings["image_tag"] or "")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as error:  # no socket, no daemon, no permission: all mean no engine here
        _unavailable(f"no container engine answers ({type(error).__name__}; DOCKER_HOST names its socket)")
    yield client
    client.close()


@pytest.fixture(scope="session")
def built_images(docker_client: Any) -> dict[str, Any]:
    """{role: docker image} for every role image; skipped (failed under CI) when one is not built."""
    import docker

    names = role_images()
    found = {}
    for role in ROLES:
        try:
            found[role] = docker_client.images.get(names.name(role))
        except docker.errors.ImageNotFound:
            _unavailable(f"image {names.name(role)} not built (run `make images`)")
    return found
