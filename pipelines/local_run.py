"""Run the KFP pipeline on this machine with kfp.local: SubprocessRunner (the current environment) or DockerRunner
(each task in its role's image, pipelines.images).

kfp.local streams every task's output into one console and, after a failure, names the task but not where its
log went; it also keeps launching independent tasks. This module wraps the task launcher of either runner so that
each task's output is also written to `<task dir>/task.log`, tasks get a wall-clock limit, and after the first
failure no further task starts: the run stops and the error names the failed task and its log.

With DockerRunner, a task sees the pipeline root (kfp.local mounts it at the same path) and, at the same paths,
the host folders its params name (DockerMount: inputs read-only, the registry and work folders writable) and the
YAMNet weights mirror. It runs as the image's non-root user; when this process is root, that user is given the
run's folders (ownership), otherwise the task runs as this process's user (user mapping). Images are never
pulled: a missing image stops the run before any task, with one line saying to run `make images`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOG_NAME = "task.log"
TAIL_LINES = 15


class LocalRunError(RuntimeError):
    """The local run failed; the message names the failed task and its log."""

    def __init__(self, message: str, run: LocalRun | None = None) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class TaskRecord:
    task_dir: Path
    seconds: float
    returncode: int
    skipped: bool = False

    @property
    def name(self) -> str:
        return self.task_dir.name

    @property
    def log(self) -> Path:
        return self.task_dir / LOG_NAME


@dataclass
class LocalRun:
    run_dir: Path | None
    tasks: list[TaskRecord] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TaskRecord]:
        return [t for t in self.tasks if t.returncode != 0 and not t.skipped]


def _task_dir(full_command: list[str]) -> Path | None:
    """The task's output directory, from the executor input JSON that follows --executor_input."""
    for flag, value in zip(full_command, full_command[1:], strict=False):
        if flag == "--executor_input":
            try:
                output_file = json.loads(value)["outputs"]["outputFile"]
            except (ValueError, KeyError, TypeError):
                return None
            return Path(output_file).parent
    return None


class _Launcher:
    """Replacement for kfp.local.subprocess_task_handler.run_local_subprocess (same signature)."""

    def __init__(self, run: LocalRun, task_timeout_s: float, drop_environment: tuple[str, ...] = ()) -> None:
        self.run = run
        self.task_timeout_s = task_timeout_s
        self.drop_environment = drop_environment
        self.lock = threading.Lock()
        self.stopped = False

    def __call__(self, full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
        env = {**os.environ, **(env_vars or {}), "PYTHONUNBUFFERED": "1"}
        for name in self.drop_environment:  # already in the run's params: a task must not read them twice
            env.pop(name, None)
        return self._track(full_command, lambda log: self._execute(full_command, env, log))

    def _track(self, full_command: list[str], execute: Callable[[Path], int]) -> int:
        """Run `execute(log path)` for the task of `full_command` unless the run has stopped; record the result."""
        task_dir = _task_dir(full_command) or Path("unknown-task")
        with self.lock:
            if self.stopped:
                # Refuse to start anything after a failure, so that nothing downstream (promote) can run.
                self.run.tasks.append(TaskRecord(task_dir, 0.0, 1, skipped=True))
                return 1
        task_dir.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        returncode = execute(task_dir / LOG_NAME)
        record = TaskRecord(task_dir, time.monotonic() - start, returncode)
        with self.lock:
            self.run.tasks.append(record)
            if returncode != 0:
                self.stopped = True
        return returncode

    def _execute(self, full_command: list[str], env: dict[str, str], log_path: Path) -> int:
        with (
            open(log_path, "w") as log,
            subprocess.Popen(
                full_command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
                env=env,
                start_new_session=True,  # its own process group: the timeout kills `sh -c` and the python under it
            ) as process,
        ):
            killed = threading.Event()

            def kill() -> None:
                killed.set()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)

            timer = threading.Timer(self.task_timeout_s, kill)
            timer.start()
            try:
                assert process.stdout is not None
                for line in iter(process.stdout.readline, ""):
                    print(line, end="")
                    log.write(line)
                returncode = process.wait()
            except BaseException:
                # Ctrl-C reaches only our process group: take the task's group down with us.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                raise
            finally:
                timer.cancel()
            if killed.is_set():
                log.write(f"\n[aed] task killed after the {self.task_timeout_s:.0f} s limit\n")
            return returncode


@contextlib.contextmanager
def _patched_launcher(launcher: Callable[..., int]) -> Iterator[None]:
    from kfp.local import subprocess_task_handler

    original = subprocess_task_handler.run_local_subprocess
    subprocess_task_handler.run_local_subprocess = launcher
    try:
        yield
    finally:
        subprocess_task_handler.run_local_subprocess = original


# -- DockerRunner ---------------------------------------------------------------------------------------------
# The images' user (docker/role.Dockerfile: useradd --uid 1000 aed).
IMAGE_UID = 1000


@dataclass(frozen=True)
class DockerMount:
    """A host path a task needs, bound at the same path inside its container."""

    path: Path
    writable: bool = False


def _stop_container(container: Any) -> None:
    with contextlib.suppress(Exception):
        container.kill()


def _unreadable_by_image_user(folder: Path) -> Path | None:
    """The first file or folder under `folder` that the images' user (not its owner) cannot read, or None."""
    for path in (folder, *sorted(folder.rglob("*"))) if folder.is_dir() else (folder,):
        info = path.lstat()
        if info.st_uid == IMAGE_UID or stat.S_ISLNK(info.st_mode):
            continue
        needed = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(info.st_mode) else 0)
        if info.st_mode & needed != needed:
            return path
    return None


def _give_to_image_user(folder: Path) -> None:
    """chown the folder and everything in it to the images' user, skipping what it owns already."""
    for path in (folder, *folder.rglob("*")):
        with contextlib.suppress(OSError):
            if path.lstat().st_uid != IMAGE_UID:
                os.chown(path, IMAGE_UID, IMAGE_UID, follow_symlinks=False)


class _DockerLauncher(_Launcher):
    """Replacement for kfp.local.docker_task_handler.run_docker_container (same signature): the task's container
    with the run's mounts and user, its output in task.log, the time limit, and no start after a failure."""

    def __init__(self, run: LocalRun, task_timeout_s: float, mounts: list[DockerMount], env: dict[str, str]):
        super().__init__(run, task_timeout_s)
        self.mounts = mounts
        self.env = env
        if os.getuid() == 0:
            # the writable folders may hold files of earlier runs as root (a registry, a cache): give them all
            for mount in mounts:
                if mount.writable:
                    _give_to_image_user(mount.path)

    def __call__(
        self, client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
    ) -> int:
        return self._track(
            command, lambda log: self._container(client, image, command, volumes, run_args, log)
        )

    def _user(self, task_dir: Path) -> str | None:
        """None (the image's own non-root user) when we are root: the user gets the task's folders; otherwise
        this process's uid:gid, which owns them already."""
        if os.getuid() != 0:
            return f"{os.getuid()}:{os.getgid()}"
        for path in (task_dir.parent, task_dir):
            with contextlib.suppress(OSError):
                os.chown(path, IMAGE_UID, IMAGE_UID)
        return None

    def _container(
        self,
        client: Any,
        image: str,
        command: list[str],
        volumes: dict[str, Any],
        run_args: dict,
        log_path: Path,
    ) -> int:
        binds = dict(volumes)
        for mount in self.mounts:
            binds[str(mount.path)] = {"bind": str(mount.path), "mode": "rw" if mount.writable else "ro"}
        user = self._user(log_path.parent)
        environment = {**self.env, **(run_args.pop("environment", None) or {}), "PYTHONUNBUFFERED": "1"}
        if user:
            environment["HOME"] = "/tmp"  # a mapped uid has no home in the image
        container = client.containers.run(
            image=image,
            command=command,
            detach=True,
            volumes=binds,
            environment=environment,
            network_mode="host",  # the host's S3 endpoint, labgrid coordinator or proxy, as for a subprocess task
            **({"user": user} if user else {}),
            **run_args,
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            _stop_container(container)

        timer = threading.Timer(self.task_timeout_s, kill)
        timer.start()
        try:
            with open(log_path, "w") as log:
                for chunk in container.logs(stream=True, follow=True):
                    text = chunk.decode(errors="replace")
                    print(text, end="")
                    log.write(text)
                returncode = int(container.wait()["StatusCode"])
                if killed.is_set():
                    log.write(f"\n[aed] task killed after the {self.task_timeout_s:.0f} s limit\n")
            return returncode
        except BaseException:
            _stop_container(container)  # Ctrl-C or a lost engine: the container must not outlive the run
            raise
        finally:
            timer.cancel()
            with contextlib.suppress(Exception):
                container.remove(force=True)


def docker_mounts(params: dict[str, Any], writable: tuple[str, ...] = ()) -> list[DockerMount]:
    """The host paths of params' PATH_FIELDS (absolute by now): existing inputs read-only; the `writable` fields
    (folders a task writes: registry, caches, board workdirs) mounted writable (run_local creates them). A file template
    such as gate.baseline's `.../hil-{model_name}-{profile}.json` mounts its folder."""
    from components.taskio import PATH_FIELDS, field_at, is_local_relative

    mounts: dict[Path, DockerMount] = {}
    for dotted in PATH_FIELDS:
        name, *keys = dotted.split(".")
        value = field_at(params.get(name) or {}, keys) if isinstance(params.get(name), dict) else None
        if not value or "://" in str(value) or is_local_relative(value):
            continue
        path = Path(str(value)).expanduser()
        if "{" in path.name:
            path = path.parent
        if dotted not in writable and not path.exists():
            continue  # the task reports a missing input itself, as it would outside a container
        mounts[path] = DockerMount(path, writable=dotted in writable)
    return list(mounts.values())


def check_docker_images(images: list[str]) -> Any:
    """A docker client when the engine answers and every image is here (never pulled); LocalRunError otherwise."""
    try:
        import docker

        client = docker.from_env()
        client.ping()
    except Exception as error:  # docker.errors.DockerException and connection errors alike
        raise LocalRunError(
            f"--runner docker: no container engine answers ({type(error).__name__}): start Docker "
            "(DOCKER_HOST names its socket), or use --runner subprocess"
        ) from None
    missing = [image for image in sorted(set(images)) if not _has_image(client, image)]
    if missing:
        client.close()
        what = "image" if len(missing) == 1 else "images"
        raise LocalRunError(
            f"--runner docker: {what} {', '.join(missing)} not here (never pulled): run `make images`"
        )
    return client


def _has_image(client: Any, image: str) -> bool:
    import docker

    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return False
    return True


@contextlib.contextmanager
def _patched_docker_launcher(launcher: Callable[..., int]) -> Iterator[None]:
    from kfp.local import docker_task_handler

    original = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = launcher
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = original


@dataclass
class DockerSettings:
    """What run_local needs for DockerRunner: the images the tasks name, the host paths to mount and the
    environment of every task (e.g. AED_MODELS_MIRROR, a mounted path)."""

    images: list[str]
    mounts: list[DockerMount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in text[-lines:])


def _failure_message(run: LocalRun, kfp_message: str) -> str:
    if not run.failed:
        return f"local pipeline run failed: {kfp_message}"
    first = run.failed[0]
    skipped = [t.name for t in run.tasks if t.skipped]
    parts = [
        f"task '{first.name}' failed (exit code {first.returncode}); log: {first.log}",
        f"  last lines of the log:\n{_tail(first.log)}",
    ]
    if skipped:
        parts.append(f"  not started after the failure: {', '.join(sorted(set(skipped)))}")
    return "\n".join(parts)


def run_local(
    pipeline_func: Any,
    arguments: dict[str, Any],
    pipeline_root: Path,
    task_timeout_s: float = 3600.0,
    cache: bool = False,
    drop_environment: tuple[str, ...] = (),
    docker: DockerSettings | None = None,
) -> LocalRun:
    """Run `pipeline_func(**arguments)` with kfp.local; raise LocalRunError naming the failed task and its log.

    With `cache`, tasks whose caching is enabled reuse the outputs of an earlier run under the same root when
    their inputs are unchanged (kfp.local's file cache in <root>/.cache); hil, gate and promote always run.
    The environment variables in `drop_environment` are removed from the tasks' environment. With `docker`, every
    task runs in its image with kfp.local.DockerRunner (the engine and the images are checked first).
    """
    from kfp import local

    if docker is not None:
        check_docker_images(docker.images).close()  # before anything is written
        for mount in docker.mounts:
            if mount.writable:  # docker would create a missing one as root
                mount.path.mkdir(parents=True, exist_ok=True)
            elif os.getuid() == 0 and (unreadable := _unreadable_by_image_user(mount.path)):
                raise LocalRunError(
                    f"--runner docker: {unreadable} is not readable by the images' user (uid {IMAGE_UID}): "
                    "make it readable by all (chmod o+r, o+x for a folder)"
                )
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # SubprocessRunner(use_venv=False) launches `python3` from PATH: make it this environment's interpreter.
    bin_dir = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    local.init(
        runner=local.DockerRunner() if docker else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=True,
        enable_caching=cache,
        cache_root=str(pipeline_root / ".cache") if cache else None,
    )
    run = LocalRun(run_dir=None)
    start = time.monotonic()
    patched = (
        _patched_docker_launcher(_DockerLauncher(run, task_timeout_s, docker.mounts, docker.env))
        if docker
        else _patched_launcher(_Launcher(run, task_timeout_s, drop_environment))
    )
    with patched, warnings.catch_warnings():
        # Our images are not named "python*"; locally the image is ignored anyway.
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        # Resources and display names matter on a cluster only; kfp.local warns once per task.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            pipeline_func(**arguments)
        except RuntimeError as error:
            run.seconds = time.monotonic() - start
            run.run_dir = _run_dir(run, pipeline_root)
            raise LocalRunError(_failure_message(run, _plain(str(error))), run) from None
    run.seconds = time.monotonic() - start
    run.run_dir = _run_dir(run, pipeline_root)
    return run


def _run_dir(run: LocalRun, pipeline_root: Path) -> Path | None:
    """<pipeline_root>/<pipeline>-<timestamp>/: the first path component below the root of any task dir."""
    for task in run.tasks:
        with contextlib.suppress(ValueError):
            return pipeline_root / task.task_dir.relative_to(pipeline_root).parts[0]
    return None


def _plain(text: str) -> str:
    """Strip kfp's ANSI colour codes from a message."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
