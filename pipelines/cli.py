"""The `aed` console script: every step's subcommand (components.cli) plus `aed pipeline compile | run-local |
submit | schedule`, the Kubeflow pipeline from the command line.

`aed pipeline` is not a pipeline step: it builds the KFP DAG over the steps' task bodies (imported lazily so that
the other subcommands never pay for kfp) and runs it here (kfp.local) or on a Kubeflow Pipelines server. Every
subcommand checks all of params.yaml first, so a bad value fails before any task starts.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from aed.params import ParamsError, bounded, from_dict, read_params
from components.common import add_params_option
from pipelines.params_cli import register as params_cli_register

if TYPE_CHECKING:
    from pipelines.remote import Auth

SECTION = "pipeline"
log = logging.getLogger(__name__)


@dataclass
class PipelineParams:
    experiment: str = "aed-esc10"
    local_root: str = "work/pipeline_root"  # run-local: artifacts and task logs
    remote_root: str | None = None  # submit/schedule: e.g. s3://bucket/kfp (null: the cluster's default)
    s3_endpoint_url: str | None = None  # S3-compatible endpoint for checking an s3:// remote_root
    host: str | None = None  # KFP API URL, e.g. http://localhost:8080 (or --host)
    namespace: str | None = None  # profile namespace on a multi-user Kubeflow (or --namespace)
    ca_cert: str | None = (
        None  # PEM CA bundle of the host's TLS certificate (or --ca-cert); relative: params' folder
    )
    schedule: str = "0 3 * * *"  # cron, 5 fields, for `aed pipeline schedule`
    image_registry: str = "ghcr.io/aed-mlops"
    image_tag: str = ""  # empty: the project's version
    task_timeout_s: float = bounded(7200.0, 10.0, 172800.0)
    request_timeout_s: float = bounded(10.0, 1.0, 300.0)


# -- params ---------------------------------------------------------------------------------------------------
def apply_overrides(params: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`section.key=value` (value parsed as YAML) on a copy of params."""
    result = copy.deepcopy(params)
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        keys = dotted.split(".")
        if not sep or len(keys) < 2 or not all(keys):
            raise ParamsError(f"--set {item!r}: expected section.key=value")
        target = result
        for key in keys[:-1]:
            node = target.setdefault(key, {})
            if not isinstance(node, dict):
                raise ParamsError(f"--set {item!r}: {key} is not a mapping")
            target = node
        try:
            target[keys[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as error:
            raise ParamsError(
                f"--set {item!r}: the value is not valid YAML ({error.__class__.__name__})"
            ) from None
    return result


# The folder of params.yaml's relative paths inside the images (docker/base.Dockerfile's WORKDIR, which holds the
# approved gate baselines): what a compiled or submitted pipeline resolves them against.
IMAGE_PROJECT_DIR = Path("/opt/aed")

# Environment variables that replace a params value in `aed <step>`. run-local writes them into the run's params
# (and keeps them from the tasks' environment), so that the params of a run say what its tasks use.
ENVIRONMENT_PARAMS = ("AED_DATA_MIRROR", "AED_S3_ENDPOINT_URL")


def fold_environment(params: dict[str, Any]) -> dict[str, Any]:
    """params with AED_DATA_MIRROR (the dataset source, no pinned hash) and AED_S3_ENDPOINT_URL (the registry's
    endpoint) applied, as `aed ingest` and `aed promote` apply them."""
    from components.common import env_path

    result = copy.deepcopy(params)
    mirror = env_path("AED_DATA_MIRROR")
    if mirror is not None:
        result["ingest"] = {**(result.get("ingest") or {}), "source": str(mirror.resolve()), "sha256": None}
    endpoint = os.environ.get("AED_S3_ENDPOINT_URL", "").strip()
    if endpoint:
        result["promote"] = {**(result.get("promote") or {}), "endpoint_url": endpoint}
    return result


def known_keys(params: dict[str, Any], steps: Any) -> dict[str, set[str] | None]:
    """{section: its keys (None: any)}: the sections the steps read (keys from their dataclasses), the pipeline's
    own, and any other section the params file already has."""
    import dataclasses

    from components.taskio import params_sections
    from pipelines.glue import step_modules

    known: dict[str, set[str] | None] = {name: None for name in params}
    known[SECTION] = {f.name for f in dataclasses.fields(PipelineParams)}
    for module in step_modules(steps)[0].values():
        for arg, (name, cls) in params_sections(module).items():
            # as taskio.step_args reads them: the step's own section, another only when params has it
            if arg == "params" or name in params:
                known[name] = {f.name for f in dataclasses.fields(cls)}
    return known


def check_override_targets(overrides: list[str], known: dict[str, set[str] | None]) -> None:
    """Refuse `--set` on a section or key nothing reads (a typo would otherwise be silently ignored)."""
    for item in overrides:
        target, sep, _ = item.partition("=")
        if not sep or "." not in target:
            continue  # not section.key=value: apply_overrides says so
        keys = target.split(".")
        section = keys[0]
        if section not in known:
            raise ParamsError(
                f"--set {item!r}: unknown section {section!r}; known: {', '.join(sorted(known))}"
            )
        fields = known[section]
        if len(keys) > 1 and fields is not None and keys[1] not in fields:
            raise ParamsError(
                f"--set {item!r}: unknown key {section}.{keys[1]}; known: {', '.join(sorted(fields))}"
            )


def load_checked(
    path: Path, overrides: list[str], root: Path | None = None, environment: bool = False
) -> tuple[dict[str, Any], PipelineParams, list[str]]:
    """(params with overrides, pipeline settings, models): every step's sections checked, before any task.

    Relative paths of params (taskio.PATH_FIELDS) are resolved against `root` (default: the images' project
    folder), so that no task depends on its working directory; `environment` folds ENVIRONMENT_PARAMS in.
    The models, one branch each, are `models.names` (the same list `aed evaluate` defaults to)."""
    from aed.models.config import ModelsParams
    from components.taskio import section
    from pipelines.aed_pipeline import STEPS
    from pipelines.glue import resolve_paths, section_classes, validate_params

    raw = read_params(path)
    check_override_targets(overrides, known_keys(raw, STEPS))
    params = apply_overrides(raw, overrides)
    if environment:
        params = fold_environment(params)
    params = resolve_paths(params, root or IMAGE_PROJECT_DIR, section_classes(STEPS))
    settings = from_dict(PipelineParams, params.get(SECTION), SECTION)
    models = section(params, "models", ModelsParams)
    models.validate()
    if not models.names:
        raise ParamsError("models.names: empty list; name at least one model")
    if len(set(models.names)) != len(models.names):
        raise ParamsError(f"models.names: duplicate model in {models.names}")
    missing = validate_params(params, STEPS, models.names)
    if missing:
        log.warning("steps not built yet (their tasks would fail): %s", ", ".join(missing))
    return params, settings, list(models.names)


def _images(settings: PipelineParams, args: argparse.Namespace) -> Any:
    from pipelines.images import Images

    return Images(registry=args.registry or settings.image_registry, tag=args.tag or settings.image_tag)


# -- subcommands ----------------------------------------------------------------------------------------------
def _compile(args: argparse.Namespace) -> int:
    from pipelines.aed_pipeline import compile_pipeline

    params, settings, models = load_checked(args.params, args.set)
    out = compile_pipeline(args.out, params, models, _images(settings, args))
    print(f"compiled {out}")
    return 0


def _run_local(args: argparse.Namespace) -> int:
    from pipelines.aed_pipeline import build_pipeline
    from pipelines.local_run import run_local

    # Relative paths in params mean the params file's folder here (the clone, as for `dvc repro`).
    params, settings, models = load_checked(
        args.params, args.set, root=Path(args.params).resolve().parent, environment=True
    )
    root = Path(args.root or settings.local_root)
    images = _images(settings, args)
    pipeline = build_pipeline(params, models, images, until=args.until, retries=False)
    run = run_local(
        pipeline,
        {},
        root,
        task_timeout_s=settings.task_timeout_s,
        cache=args.cache,
        drop_environment=ENVIRONMENT_PARAMS,
        docker=_docker_settings(params, images, args.until) if args.runner == "docker" else None,
    )
    summary = summarize(run, models)
    if run.run_dir is not None:
        (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(format_summary(summary))
    return 0


# The folders a task writes outside the pipeline root: mounted writable into its container (--runner docker).
WRITABLE_PATHS = (
    "ingest.cache_dir",
    "models.weights_cache_dir",
    "hil.lock_dir",
    "hil.workdir",
    "promote.registry",
)


def _docker_settings(params: dict[str, Any], images: Any, until: str | None) -> Any:
    """--runner docker: the role images of the steps that run, the host paths of params to mount, and the YAMNet
    weights mirror (AED_MODELS_MIRROR inside the containers, mounted read-only)."""
    from aed.models.mirror import ENV, WeightsError, models_mirror
    from pipelines.aed_pipeline import STEPS, step_image
    from pipelines.local_run import DockerMount, DockerSettings, docker_mounts

    steps = STEPS[: STEPS.index(until) + 1] if until in STEPS else STEPS
    settings = DockerSettings(
        images=[step_image(images, step) for step in steps], mounts=docker_mounts(params, WRITABLE_PATHS)
    )
    try:
        mirror = models_mirror().resolve()
    except WeightsError:
        return settings  # no mirror here: a train task says so itself
    if mirror.is_dir():
        settings.mounts.append(DockerMount(mirror))
        settings.env[ENV] = str(mirror)
    return settings


def summarize(run: Any, models: list[str]) -> dict[str, Any]:
    from pipelines.aed_pipeline import task_suffix

    verdicts: dict[str, Any] = {}
    for model in models:
        gate_dir = run.run_dir / f"gate-{task_suffix(model)}" if run.run_dir else None
        promoted = run.run_dir / f"promote-{task_suffix(model)}" / "promotion" if run.run_dir else None
        verdict, verdict_name = None, None
        if gate_dir and (gate_dir / "executor_output.json").exists():
            output = json.loads((gate_dir / "executor_output.json").read_text())
            verdict = output.get("parameterValues", {}).get("Output")
            if (gate_dir / "verdict").is_file():
                verdict_name = json.loads((gate_dir / "verdict").read_text()).get("verdict")
        record = json.loads(promoted.read_text()) if promoted and promoted.exists() else None
        verdicts[model] = {
            "gate_passed": verdict,
            "gate_verdict": verdict_name,
            "gate_table": str(gate_dir / "table") if gate_dir else None,
            "promoted_version": record.get("version") if record else None,
            "registry": record.get("manifest") if record else None,
        }
    return {
        "run_dir": str(run.run_dir),
        "seconds": round(run.seconds, 1),
        "tasks": [{"task": t.name, "seconds": round(t.seconds, 1), "exit": t.returncode} for t in run.tasks],
        "models": verdicts,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"run: {summary['run_dir']} ({summary['seconds']} s)"]
    lines += [f"  {t['task']:<28} {t['seconds']:>7.1f} s" for t in summary["tasks"]]
    for model, verdict in summary["models"].items():
        if verdict["gate_passed"] is None:
            lines.append(f"{model}: no gate (not run, or the model does not run on boards)")
            continue
        state = (verdict["gate_verdict"] or ("pass" if verdict["gate_passed"] else "fail")).upper()
        promoted = f", promoted {verdict['promoted_version']}" if verdict["promoted_version"] else ""
        lines.append(f"{model}: gate {state}{promoted} (table: {verdict['gate_table']})")
    return "\n".join(lines)


def _submit(args: argparse.Namespace, cron: str | None = None) -> int:
    import tempfile

    from pipelines.aed_pipeline import PIPELINE_NAME, compile_pipeline
    from pipelines.remote import check_namespace, check_pipeline_root, kfp_cron, load_auth, submit

    params, settings, models = load_checked(args.params, args.set)
    host = args.host or settings.host
    if not host:
        raise ParamsError(f"no KFP host: pass --host URL or set {SECTION}.host in {args.params}")
    namespace = check_namespace(args.namespace, "--namespace") or check_namespace(
        settings.namespace, f"{SECTION}.namespace"
    )
    ca_cert, ca_label = _ca_cert(args, settings)
    auth = load_auth(args.token_file, args.cookie_file, ca_cert, ca_label=ca_label)
    schedule = kfp_cron(cron) if cron else None  # a bad cron line stops before anything is compiled or sent
    _warn_plain_http(host, auth)
    root = args.pipeline_root or settings.remote_root
    if root and not args.dry_run:
        check_pipeline_root(root, settings.s3_endpoint_url, settings.request_timeout_s)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_name = args.run_name or f"{PIPELINE_NAME}-{stamp}"
    experiment = args.experiment or settings.experiment
    with tempfile.TemporaryDirectory() as scratch:
        package = compile_pipeline(
            Path(scratch) / "aed_pipeline.yaml", params, models, _images(settings, args)
        )
        if args.dry_run:
            from pipelines.remote import version_name

            what = {
                "host": host,
                "namespace": namespace or "(none: single-user, or the pod's on a multi-user host)",
                "experiment": experiment,
                "pipeline": f"{PIPELINE_NAME}, version {version_name(package, PIPELINE_NAME)}",
                "run name": run_name,
                "cron": f"{cron} (sent as {schedule})" if cron else None,
                "pipeline root": root or "(the cluster's default)",
                "credentials": auth.describe(),
                "TLS trust": str(auth.ca_cert) if auth.ca_cert else "default CA roots (certifi)",
            }
            print(f"dry run: nothing sent to {host}")
            print("\n".join(f"  {key + ':':<15}{value}" for key, value in what.items() if value))
            return 0
        result = submit(
            host,
            package,
            PIPELINE_NAME,
            experiment,
            {"params": json.dumps(params, sort_keys=True)},
            run_name=run_name,
            cron=cron,
            pipeline_root=root,
            namespace=namespace,
            auth=auth,
            timeout_s=settings.request_timeout_s,
        )
    what = f"recurring run {result.recurring_run_id} ({cron})" if cron else f"run {result.run_id}"
    reuse = "uploaded" if result.uploaded else "reused"
    print(f"{what} in experiment {result.experiment_id}; pipeline version {result.version_name} ({reuse})")
    return 0


def _ca_cert(args: argparse.Namespace, settings: PipelineParams) -> tuple[Path | None, str]:
    """(the CA bundle, how to name it in an error): --ca-cert, else pipeline.ca_cert (relative to params)."""
    if args.ca_cert is not None:
        return args.ca_cert, "--ca-cert"
    if settings.ca_cert:
        return Path(args.params).resolve().parent / settings.ca_cert, f"{SECTION}.ca_cert"
    return None, "--ca-cert"


def _warn_plain_http(host: str, auth: Auth) -> None:
    from urllib.parse import urlsplit

    loopback = urlsplit(host).hostname in ("localhost", "127.0.0.1", "::1")
    if auth.has_credentials and host.startswith("http://") and not loopback:
        log.warning(
            "sending credentials to %s over plain http: anyone on the way can read them; use https://", host
        )


def _schedule(args: argparse.Namespace) -> int:
    params = read_params(args.params)
    cron = args.cron or (params.get(SECTION) or {}).get("schedule") or PipelineParams().schedule
    return _submit(args, cron=cron)


def _dvc_yaml(args: argparse.Namespace) -> int:
    from pipelines import dvc_yaml  # imports the train and models params (Keras): only for this action

    return dvc_yaml.main(args)


# -- argument parsing -----------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline", help="compile, run locally, submit or schedule the KFP pipeline"
    )
    actions = parser.add_subparsers(dest="pipeline_command", required=True, metavar="ACTION")

    def common(sub: argparse.ArgumentParser, images: bool = True) -> None:
        add_params_option(sub)
        sub.add_argument(
            "--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a params value"
        )
        if images:
            sub.add_argument("--registry", help="image registry (default: pipeline.image_registry)")
            sub.add_argument("--tag", help="image tag (default: pipeline.image_tag or the project version)")

    compile_parser = actions.add_parser("compile", help="write the pipeline IR YAML")
    common(compile_parser)
    compile_parser.add_argument("--out", type=Path, default=Path("pipelines/aed_pipeline.yaml"))
    compile_parser.set_defaults(handler=_compile)

    local = actions.add_parser("run-local", help="run the whole DAG here with kfp.local (no cluster)")
    common(local)
    local.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        default="subprocess",
        help="subprocess: each task in this environment (default); docker: each task in its role's image "
        "(`make images`), with kfp.local.DockerRunner",
    )
    local.add_argument("--root", type=Path, help="pipeline root (default: pipeline.local_root)")
    local.add_argument("--until", metavar="STEP", help="stop after this step (default: the whole DAG)")
    local.add_argument(
        "--cache",
        action="store_true",
        help="reuse unchanged task outputs of earlier runs under the same root",
    )
    local.set_defaults(handler=_run_local)

    dvc = actions.add_parser("dvc-yaml", help="write (or --check) dvc.yaml's model stages from models.names")
    add_params_option(dvc)
    dvc.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"), help="the file to write or check")
    dvc.add_argument("--check", action="store_true", help="write nothing; exit 2 when dvc.yaml is stale")
    dvc.add_argument(
        "--out", type=Path, help="with --check: the model stages as JSON (the DVC stage's output)"
    )
    dvc.set_defaults(handler=_dvc_yaml)

    for name, handler, help_text in (
        ("submit", _submit, "upload (or reuse) the pipeline version and start a run"),
        ("schedule", _schedule, "upload (or reuse) the pipeline version and create a recurring run"),
    ):
        sub = actions.add_parser(name, help=help_text)
        common(sub)
        sub.add_argument("--host", help="KFP API URL, e.g. http://localhost:8080 (default: pipeline.host)")
        sub.add_argument("--experiment", help="experiment name (default: pipeline.experiment)")
        sub.add_argument("--run-name", help="run / recurring run name (default: aed-pipeline-<UTC time>)")
        sub.add_argument(
            "--pipeline-root", help="artifact root, e.g. s3://bucket/kfp (default: pipeline.remote_root)"
        )
        if name == "schedule":
            sub.add_argument(
                "--cron", help='cron line, 5 fields, e.g. "0 3 * * *" (default: pipeline.schedule)'
            )
        _auth_options(sub)
        sub.set_defaults(handler=handler)


def _auth_options(sub: argparse.ArgumentParser) -> None:
    """A secured, multi-user Kubeflow: credentials from files (never on the command line, where `ps` shows
    them), the TLS trust and the profile namespace (docs/pipeline.md)."""
    sub.add_argument(
        "--token-file",
        type=Path,
        metavar="PATH",
        help="file holding a bearer token, e.g. from `kubectl create token` (default: in a pod, the "
        "service-account token at $KF_PIPELINES_SA_TOKEN_PATH or /var/run/secrets/kubeflow/pipelines/token)",
    )
    sub.add_argument(
        "--cookie-file",
        type=Path,
        metavar="PATH",
        help="file holding the login session cookie, e.g. authservice_session=... (or a cookies.txt file)",
    )
    sub.add_argument(
        "--ca-cert",
        type=Path,
        metavar="PATH",
        help="PEM CA bundle that signed the host's TLS certificate "
        "(default: pipeline.ca_cert, else the usual public roots)",
    )
    sub.add_argument(
        "--namespace",
        metavar="NS",
        help="profile namespace on a multi-user Kubeflow (default: pipeline.namespace)",
    )
    sub.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be sent (host, namespace, experiment, pipeline version, cron); contact nothing",
    )


def main(argv: list[str] | None = None) -> int:
    """`aed ...`: the steps' subcommands and `aed pipeline`, with the steps' one-line error handling."""
    from aed.detection.detect import DetectParams
    from components.cli import main as steps_main

    # `aed detect` is no pipeline step, but its section is shown with the others
    sections = {SECTION: PipelineParams, "detect": DetectParams}
    params_show = lambda sub: params_cli_register(sub, sections)  # noqa: E731
    return steps_main(argv, extra_commands={"pipeline": register, "params": params_show})


if __name__ == "__main__":
    import sys

    sys.exit(main())
