"""Submit the compiled pipeline to a Kubeflow Pipelines server, once or on a cron schedule, via kfp.Client.

The pipeline is uploaded once per content: the version name carries the YAML's hash, so resubmitting an
unchanged pipeline reuses the existing version instead of piling up identical ones.

A secured, multi-user Kubeflow sits behind an auth proxy and TLS: `Auth` carries a bearer token and/or a login
cookie read from files (or the pod's service-account token, as kfp reads it) and the CA bundle to trust. The
secrets are registered with aed.redact, so no message, log or traceback of this process can quote them, and
they never enter params, the compiled YAML or a run's arguments.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import ssl
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aed.redact import register_secret

HEALTHZ = "/apis/v2beta1/healthz"
CRON_FIELDS = 5  # what users write; KFP's scheduler wants 6 (seconds first)

# Where kfp finds the service-account token inside a pod (kfp.client.KF_PIPELINES_SA_TOKEN_ENV and
# KF_PIPELINES_SA_TOKEN_PATH; a test keeps them equal) and where Kubernetes mounts the pod's namespace.
SA_TOKEN_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
SA_TOKEN_PATH = Path("/var/run/secrets/kubeflow/pipelines/token")
POD_NAMESPACE_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

MAX_SECRET_BYTES = 64 * 1024  # a token or cookie file is small; anything bigger is the wrong file
MAX_CA_BYTES = 16 * 1024 * 1024  # a system bundle (/etc/ssl/certs/ca-certificates.crt) is about 200 KiB
_TOKEN = re.compile(r"[\x21-\x7e]+")  # one printable word: JWTs and Kubernetes tokens
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 6265 token
_COOKIE_VALUE = re.compile(r'"?[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*"?')  # RFC 6265 cookie-octets
_NETSCAPE_FIELDS = 7  # cookies.txt (curl -c, browser exports): domain flag path secure expiry name value
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")  # a Kubernetes namespace (DNS-1123 label)


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
    for part in fields:
        if not set(part) <= allowed:
            raise SubmitError(f"--cron {expression!r}: invalid field {part!r}")
    return "0 " + " ".join(fields)


@dataclass(frozen=True)
class Auth:
    """Credentials for a secured KFP API and the CA bundle to trust. The secret fields stay out of repr()."""

    token: str | None = field(default=None, repr=False)
    cookie: str | None = field(default=None, repr=False)  # a Cookie header value: name=value; name=value
    ca_cert: Path | None = None
    token_source: str = ""  # where the token came from, for messages: "--token-file PATH"
    cookie_source: str = ""
    cookie_names: tuple[str, ...] = ()

    @property
    def has_credentials(self) -> bool:
        return bool(self.token or self.cookie)

    def headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if self.cookie:
            headers["Cookie"] = self.cookie
        return headers

    def describe(self) -> str:
        """What is sent, naming files and cookie names only."""
        parts = [f"bearer token from {self.token_source}"] if self.token else []
        if self.cookie:
            parts.append(f"cookie {', '.join(self.cookie_names)} from {self.cookie_source}")
        return "; ".join(parts) or "none"

    def ssl_context(self) -> ssl.SSLContext:
        """The trust kfp's urllib3 pool uses too: the CA bundle given, else certifi's Mozilla roots."""
        import certifi

        return ssl.create_default_context(cafile=str(self.ca_cert) if self.ca_cert else certifi.where())


def check_namespace(namespace: str | None, label: str) -> str | None:
    if namespace is not None and not _NAMESPACE.fullmatch(namespace):
        raise SubmitError(
            f"{label} {namespace!r}: not a Kubernetes namespace (lowercase letters, digits and '-', "
            "at most 63, starting and ending with a letter or digit)"
        )
    return namespace


def _read_small_text(path: Path, label: str, limit: int = MAX_SECRET_BYTES) -> str:
    """The stripped text of a small file, or one line naming it (never quoting its content)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as error:
        raise SubmitError(
            f"{label} {path}: cannot read it ({error.strerror or type(error).__name__})"
        ) from None
    if len(data) > limit:
        raise SubmitError(f"{label} {path}: larger than {limit // 1024} KiB; is it the right file?")
    try:
        text = data.decode("utf-8-sig").strip()  # -sig: a byte-order mark (Windows editors) is not content
    except UnicodeDecodeError:
        raise SubmitError(f"{label} {path}: not a text file") from None
    if not text:
        raise SubmitError(f"{label} {path}: the file is empty")
    return text


def read_token(path: Path, label: str) -> str:
    """A bearer token: one word, an optional 'Bearer ' in front (as copied from a header) dropped."""
    text = _read_small_text(path, label)
    token = text[len("bearer ") :].strip() if text.lower().startswith("bearer ") else text
    register_secret(text)
    register_secret(token)
    if not _TOKEN.fullmatch(token):
        raise SubmitError(
            f"{label} {path}: expected one token, without spaces, line breaks or control characters"
        )
    return token


def _cookie_pairs(text: str) -> list[tuple[str, str]]:
    """(name, value) pairs of `name=value; ...` lines (an optional 'Cookie:' in front) or of cookies.txt
    lines."""
    pairs = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) == _NETSCAPE_FIELDS:  # cookies.txt; '#HttpOnly_' starts a cookie line there
            pairs.append((fields[5].strip(), fields[6].strip()))
        elif line.strip() and not line.startswith("#"):
            line = re.sub(r"(?i)^\s*cookie:", "", line)
            for item in filter(None, (part.strip() for part in line.split(";"))):
                name, sep, value = item.partition("=")
                pairs.append((name.strip() if sep else "", value.strip()))
    return pairs


def read_cookie(path: Path, label: str) -> tuple[str, tuple[str, ...]]:
    """(Cookie header value, its cookie names) from a file of `name=value` pairs or a cookies.txt file."""
    text = _read_small_text(path, label)
    register_secret(text)
    pairs = _cookie_pairs(text)
    for _, value in pairs:
        register_secret(value)
    valid = all(
        _COOKIE_NAME.fullmatch(name) and value and _COOKIE_VALUE.fullmatch(value) for name, value in pairs
    )
    if not pairs or not valid:
        raise SubmitError(
            f"{label} {path}: expected cookies as name=value pairs separated by ';' "
            "(e.g. authservice_session=...), or a cookies.txt file"
        )
    cookie = "; ".join(f"{name}={value}" for name, value in pairs)
    register_secret(cookie)
    return cookie, tuple(dict.fromkeys(name for name, _ in pairs))


def check_ca_cert(path: Path, label: str) -> Path:
    """A readable PEM bundle holding at least one certificate (what ssl and urllib3 load as their CA file)."""
    text = _read_small_text(path, label, MAX_CA_BYTES)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError):
        certificates = 0
    else:
        certificates = context.cert_store_stats()["x509"]
    if not certificates:
        raise SubmitError(
            f"{label} {path}: not a PEM certificate bundle (no -----BEGIN CERTIFICATE----- block)"
        )
    return path


def service_account_token(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(token, where from) inside a pod, as kfp finds it: the file $KF_PIPELINES_SA_TOKEN_PATH names (which
    must then be readable), else the projected token at its standard path when it exists."""
    named = environ.get(SA_TOKEN_ENV, "").strip()
    if named:
        return read_token(Path(named), SA_TOKEN_ENV), f"{SA_TOKEN_ENV} {named}"
    if SA_TOKEN_PATH.exists():
        return read_token(SA_TOKEN_PATH, "service-account token"), f"service-account token {SA_TOKEN_PATH}"
    return None


def load_auth(
    token_file: Path | None = None,
    cookie_file: Path | None = None,
    ca_cert: Path | None = None,
    *,
    ca_label: str = "--ca-cert",
    environ: Mapping[str, str] | None = None,
) -> Auth:
    """The credentials to send: the token and/or cookie files given, else the pod's service-account token."""
    environ = os.environ if environ is None else environ
    token, token_source = None, ""
    if token_file is not None:
        token, token_source = read_token(token_file, "--token-file"), f"--token-file {token_file}"
    elif cookie_file is None and (found := service_account_token(environ)) is not None:
        token, token_source = found
    cookie, names = read_cookie(cookie_file, "--cookie-file") if cookie_file is not None else (None, ())
    return Auth(
        token=token,
        cookie=cookie,
        ca_cert=check_ca_cert(ca_cert, ca_label) if ca_cert is not None else None,
        token_source=token_source,
        cookie_source=f"--cookie-file {cookie_file}" if cookie_file is not None else "",
        cookie_names=names,
    )


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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect instead of following it: on healthz it is an auth proxy's login page or a wrong
    URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def check_host(host: str, timeout_s: float, auth: Auth | None = None) -> dict[str, Any]:
    """The healthz answer, probed with a timeout and the credentials and trust kfp.Client will use; kfp.Client
    itself retries 5 x 5 s and logs tracebacks."""
    auth = auth or Auth()
    if not host.startswith(("http://", "https://")):
        raise SubmitError(f"--host {host!r}: expected an http:// or https:// URL")
    url = host.rstrip("/") + HEALTHZ
    # no proxy from the environment: kfp's urllib3 pool connects directly, and the probe must see what it sees
    handlers = [
        urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=auth.ssl_context()),
        _NoRedirect(),
    ]
    request = urllib.request.Request(url, headers=auth.headers())
    try:
        with urllib.request.build_opener(*handlers).open(request, timeout=timeout_s) as response:
            body = response.read(1 << 16)
    except urllib.error.HTTPError as error:
        # The host is up but is not a usable KFP API (wrong path, UI address, auth proxy): kfp.Client would
        # retry healthz 5 x 5 s and log a traceback each time, so stop here with the status.
        raise SubmitError(
            f"KFP host {host} answered HTTP {error.code} on {HEALTHZ}{_refusal_hint(error, auth)}"
        ) from None
    except http.client.HTTPException as error:
        # something listens there but does not speak HTTP (a wrong port: SSH, a database, a serial bridge)
        raise SubmitError(
            f"KFP host {host} did not answer in HTTP ({type(error).__name__}); is this the KFP API port?"
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLError):
            raise SubmitError(_tls_message(host, reason, auth)) from None
        raise SubmitError(
            f"cannot reach KFP host {host} ({reason}); is the URL right and the port forwarded?"
        ) from None
    try:
        healthz = json.loads(body)
    except ValueError:
        healthz = None
    if not isinstance(healthz, dict):
        raise SubmitError(
            f"KFP host {host} answered {HEALTHZ} with something else than the KFP API's JSON "
            "(a login page? is this the API URL?)"
        )
    return healthz


def _refusal_hint(error: urllib.error.HTTPError, auth: Auth) -> str:
    if error.code in (401, 403) and auth.has_credentials:
        return f" (the credentials were refused: {auth.describe()}; expired?)"
    if error.code in (401, 403):
        return " (authentication required: pass --token-file or --cookie-file)"
    if 300 <= error.code < 400:
        target = urlsplit(error.headers.get("Location") or "")
        where = f" to {target.scheme}://{target.netloc}{target.path}" if target.netloc else ""
        login = "" if auth.has_credentials else "; pass --token-file or --cookie-file"
        return f" (a redirect{where}: a login page or another URL{login})"
    return ""


def _tls_message(host: str, error: ssl.SSLError, auth: Auth) -> str:
    """One line for a failed TLS handshake, saying what to do about the common causes."""
    trust = f"--ca-cert {auth.ca_cert}" if auth.ca_cert else "the default CA roots (certifi)"
    if isinstance(error, ssl.SSLCertVerificationError):
        why = error.verify_message or error.reason or "certificate verify failed"
        if "mismatch" in str(why).lower():  # "Hostname mismatch" or "IP address mismatch"
            return (
                f"KFP host {host}: its TLS certificate is for another name ({why}); "
                "use the name it was issued for"
            )
        return (
            f"KFP host {host}: its TLS certificate is not trusted ({why}) by {trust}; pass the CA bundle that "
            "signed it with --ca-cert PATH (or pipeline.ca_cert)"
        )
    why = error.reason or type(error).__name__
    hint = "; does the host serve https? (try http://)" if "WRONG_VERSION" in str(why).upper() else ""
    return f"KFP host {host}: TLS handshake failed ({why}){hint}"


def namespace_for(host: str, namespace: str | None, healthz: dict[str, Any]) -> str | None:
    """The namespace to use: the one given; on a multi-user host without one, the pod's (as kfp does)."""
    if namespace or not healthz.get("multi_user"):
        return namespace
    try:
        pod_namespace = POD_NAMESPACE_PATH.read_text().strip()
    except OSError:
        pod_namespace = ""
    if pod_namespace:
        return pod_namespace
    raise SubmitError(
        f"KFP host {host} is multi-user: pass --namespace NS (your profile namespace) "
        "or set pipeline.namespace"
    )


def _client(host: str, namespace: str | None, auth: Auth, timeout_s: float) -> Any:
    import kfp
    import urllib3

    # kfp.Client warns about server versions on every construction and logs tracebacks while retrying healthz.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(
            host=host,
            namespace=namespace or "kubeflow",
            existing_token=auth.token,
            cookies=auth.cookie,
            ssl_ca_cert=str(auth.ca_cert) if auth.ca_cert else None,
        )
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


def _find_pipeline(client: Any, pipeline_name: str, namespace: str | None) -> str | None:
    """The pipeline's id among the namespace's pipelines (the shared ones without a namespace)."""
    wanted = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": pipeline_name}]}
    )
    found = client.list_pipelines(filter=wanted, namespace=namespace, page_size=10).pipelines or []
    ids = [pipeline.pipeline_id for pipeline in found if pipeline.display_name == pipeline_name]
    if len(ids) > 1:
        raise SubmitError(f"{len(ids)} pipelines are named {pipeline_name!r}; delete all but one")
    return ids[0] if ids else None


def ensure_version(
    client: Any, package: Path, pipeline_name: str, namespace: str | None = None
) -> tuple[str, str, str, bool]:
    """(pipeline_id, version_id, version_name, uploaded): upload the pipeline or a new version only if needed.
    With a namespace, the pipeline is that profile's own (private), which its users may always upload."""
    name = version_name(package, pipeline_name)
    pipeline_id = _find_pipeline(client, pipeline_name, namespace)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name, namespace=namespace)
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
    auth: Auth | None = None,
    timeout_s: float = 10.0,
) -> Submitted:
    """Create a run (or, with `cron`, a recurring run) of the compiled `package` on the KFP server at `host`,
    in `namespace` (the profile namespace of a multi-user Kubeflow), sending `auth`'s credentials."""
    auth = auth or Auth()
    schedule = kfp_cron(cron) if cron else None
    namespace = namespace_for(host, namespace, check_host(host, timeout_s, auth))
    try:
        return _submit(
            _client(host, namespace, auth, timeout_s),
            package,
            pipeline_name,
            experiment,
            arguments,
            run_name,
            schedule,
            pipeline_root,
            namespace,
        )
    except SubmitError:
        raise
    except Exception as error:
        raise SubmitError(f"KFP host {host}: {_short(error)}{_denied_hint(error, namespace, auth)}") from None


def _denied_hint(error: BaseException, namespace: str | None, auth: Auth) -> str:
    status = getattr(error, "status", None)
    if status == 401:
        return f" (the credentials were refused: {auth.describe()})"
    if status == 403 and namespace:
        return (
            f" (may {auth.describe()} use namespace {namespace!r}? "
            "check --namespace and the profile's contributors)"
        )
    if status == 403:
        return " (a multi-user host needs --namespace NS, your profile namespace)"
    return ""


def _submit(
    client: Any,
    package: Path,
    pipeline_name: str,
    experiment: str,
    arguments: dict[str, Any],
    run_name: str,
    schedule: str | None,
    pipeline_root: str | None,
    namespace: str | None,
) -> Submitted:
    pipeline_id, version_id, name, uploaded = ensure_version(client, package, pipeline_name, namespace)
    experiment_id = client.create_experiment(name=experiment, namespace=namespace).experiment_id
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
