"""The built role images (`make images`): within budget, non-root, `pip check` clean, the venv's versions of the
lock's packages and nothing else, no TensorFlow where the role does not need it, and no tests, .git, data, caches
or credentials among their files."""

from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pipelines.images import ROLES, normalize, parse_lock, role_packages

REPO = Path(__file__).resolve().parents[2]
BUDGET_MB = {"data": 800, "hil": 800, "train": 2500}  # docker image inspect .Size, 10^6 bytes
# What a venv brings before the lock is installed; pip stays (pip check needs it).
VENV_TOOLS = {"pip"}

pytestmark = pytest.mark.container


def _run(client: Any, image: Any, command: list[str], user: str = "") -> str:
    """The command's output in a fresh container of the image (no network); fails the test on a non-zero exit."""
    import docker

    try:
        output = client.containers.run(
            image.id, command, remove=True, network_mode="none", user=user or None, stderr=True
        )
    except docker.errors.ContainerError as error:
        pytest.fail(f"{image.tags}: {' '.join(command)} exited {error.exit_status}: {error.stderr!r}")
    return output.decode(errors="replace")


@pytest.mark.parametrize("role", ROLES)
def test_image_within_budget_non_root_and_pip_check_clean(
    docker_client: Any, built_images: dict, role: str
) -> None:
    image = built_images[role]
    size_mb = image.attrs["Size"] / 1e6
    assert size_mb <= BUDGET_MB[role], f"aed-{role}: {size_mb:.0f} MB > {BUDGET_MB[role]} MB"
    assert image.attrs["Config"]["User"] == "aed"
    assert _run(docker_client, image, ["id", "-u"]).strip() == "1000"
    assert "No broken requirements found." in _run(docker_client, image, ["pip", "check"])


@pytest.mark.parametrize("role", ROLES)
def test_image_holds_the_venvs_versions_of_its_roles_lock_closure(
    docker_client: Any, built_images: dict, role: str
) -> None:
    script = (
        "import json, importlib.metadata as m; "
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    in_image = {
        normalize(k): v
        for k, v in json.loads(_run(docker_client, built_images[role], ["python", "-c", script])).items()
    }
    venv = {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    expected = role_packages(parse_lock((REPO / "requirements.lock").read_text()), role)
    assert set(in_image) - VENV_TOOLS - {"aed-mlops"} == expected
    differ = {
        name: (version, venv.get(name))
        for name, version in in_image.items()
        if name in expected and version != venv.get(name)
    }
    assert not differ, f"aed-{role}: image and venv versions differ (image, venv): {differ}"
    assert in_image["aed-mlops"] == venv["aed-mlops"]


@pytest.mark.parametrize("role", ["data", "hil"])
def test_data_and_hil_images_cannot_import_tensorflow(
    docker_client: Any, built_images: dict, role: str
) -> None:
    probe = "import importlib.util as u; print([m for m in ('tensorflow', 'keras') if u.find_spec(m)])"
    assert _run(docker_client, built_images[role], ["python", "-c", probe]).strip() == "[]"


# Paths no image may hold: the project's tests, git metadata, data, caches, credentials (file names).
FORBIDDEN = {
    "git metadata": r"/\.git(/|$)",
    "tests": r"^/opt/aed/tests(/|$)|^/opt/aed/.*(/test_[^/]*\.py|/conftest\.py)$|/site-packages/.*/tests(/|$)",
    "project data or outputs": r"^/opt/aed/(data|work|artifacts|models|reports|\.dvc)(/|$)|^/opt/aed/.*\.(wav|flac|ogg)$",
    "audio data outside a package": r"^/(?!opt/venv/lib/python3\.11/site-packages/).*\.(wav|flac|ogg|mp3)$",
    "caches": r"/\.cache(/|$)|^/opt/aed/.*(__pycache__|\.pyc$)|^/root/\.cache|^/var/cache/apt/.*\.(deb|bin)$"
    r"|^/var/lib/apt/lists/[^/]+_(Packages|Release|InRelease)",
    "credentials": r"/(id_(rsa|dsa|ecdsa|ed25519)[^/]*|\.netrc|\.pypirc|\.git-credentials|\.env|[^/]*\.(p12|pfx))$"
    r"|/\.aws/|/\.docker/config\.json$|^/run/secrets/|^/tmp/ca\.pem$",
}


def _files(client: Any, image: Any) -> list[str]:
    """Every path of the image. The listing is written to a file and copied out, not read from the container's
    log: a log tens of thousands of lines long can come back cut short when the container exits at once."""
    import io
    import tarfile

    listing = "find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -print > /tmp/files.txt"
    container = client.containers.create(image.id, ["sh", "-c", listing], user="0", network_disabled=True)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        assert status == 0, f"{image.tags}: the file listing exited {status}"
        chunks, _ = container.get_archive("/tmp/files.txt")
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as archive:
            member = archive.extractfile("files.txt")
            assert member is not None
            paths = member.read().decode(errors="replace").splitlines()
    finally:
        container.remove(force=True)
    return [path for path in paths if path != "/tmp/files.txt"]


def _host_ca_lines() -> list[str]:
    """A line from the body of each CA the host added (the proxy's): none may be baked into an image."""
    lines = []
    for path in Path("/usr/local/share/ca-certificates").glob("**/*.crt"):
        body = [
            line for line in path.read_text(errors="replace").splitlines() if line and "-----" not in line
        ]
        if len(body) > 2:
            lines.append(body[len(body) // 2])
    return lines


def test_forbidden_patterns_catch_what_they_should() -> None:
    """The file rules themselves, on paths an image must not hold and on ones it legitimately holds."""
    bad = [
        "/opt/aed/.git/config",
        "/opt/aed/tests/test_repository.py",
        "/opt/aed/data/raw/audio/1-100032-A-0.wav",
        "/opt/aed/.cache/aed/weights/x.h5",
        "/opt/aed/aed/__pycache__/records.cpython-311.pyc",
        "/home/aed/.aws/credentials",
        "/root/.netrc",
        "/tmp/ca.pem",
        "/opt/venv/lib/python3.11/site-packages/numpy/tests/test_x.py",
    ]
    good = [
        "/opt/aed/aed/records.py",
        "/opt/venv/lib/python3.11/site-packages/botocore/credentials.py",
        "/opt/venv/lib/python3.11/site-packages/dcase_util/utils/example_data/acoustic_scene.wav",
        "/etc/ssl/certs/ca-certificates.crt",
        "/opt/venv/lib/python3.11/site-packages/tensorflow/_api/v2/test/__init__.py",
    ]
    flagged = lambda path: [k for k, rule in FORBIDDEN.items() if re.search(rule, path)]  # noqa: E731
    assert all(flagged(path) for path in bad), [p for p in bad if not flagged(p)]
    assert not any(flagged(path) for path in good), {p: flagged(p) for p in good if flagged(p)}


@pytest.mark.parametrize("role", ROLES)
def test_image_files_hold_no_tests_git_data_caches_or_credentials(
    docker_client: Any, built_images: dict, role: str
) -> None:
    files = _files(docker_client, built_images[role])
    assert "/opt/aed/aed/records.py" in files and "/opt/aed/params.yaml" in files
    found = {kind: [path for path in files if re.search(rule, path)][:5] for kind, rule in FORBIDDEN.items()}
    assert not any(found.values()), f"aed-{role}: { ({k: v for k, v in found.items() if v}) }"
    # private keys outside the installed packages, and the build's extra CA (a BuildKit secret, never a layer)
    scan = "grep -rlE -e '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' /etc /home /root /opt/aed /tmp /var 2>/dev/null; true"
    assert _run(docker_client, built_images[role], ["sh", "-c", scan], user="0").strip() == ""
    for line in _host_ca_lines():
        probe = f"grep -rlF -e '{line}' /etc/ssl /opt /usr/local /tmp /home 2>/dev/null; true"
        assert _run(docker_client, built_images[role], ["sh", "-c", probe], user="0").strip() == "", (
            "host CA baked"
        )
