"""Model registry: a versioned copy of a promoted model and its records, in a local directory or on S3.

Layout under the registry root (the same for both back ends):
    <model>/<version>/<artifact>/...     the promoted files, unchanged
    <model>/<version>/manifest.json      every file with its size and sha256, plus caller metadata
    <model>/latest.json                  {"version": ..., "manifest": ...}: the newest promotion

The version is the content hash of what is promoted, without what only says when, how long or where a run
happened (`content_digests`): promoting the same model with records that differ only in their timestamps yields
the same version, copies nothing and leaves latest.json as it is. The model files are hashed byte for byte, so
"the same model" means the same bytes (a re-export that changes a byte is a new version).

S3 goes through boto3 with a configurable endpoint (MinIO, moto, Ceph) and explicit timeouts; credentials come
from boto3's usual chain (environment, profile, instance role), never from params.yaml.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aed.params import bounded
from aed.records import atomic_write_text, sha256_file

MANIFEST = "manifest.json"
LATEST = "latest.json"


class RegistryError(RuntimeError):
    """A registry location that cannot be used: bad URI, missing bucket, unreachable endpoint."""


class RegistryPathError(RegistryError, ValueError):
    """A model name, artifact name or key that would leave the registry root (`..`, `/x`, separators...)."""


# A model or artifact name is one plain path component: it can never name a parent, a root or a sub-folder.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RegistryPathError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no path separators, no '..')"
        )
    return name


def check_key(key: str) -> str:
    """A '/'-separated key relative to the registry root, with no empty, '.' or '..' part and no backslash."""
    parts = key.split("/") if isinstance(key, str) else [""]
    bad = not key or "\\" in key or "\x00" in key or any(part in ("", ".", "..") for part in parts)
    if bad:
        raise RegistryPathError(f"registry key {key!r} is not a plain relative path inside the registry root")
    return key


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = (
        None  # None: boto3 resolves it (AWS, or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)
    )
    region: str = "us-east-1"
    timeout_s: float = bounded(30.0, 1.0, 600.0)


@dataclass(frozen=True)
class PromoteParams(S3Settings):
    """The `promote` section: the registry (a directory or s3://bucket/prefix), how S3 is reached, and whether
    this run promotes at all."""

    registry: str = "work/registry"
    # auto: promote, except inside `dvc exp run` and for a trial model (a fold's, no final model); true: always
    # (a passing gate still required); false: never. Checked below, for a one-line error in those words.
    enabled: Any = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool) and self.enabled != "auto":
            raise ValueError(f"enabled: expected true, false or auto, got {self.enabled!r}")


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    prefix: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def parse_s3_uri(uri: str) -> S3Uri:
    if not uri.startswith("s3://"):
        raise RegistryError(f"{uri}: not an s3:// URI")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise RegistryError(f"{uri}: missing bucket name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", bucket):
        raise RegistryPathError(f"{uri}: invalid bucket name {bucket!r}")
    prefix = prefix.strip("/")
    if prefix:
        check_key(prefix)
    return S3Uri(bucket, prefix)


class Store(Protocol):
    """The few operations the registry needs; keys are '/'-separated and relative to the root."""

    def put_file(self, source: Path, key: str) -> None: ...

    def put_text(self, text: str, key: str) -> None: ...

    def get_text(self, key: str) -> str | None: ...

    def describe(self, key: str) -> str: ...


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise RegistryError(f"{self.root}: registry root is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        """The file for a key, which must stay under the root even through symbolic links."""
        target = self.root / check_key(key)
        if not target.resolve().is_relative_to(self.root.resolve()):
            raise RegistryPathError(f"registry key {key!r} resolves outside the registry root {self.root}")
        return target

    def put_file(self, source: Path, key: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(source, temporary)
        temporary.replace(target)

    def put_text(self, text: str, key: str) -> None:
        atomic_write_text(self._path(key), text)

    def get_text(self, key: str) -> str | None:
        path = self._path(key)
        return path.read_text() if path.is_file() else None

    def describe(self, key: str) -> str:
        return str(self.root / key)


class S3Store:
    def __init__(self, uri: S3Uri, settings: S3Settings, client: Any | None = None) -> None:
        self.uri = uri
        self.settings = settings
        self.client = client or s3_client(settings)
        check_bucket(self.client, uri.bucket, settings)

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.uri.prefix}/{key}" if self.uri.prefix else key

    def put_file(self, source: Path, key: str) -> None:
        with _s3_errors(self.settings, f"s3://{self.uri.bucket}/{self._key(key)}"):
            self.client.upload_file(str(source), self.uri.bucket, self._key(key))

    def put_text(self, text: str, key: str) -> None:
        with _s3_errors(self.settings, f"s3://{self.uri.bucket}/{self._key(key)}"):
            self.client.put_object(Bucket=self.uri.bucket, Key=self._key(key), Body=text.encode())

    def get_text(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with _s3_errors(
                self.settings, f"s3://{self.uri.bucket}/{self._key(key)}", passthrough=ClientError
            ):
                response = self.client.get_object(Bucket=self.uri.bucket, Key=self._key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise RegistryError(f"s3://{self.uri.bucket}/{self._key(key)}: {error}") from None
        return response["Body"].read().decode()

    def describe(self, key: str) -> str:
        return f"s3://{self.uri.bucket}/{self._key(key)}"


def s3_client(settings: S3Settings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.timeout_s,
        read_timeout=settings.timeout_s,
        retries={"max_attempts": 2, "mode": "standard"},
        # Path-style addressing works with every S3-compatible server; virtual hosts need DNS per bucket.
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region, config=config)


def check_bucket(client: Any, bucket: str, settings: S3Settings) -> None:
    """Fail early, naming the bucket and endpoint, instead of on the first upload."""
    from botocore.exceptions import ClientError

    where = settings.endpoint_url or "the default AWS endpoint"
    try:
        with _s3_errors(settings, f"s3://{bucket}", passthrough=ClientError):
            client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise RegistryError(f"s3://{bucket}: bucket does not exist at {where}; create it first") from None
        if code in ("403", "AccessDenied", "Forbidden"):
            raise RegistryError(
                f"s3://{bucket}: access denied at {where}; check the AWS credentials"
            ) from None
        raise RegistryError(f"s3://{bucket}: {error}") from None


@contextlib.contextmanager
def _s3_errors(
    settings: S3Settings, target: str, passthrough: type[BaseException] | None = None
) -> Iterator[None]:
    """Turn botocore's network and credential exceptions into one-line RegistryErrors."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    where = settings.endpoint_url or "the default AWS endpoint"
    try:
        yield
    except Exception as error:
        if passthrough is not None and isinstance(error, passthrough):
            raise
        if isinstance(error, NoCredentialsError):
            raise RegistryError(f"{target}: no AWS credentials found (set AWS_ACCESS_KEY_ID etc.)") from None
        if isinstance(error, BotoCoreError | ClientError):
            raise RegistryError(f"{target}: S3 request to {where} failed: {error}") from None
        raise


def open_store(location: str | Path, settings: S3Settings | None = None) -> Store:
    """A registry root: `s3://bucket/prefix` or a local directory (created if missing)."""
    text = str(location)
    if text.startswith("s3://"):
        return S3Store(parse_s3_uri(text), settings or S3Settings())
    if "://" in text:
        raise RegistryError(f"{text}: unsupported registry location (use s3://bucket/prefix or a directory)")
    return LocalStore(Path(text))


@dataclass(frozen=True)
class Published:
    model: str
    version: str
    manifest_uri: str
    files: list[dict[str, Any]]
    new: bool = True  # False: this content was already promoted as `version`; nothing was copied
    previous: str | None = None  # the version latest.json named before (None: first promotion of the model)


# What a JSON record says about a run rather than about what it made: when (timestamps), how long (host wall-clock
# durations and rates; a board's latency follows from the model and the board profile, which stay hashed), and
# where (host, device and file locations; a file is named by the sha256 beside its path). Matched on key names at
# any depth: the records of every step (aed.records.make_record, the HIL job, the gate) use these names.
VOLATILE_KEYS = frozenset(
    {"created", "updated", "modified", "started", "finished", "timestamp", "time", "date", "datetime",
     "elapsed", "duration", "seconds", "real_time_factor", "failed_attempts",
     "host", "hostname", "node", "pid", "user", "cwd", "path", "descriptor"}
)  # fmt: skip
VOLATILE_SUFFIXES = (
    "_at", "_time", "_date", "_datetime", "_timestamp",
    "_s", "_ms", "_us", "_ns", "_seconds", "_per_second",
    "_path", "_dir", "_host", "_hostname",
)  # fmt: skip
CONTENT_PREFIX = "content:"
MAX_RECORD_BYTES = 64 << 20  # records are kilobytes; a larger .json file is data, hashed as bytes


def is_volatile(key: str) -> bool:
    name = key.lower()
    return name in VOLATILE_KEYS or name.endswith(VOLATILE_SUFFIXES)


def _read_json(path: Path) -> Any | None:
    """A JSON record's value, or None when the file is not one (it is then hashed as bytes): another suffix, not
    JSON, too large to be a record, or nested too deep to canonicalise."""
    if path.suffix.lower() != ".json" or path.stat().st_size > MAX_RECORD_BYTES:
        return None
    try:
        document = json.loads(path.read_bytes())
        _canonical_digest(document, {})  # RecursionError here, once, rather than in the second pass
    except (ValueError, RecursionError):
        return None
    return document


def _stable(value: Any, references: dict[str, str]) -> Any:
    """`value` without volatile keys; a sha256 of another record is replaced by that record's content digest,
    since the raw hash of a record changes with its timestamps (the gate verdict names the HIL record so)."""
    if isinstance(value, dict):
        return {k: _stable(v, references) for k, v in value.items() if not is_volatile(str(k))}
    if isinstance(value, list):
        return [_stable(item, references) for item in value]
    if isinstance(value, str) and value in references:
        return CONTENT_PREFIX + references[value]
    return value


def _canonical_digest(document: Any, references: dict[str, str]) -> str:
    text = json.dumps(_stable(document, references), sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def content_digests(paths: list[Path]) -> dict[Path, str]:
    """{path: content digest}: the sha256 of the bytes, except for a JSON file (a record), whose digest is that
    of its canonical form (sorted keys) without volatile keys, so that two runs that made the same thing give
    the same digest. Two passes: the second can replace a record's raw sha256 named inside another record."""
    documents = {path: _read_json(path) for path in dict.fromkeys(paths)}
    first = {path: _canonical_digest(doc, {}) for path, doc in documents.items() if doc is not None}
    references = {sha256_file(path): digest for path, digest in first.items()}
    return {
        path: sha256_file(path) if doc is None else _canonical_digest(doc, references)
        for path, doc in documents.items()
    }


def content_version(entries: list[dict[str, Any]]) -> str:
    """The version of a promotion: a hash of every promoted key with its content digest."""
    lines = "".join(f"{e['key']}:{e['content']}\n" for e in sorted(entries, key=lambda e: e["key"]))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def _artifact_files(name: str, source: Path) -> list[tuple[str, Path]]:
    """(relative key, local path) pairs for one artifact, a file or a directory tree."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: artifact '{name}' to promote does not exist")
    if source.is_file():
        return [(f"{name}/{source.name}", source)]
    files = sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{source}: artifact '{name}' is an empty directory")
    return [(f"{name}/{p.relative_to(source).as_posix()}", p) for p in files]


def _stored_manifest(store: Store, key: str, version: str) -> dict[str, Any] | None:
    """The manifest of a version already in the registry (None: absent, or a half-written or foreign one that a
    new promotion may replace; the manifest is written after every file, so its presence marks a whole copy)."""
    text = store.get_text(key)
    try:
        manifest = None if text is None else json.loads(text)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("version") == version else None


def publish(
    store: Store,
    model: str,
    artifacts: dict[str, Path],
    metadata: dict[str, Any],
    referenced: tuple[Path, ...] = (),
) -> Published:
    """Copy the artifacts under <model>/<version>/, then write the manifest, then move latest.json.

    The manifest is written after every file and latest.json last, so a reader that follows latest.json never
    sees a half-copied version. When the version is already there (the same content, promoted before), nothing
    is copied and its manifest is kept; latest.json is rewritten only if it named another version.
    referenced: records that promoted records name by sha256 without being promoted themselves.
    """
    check_name(model, "model name")
    for name in artifacts:
        check_name(name, "artifact name")
        if name == MANIFEST:
            raise RegistryPathError(f"invalid artifact name {name!r}: reserved for the version's manifest")
    pairs = [pair for name, source in sorted(artifacts.items()) for pair in _artifact_files(name, source)]
    digests = content_digests([path for _, path in pairs] + [Path(p) for p in referenced])
    entries = [
        {"key": key, "bytes": path.stat().st_size, "sha256": sha256_file(path), "content": digests[path],
         "path": path}
        for key, path in pairs
    ]  # fmt: skip
    version = content_version(entries)
    manifest_key = f"{model}/{version}/{MANIFEST}"
    previous = _latest_version(store, model)
    stored = _stored_manifest(store, manifest_key, version)
    if stored is None:
        for entry in entries:
            store.put_file(entry["path"], f"{model}/{version}/{entry['key']}")
        files = [{k: v for k, v in entry.items() if k != "path"} for entry in entries]
        manifest = {"model": model, "version": version, "files": files, **metadata}
        store.put_text(json.dumps(manifest, indent=2) + "\n", manifest_key)
    else:
        files = list(stored.get("files", []))
    if previous != version:
        latest_entry = {"model": model, "version": version, "manifest": f"{version}/{MANIFEST}"}
        store.put_text(json.dumps(latest_entry, indent=2) + "\n", f"{model}/{LATEST}")
    return Published(model, version, store.describe(manifest_key), files, stored is None, previous)


def latest(store: Store, model: str) -> dict[str, Any] | None:
    text = store.get_text(f"{check_name(model, 'model name')}/{LATEST}")
    return None if text is None else json.loads(text)


def _latest_version(store: Store, model: str) -> str | None:
    """The version latest.json names; None when there is none or it is unreadable (the promotion rewrites it)."""
    try:
        entry = latest(store, model)
    except ValueError:
        return None
    return entry.get("version") if isinstance(entry, dict) else None
