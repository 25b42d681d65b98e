"""The role images without an engine: each step has a role, each role's packages cover what its steps import and
come from the lock, the compiled pipeline names each task's role image, and `make images` fails in one line."""

from __future__ import annotations

import ast
import os
import re
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from pipelines import images
from pipelines.aed_pipeline import (
    COMPILED,
    EXTRA_TASKS,
    SETTINGS,
    STEPS,
    TASK_ONLY_MODULES,
    step_image,
    task_body,
    task_suffix,
)
from pipelines.images import ROLES, Images, parse_lock, role_packages

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
LOCAL_PACKAGES = ("aed", "components", "hil_runner", "pipelines")
TENSORFLOW = {"tensorflow-cpu", "tensorflow", "keras", "tf2onnx", "tensorboard"}


def _lock() -> dict[str, images.LockEntry]:
    return parse_lock((REPO / "requirements.lock").read_text())


def _module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imported(path: Path, module: str) -> set[str]:
    """Every module named by an import anywhere in the file (function-level imports too: steps import lazily)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found |= {f"{name}.{alias.name}" for alias in node.names}
    return found


def _third_party_imports(steps: list[str], excluded: tuple[str, ...] = ()) -> set[str]:
    """Top-level third-party modules the steps' code can import, following the project's own modules but not
    those under `excluded` (code that only a task of another role runs)."""
    seen: set[str] = set()
    third: set[str] = set()
    folders = [EXTRA_TASKS[step][0] if step in EXTRA_TASKS else step for step in steps]
    todo = [f"components.{folder}" for folder in folders] + [
        f"components.{folder}.task" for folder in folders
    ]
    while todo:
        module = todo.pop()
        if module in seen or any(module == e or module.startswith(e + ".") for e in excluded):
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        path = _module_file(module)
        for name in _imported(path, module) if path else ():
            (todo.append(name) if name.split(".")[0] in LOCAL_PACKAGES else third.add(name.split(".")[0]))
    return third


def _excluded(role: str) -> tuple[str, ...]:
    """The modules of tasks that run in another role's image although their step's code is scanned here."""
    steps = set(_steps_of(role))
    return tuple(
        module
        for task, modules in TASK_ONLY_MODULES.items()
        if EXTRA_TASKS[task][0] in steps and SETTINGS[task].image != role
        for module in modules
    )


def _steps_of(role: str) -> list[str]:
    return [step for step, settings in SETTINGS.items() if settings.image == role]


def test_every_step_of_the_dag_has_a_role_image() -> None:
    assert set(STEPS) <= set(SETTINGS), f"steps without a SETTINGS row: {set(STEPS) - set(SETTINGS)}"
    assert {settings.image for settings in SETTINGS.values()} == set(ROLES)
    assert _steps_of("data") == ["ingest", "validate", "patch"]
    assert {"train", "quantize", "evaluate", "convert", "export_firmware"} <= set(_steps_of("train"))
    assert {"hil", "gate", "promote"} <= set(_steps_of("hil"))
    with pytest.raises(ValueError, match="SETTINGS: no row for step 'streaming'"):
        step_image(Images(tag="1"), "streaming")


def test_every_settings_row_is_a_task_body_the_image_build_can_import() -> None:
    """docker/role.Dockerfile imports each task body of its role at build time (SETTINGS rows through task_body):
    a row that is no task body (an extra task's name taken for a module) would fail the build."""
    dockerfile = (DOCKER / "role.Dockerfile").read_text()
    assert "task_body(s) for s, t in SETTINGS.items()" in dockerfile
    for step in SETTINGS:
        assert callable(task_body(step)), step


@pytest.mark.parametrize("role", ROLES)
def test_role_packages_cover_every_import_of_its_steps(role: str) -> None:
    """A package a step imports but its image lacks would fail the task only inside the container: caught here."""
    packages = role_packages(_lock(), role)
    distributions = metadata.packages_distributions()
    missing = {}
    for module in sorted(_third_party_imports(_steps_of(role), _excluded(role))):
        if module not in distributions:
            continue  # the standard library
        provided = {images.normalize(name) for name in distributions[module]}
        if not provided & packages:
            missing[module] = sorted(provided)
    assert not missing, f"{role}: imported by its steps but not in ROLE_ROOTS' closure: {missing}"


def test_data_and_hil_images_hold_no_tensorflow_and_train_holds_the_lock_closure() -> None:
    lock = _lock()
    for role in ("data", "hil"):
        assert not role_packages(lock, role) & TENSORFLOW, role
    train = role_packages(lock, "train")
    assert {"tensorflow-cpu", "keras", "ai-edge-litert", "backports-strenum", "kfp"} <= train
    # development tools never reach an image (pytest does: labgrid and psds-eval declare it)
    assert not {"ruff", "moto", "grpcio-tools", "pytest-timeout"} & set().union(
        *(role_packages(lock, r) for r in ROLES)
    )


def test_role_requirements_are_the_locks_pins_and_hashes(tmp_path: Path) -> None:
    """The files pip installs in an image: every pin and hash copied from the lock, the Requires-Python override
    apart, and the project's metadata requiring the role's roots at the lock's versions."""
    lock_text = (REPO / "requirements.lock").read_text()
    lock = _lock()
    assert len(lock) == len(re.findall(r"^[A-Za-z0-9][^\s=]*==", lock_text, re.M))
    installed = {images.normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}
    for role in ROLES:
        out = tmp_path / role
        assert images.main(["requirements", role, str(REPO), str(out)]) == 0
        written = parse_lock((out / "lock.txt").read_text() + (out / "overrides.txt").read_text())
        assert set(written) == role_packages(lock, role)
        for name, entry in written.items():
            assert entry.text.split(" ")[0] in lock_text
            assert set(re.findall(r"sha256:\w+", entry.text)) == set(
                re.findall(r"sha256:\w+", lock[name].text)
            )
            assert entry.text.split(" ")[0].split("==")[1] == installed[name], f"{name}: lock and venv differ"
        overrides = (out / "overrides.txt").read_text()
        assert ("backports-strenum==" in overrides) == (role != "data")
        assert "backports-strenum" not in (out / "lock.txt").read_text()
        requires = re.findall(r"^Requires-Dist: (\S+)==(\S+)$", (out / "METADATA").read_text(), re.M)
        assert {name for name, _ in requires} == set(images.ROLE_ROOTS[role])
        assert all(installed[name] == version for name, version in requires)


def test_bad_role_and_missing_root_are_one_line_errors(tmp_path: Path, capsys) -> None:
    assert images.main(["requirements", "gpu", str(REPO), str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "images.py: error: unknown image role 'gpu'; known: ['data', 'train', 'hil']"
    )
    (tmp_path / "requirements.lock").write_text("numpy==2.4.6 \\\n    --hash=sha256:00\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nversion = "1"\n')
    assert images.main(["requirements", "data", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "requirements.lock: no pin for ['kfp'" in err[0]


def test_compiled_pipeline_names_the_role_image_of_every_task() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())["pipeline"]
    expected = Images(params["image_registry"], params["image_tag"] or "")
    executors = yaml.safe_load(COMPILED.read_text())["deploymentSpec"]["executors"]
    seen = set()
    for name, executor in executors.items():
        step = next(
            s
            for s in sorted((*STEPS, *EXTRA_TASKS), key=len, reverse=True)
            if name.startswith(f"exec-{task_suffix(s)}")
        )
        assert executor["container"]["image"] == expected.name(SETTINGS[step].image), name
        seen.add(step)
    assert seen == set(STEPS) | set(EXTRA_TASKS)
    assert expected.tag == metadata.version("aed-mlops") or expected.tag == params["image_tag"]


def test_dockerfile_copies_only_what_its_dockerignore_lets_through() -> None:
    from pipelines.cli import IMAGE_PROJECT_DIR

    text = (DOCKER / "role.Dockerfile").read_text()
    allowed = {
        line[1:].rstrip("/")
        for line in (DOCKER / "role.Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copies = re.findall(r"^COPY (?!--)(.+) \S+$", text, re.M)
    assert copies
    for sources in copies:
        for source in sources.split():
            assert source.split("/")[0] in allowed and (REPO / source).exists(), source
    assert {"tests", ".git", "data", "work", ".cache"}.isdisjoint(allowed)
    assert f"WORKDIR {IMAGE_PROJECT_DIR}" in text and "COPY baselines ./baselines" in text
    assert re.search(r"^USER aed$", text, re.M) and "pip check" in text
    # the extra CA is a BuildKit secret, read in the RUN that installs and removed in it
    assert "--mount=type=secret,id=extra_ca" in text and "rm -f /tmp/ca.pem" in text


# -- make images: one line per failure --------------------------------------------------------------------------
def _fake_docker(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "docker"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def _make_images(tmp_path: Path, docker: Path | str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(DOCKER / "build-images.sh")],
        env={**os.environ, "DOCKER": str(docker), "IMAGES_LOG_DIR": str(tmp_path / "logs"), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


ENGINE_OK = 'case "$1" in info) exit 0;; buildx) exit 0;; image) exit 1;; pull) exit 1;; esac\n'


@pytest.mark.parametrize(
    ("body", "env", "expected"),
    [
        (None, {}, "no docker CLI"),
        ('[ "$1" = info ] && exit 1\nexit 0\n', {}, "no container engine answers"),
        (
            'case "$1" in info) exit 0;; buildx) exit 1;; version) echo 28.2.2;; esac\n',
            {},
            "has no BuildKit (no buildx plugin)",
        ),
        (
            ENGINE_OK,
            {"BASE_IMAGE": "registry.example/python:3.11"},
            "base image registry.example/python:3.11 is not here and cannot be pulled",
        ),
        (
            ENGINE_OK,
            {"BASE_IMAGE": "auto", "PATH": "/usr/bin:/bin"},  # no registry, no debootstrap (in /usr/sbin)
            "debootstrap not found: apt-get install -y debootstrap" if os.getuid() == 0 else "needs root",
        ),
        (
            'case "$1" in info|buildx|image) exit 0;; build) echo "pip._vendor.urllib3 NewConnectionError: [Errno 101]"; exit 1;; esac\n',
            {"BASE_IMAGE": "python:3.11.7-slim-bookworm"},
            "no package registry reachable from the build",
        ),
        (
            'case "$1" in info|buildx|image) exit 0;; build) echo "SSLError(SSLCertVerificationError(1, \'[SSL: CERTIFICATE_VERIFY_FAILED]"; exit 1;; esac\n',
            {"BASE_IMAGE": "python:3.11.7-slim-bookworm"},
            "give its CA with EXTRA_CA=/path/ca.pem",
        ),
        (
            ENGINE_OK.replace("image) exit 1", "image) exit 0"),
            {"EXTRA_CA": "/nonexistent/ca.pem"},
            "EXTRA_CA=/nonexistent/ca.pem: no such file",
        ),
    ],
    ids=[
        "no-cli",
        "no-engine",
        "no-buildkit",
        "no-base-image",
        "no-registry-no-root",
        "no-pypi",
        "untrusted-ca",
        "bad-ca",
    ],
)
def test_make_images_failures_are_one_line(
    tmp_path: Path, body: str | None, env: dict, expected: str
) -> None:
    docker = _fake_docker(tmp_path, body) if body else tmp_path / "missing-docker"
    result = _make_images(tmp_path, docker, **env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("make images: ") and expected in lines[0], result.stderr


def test_ci_builds_the_images_before_the_suite_and_stops_only_the_engine_it_started() -> None:
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert lines.index("make images") < lines.index("make test")
    assert "dockerd_pid=$!" in lines and 'kill "$dockerd_pid"' in lines and "trap stop_engine EXIT" in lines
    assert not any(word in line for line in lines for word in ("pkill", "killall", "kill -9 -1"))
    assert 'export CI="${CI:-true}"' in lines  # a missing engine fails the container tests in CI


@pytest.mark.parametrize("ci", ["", "true"])
def test_container_tests_skip_with_a_reason_without_an_engine_but_fail_under_ci(
    tmp_path: Path, ci: str
) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'no-engine.sock'}", "CI": ci}
    test = "tests/containers/test_container_images.py::test_data_and_hil_images_cannot_import_tensorflow"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", test, "-q", "-rsE", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ci:
        assert result.returncode == 1 and "2 error" in result.stdout, result.stdout
        assert "CI=true: no container engine answers" in result.stdout
    else:
        assert result.returncode == 0 and "2 skipped" in result.stdout, result.stdout
        assert "container tests skipped: no container engine answers" in result.stdout
