"""Submit the compiled pipeline to a Kubeflow Pipelines server, once or on a cron schedule, via kfp.Client.

The pipeline is uploaded once per content: the version name carries the YAML's hash, so resubmitting an
unchanged pipeline reuses the existing version instead of piling up identical ones.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HEALTHZ = "/apis/v2beta1/healthz"
CRON_FIELDS = 5  # what users write; KFP's scheduler wants 6 (seconds first)


class SubmitError(RuntimeError):
    """A submission that cannot proceed: unreachable host, server error, bad schedule."""


@dataclass(frozen=True)
class Submitted:
    pipeline_id: str
    version_id: str
    version_name: str
    experiment_id: str
    run_id: str | None = None
    recurring_run_id: str | None = None
    uploaded: bool = False


def kfp_cron(expression: str) -> str:
    """A standard 5-field cron line ("0 3 * * *") as the 6-field form KFP expects ("0 0 3 * * *")."""
    fields = expression.split()
    if len(fields) == CRON_FIELDS + 1:
        return " ".join(fields)
    if len(fields) != CRON_FIELDS:
        raise SubmitError(f"--cron {expression!r}: expected 5 fields 'minute hour day month weekday'")
    allowed = set("0123456789*/,-?LW#") | set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
    for field in fields:
        if not set(field) <= allowed:
            raise SubmitError(f"--cron {expression!r}: invalid field {field!r}")
    return "0 " + " ".join(fields)


def check_pipeline_root(root: str, endpoint_url: str | None, timeout_s: float) -> None:
    """An s3:// pipeline root must name an existing bucket; other schemes are the cluster's business."""
    if not root.startswith("s3://"):
        return
    from aed.registry import RegistryError, S3Settings, check_bucket, parse_s3_uri, s3_client

    settings = S3Settings(endpoint_url=endpoint_url, timeout_s=timeout_s)
    try:
        check_bucket(s3_client(settings), parse_s3_uri(root).bucket, settings)
    except RegistryError as error:
        raise SubmitError(f"pipeline root {root}: {error}") from None


def check_host(host: str, timeout_s: float) -> None:
    """Probe the healthz endpoint with a timeout; kfp.Client itself retries 5 x 5 s and logs tracebacks."""
    if not host.startswith(("http://", "https://")):
        raise SubmitError(f"--host {host!r}: expected an http:// or https:// URL")
    url = host.rstrip("/") + HEALTHZ
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (scheme checked above)
            response.read(1 << 16)
    except urllib.error.HTTPError as error:
        # The host is up but is not a usable KFP API (wrong path, UI address, auth proxy): kfp.Client would
        # retry healthz 5 x 5 s and log a traceback each time, so stop here with the status.
        hint = " (authentication required)" if error.code in (401, 403) else ""
        raise SubmitError(f"KFP host {host} answered HTTP {error.code} on {HEALTHZ}{hint}") from None
    except http.client.HTTPException as error:
        # something listens there but does not speak HTTP (a wrong port: SSH, a database, a serial bridge)
        raise SubmitError(
            f"KFP host {host} did not answer in HTTP ({type(error).__name__}); is this the KFP API port?"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SubmitError(
            f"cannot reach KFP host {host} ({reason}); is the URL right and the port forwarded?"
        ) from None


def _client(host: str, namespace: str | None, timeout_s: float) -> Any:
    import kfp
    import urllib3

    # kfp.Client warns about server versions on every construction and logs tracebacks while retrying healthz.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(host=host, namespace=namespace or "kubeflow")
    # kfp_server_api sets no timeout on its urllib3 pool: a stalled server would hang the CLI forever.
    pool = client._run_api.api_client.rest_client.pool_manager
    pool.connection_pool_kw["timeout"] = urllib3.Timeout(connect=timeout_s, read=max(timeout_s, 60.0))
    pool.connection_pool_kw["retries"] = urllib3.Retry(total=2, connect=2, read=0, redirect=2)
    pool.clear()  # the pool kfp.Client opened for its health check was built without them
    return client


def version_name(package: Path, pipeline_name: str) -> str:
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:12]
    return f"{pipeline_name}-{digest}"


def _find_version(client: Any, pipeline_id: str, name: str) -> str | None:
    wanted = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    response = client.list_pipeline_versions(pipeline_id=pipeline_id, filter=wanted, page_size=10)
    for version in response.pipeline_versions or []:
        if version.display_name == name:
            return version.pipeline_version_id
    return None


def ensure_version(client: Any, package: Path, pipeline_name: str) -> tuple[str, str, str, bool]:
    """(pipeline_id, version_id, version_name, uploaded): upload the pipeline or a new version only if needed."""
    name = version_name(package, pipeline_name)
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name)
        pipeline_id = pipeline.pipeline_id
    version_id = _find_version(client, pipeline_id, name)
    if version_id is not None:
        return pipeline_id, version_id, name, False
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=name, pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id, name, True


def submit(
    host: str,
    package: Path,
    pipeline_name: str,
    experiment: str,
    arguments: dict[str, Any],
    *,
    run_name: str,
    cron: str | None = None,
    pipeline_root: str | None = None,
    namespace: str | None = None,
    timeout_s: float = 10.0,
) -> Submitted:
    """Create a run (or, with `cron`, a recurring run) of the compiled `package` on the KFP server at `host`."""
    schedule = kfp_cron(cron) if cron else None
    check_host(host, timeout_s)
    try:
        return _submit(
            _client(host, namespace, timeout_s),
            package,
            pipeline_name,
            experiment,
            arguments,
            run_name,
            schedule,
            pipeline_root,
        )
    except SubmitError:
        raise
    except Exception as error:
        raise SubmitError(f"KFP host {host}: {_short(error)}") from None


def _submit(
    client: Any,
    package: Path,
    pipeline_name: str,
    experiment: str,
    arguments: dict[str, Any],
    run_name: str,
    schedule: str | None,
    pipeline_root: str | None,
) -> Submitted:
    pipeline_id, version_id, name, uploaded = ensure_version(client, package, pipeline_name)
    experiment_id = client.create_experiment(name=experiment).experiment_id
    common = dict(
        experiment_id=experiment_id,
        job_name=run_name,
        pipeline_id=pipeline_id,
        version_id=version_id,
        params=arguments,
        pipeline_root=pipeline_root,
    )
    if schedule is None:
        run = client.run_pipeline(**common)
        return Submitted(pipeline_id, version_id, name, experiment_id, run_id=run.run_id, uploaded=uploaded)
    recurring = client.create_recurring_run(
        cron_expression=schedule, max_concurrency=1, no_catchup=True, **common
    )
    logging.getLogger(__name__).info("recurring run %s: cron '%s'", recurring.recurring_run_id, schedule)
    return Submitted(
        pipeline_id,
        version_id,
        name,
        experiment_id,
        recurring_run_id=recurring.recurring_run_id,
        uploaded=uploaded,
    )


def _short(error: BaseException) -> str:
    """One line from kfp_server_api / urllib3 errors, which otherwise dump headers and bodies."""
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    body = getattr(error, "body", None)
    if status is not None:
        detail = ""
        if body:
            try:
                detail = json.loads(body).get("message", "") or json.loads(body).get("error", "")
            except (ValueError, AttributeError):
                detail = str(body)[:200]
        return f"HTTP {status} {reason or ''} {detail}".strip()
    return f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
