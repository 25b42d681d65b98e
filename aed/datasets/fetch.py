"""Getting a dataset source onto local disk: resumable, sha256-verified http(s) downloads under one overall deadline,
bounded zip extraction, and S3 prefixes through boto3. Every message is redacted: a password in a source URL or an
S3 endpoint never reaches a log line or an error."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import logging
import shutil
import socket
import stat
import threading
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit, urlunsplit

from tqdm import tqdm

from aed.datasets.errors import DatasetError
from aed.deadline import Deadline, DeadlineExceeded
from aed.records import atomic_write_text, sha256_file
from aed.redact import MASK, redact

log = logging.getLogger(__name__)
CHUNK = 1 << 20
READ_TIMEOUT_S = 60.0  # a silent server fails an attempt after this long
# A whole fetch (every attempt and back-off included) ends after this long, however the server behaves; the
# partial file is kept, so the next run resumes where this one stopped.
FETCH_DEADLINE_S = 4 * 3600.0
URL_FORM = (
    "expected http(s)://[user:password@]host[:port]/path, a password with '/', '@' or ':' percent-encoded"
)


def _secrets_of(url: str | None) -> list[str]:
    """The password of a URL as written and unquoted, so that it is masked even where `redact`'s URL pattern does
    not see it: a password holding '@' or '/', no scheme ("user:pw@host:9000"), a message quoting only part of it.
    Two readings, because a malformed URL is exactly where a parser and a reader disagree: the parser's, and
    everything between the scheme and the last '@' (masking too much is harmless, too little is not)."""
    if not url:
        return []
    candidates: set[str] = set()
    with contextlib.suppress(ValueError):
        candidates.add(urlsplit(url if "//" in url else f"//{url}").password or "")
    userinfo = url.split("://", 1)[-1].rpartition("@")[0]
    if ":" in userinfo:
        candidates.add(userinfo.split(":", 1)[1])
    candidates |= {unquote(candidate) for candidate in candidates}
    return sorted(candidates - {""}, key=len, reverse=True)


def safe(text: object, *urls: str | None) -> str:
    """`text` with the passwords of `urls` and every other secret `redact` knows about masked."""
    text = str(text)
    for url in urls:
        for secret in _secrets_of(url):
            text = text.replace(secret, MASK)
    return redact(text)


def _without_credentials(url: str) -> tuple[str, str | None]:
    """The URL without its user:password, and the Basic Authorization value they stand for (urllib would send
    them to DNS as part of the host name)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    token = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return urlunsplit(parts._replace(netloc=netloc)), "Basic " + base64.b64encode(token).decode()


def download(
    url: str,
    destination: Path,
    sha256: str | None,
    attempts: int = 3,
    timeout_s: float = READ_TIMEOUT_S,
    backoff_s: float = 2.0,
    deadline_s: float = FETCH_DEADLINE_S,
) -> Path:
    """Download url to destination, resuming a partial file; verify sha256; retry from scratch on a mismatch.

    `timeout_s` bounds each wait for data; `deadline_s` bounds the whole call, attempts and back-off included, so
    that a server sending a byte just often enough to beat `timeout_s` cannot keep it going forever."""
    deadline = Deadline(deadline_s)
    shown = safe(url, url)
    _check_url(url, shown)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and sha256 and sha256_file(destination) == sha256:
        return destination
    partial = destination.with_name(destination.name + ".part")
    last_problem = ""
    for attempt in range(1, attempts + 1):
        try:
            _download_resuming(url, partial, timeout_s, deadline)
        except DeadlineExceeded:
            received = partial.stat().st_size if partial.exists() else 0
            raise DatasetError(
                f"{shown}: download {deadline.describe()} over {attempt} attempt(s), {received} bytes received "
                f"(kept in {partial}; the next run resumes from there)"
            ) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            last_problem = safe(f"download failed: {error}", url)
            log.warning("%s (attempt %d/%d): %s", shown, attempt, attempts, last_problem)
            if attempt < attempts:
                time.sleep(min(backoff_s * attempt, deadline.remaining()))
            continue
        except ValueError:  # a URL urllib cannot use: retrying cannot help (its words may quote the password)
            raise DatasetError(f"{shown}: not a usable download URL ({URL_FORM})") from None
        actual = sha256_file(partial)
        if sha256 is None or actual == sha256:
            partial.replace(destination)
            return destination
        last_problem = f"sha256 mismatch: expected {sha256}, got {actual} ({partial.stat().st_size} bytes)"
        log.warning("%s (attempt %d/%d): %s", shown, attempt, attempts, last_problem)
        partial.unlink()  # a corrupt or truncated body cannot be resumed: start again
    raise DatasetError(f"{shown}: {last_problem} after {attempts} attempts; file kept out of {destination}")


def _check_url(url: str, shown: str) -> None:
    """Refuse what cannot be downloaded before connecting. The parser's own messages are not repeated: on a
    malformed URL they quote pieces of the password (e.g. "Port could not be cast to integer value as 'pa'")."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        raise DatasetError(f"{shown}: not a usable download URL ({URL_FORM})") from None
    if parts.scheme not in ("http", "https"):  # other schemes would escape the deadline's watchdog
        raise DatasetError(f"{shown}: only http(s) URLs can be downloaded")
    if not parts.hostname:
        raise DatasetError(f"{shown}: not a usable download URL ({URL_FORM})")


class _Watchdog:
    """Shuts down the sockets of a download when its deadline passes. That wakes a read blocked in the kernel
    (a per-read time-out alone never fires while the server keeps dripping bytes)."""

    def __init__(self, deadline: Deadline) -> None:
        self.deadline = deadline
        self.sockets: list[socket.socket] = []
        self.fired = False
        self.lock = threading.Lock()
        self.timer = threading.Timer(deadline.remaining(), self.fire)
        self.timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self.lock:
            self.sockets.append(sock)
            if self.fired:  # connected just after the deadline: do not let it read
                _shutdown(sock)

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            for sock in self.sockets:
                _shutdown(sock)

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()


def _shutdown(sock: socket.socket) -> None:
    # the plain socket's shutdown, also for an SSL socket: SSLSocket.shutdown would tear down its TLS state
    # under the reading thread
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _WatchedOpen:
    """Mixin for urllib's HTTP(S) handlers: every connection they open reports its socket to the watchdog."""

    watchdog: _Watchdog

    def do_open(self, http_class, req, **kwargs):  # type: ignore[no-untyped-def]
        watchdog = self.watchdog

        class Watched(http_class):  # type: ignore[misc, valid-type]
            def connect(self) -> None:
                super().connect()
                watchdog.watch(self.sock)

        return super().do_open(Watched, req, **kwargs)  # type: ignore[misc]


class _WatchedHTTPHandler(_WatchedOpen, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPSHandler(_WatchedOpen, urllib.request.HTTPSHandler):
    pass


def _opener(watchdog: _Watchdog) -> urllib.request.OpenerDirector:
    handlers = (_WatchedHTTPHandler(), _WatchedHTTPSHandler())
    for handler in handlers:
        handler.watchdog = watchdog
    return urllib.request.build_opener(*handlers)  # replaces urllib's own HTTP(S) handlers


def _download_resuming(url: str, partial: Path, timeout_s: float, deadline: Deadline) -> None:
    if deadline.expired():
        raise deadline.error("download")
    offset = partial.stat().st_size if partial.exists() else 0
    plain_url, authorization = _without_credentials(url)
    request = urllib.request.Request(plain_url, headers={"User-Agent": "aed-mlops"})
    if authorization:  # not forwarded to wherever a redirect points
        request.add_unredirected_header("Authorization", authorization)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with _Watchdog(deadline) as watchdog:
        try:
            length_checked = _receive(
                _opener(watchdog), request, partial, offset, min(timeout_s, deadline.remaining())
            )
        except urllib.error.HTTPError as error:
            if error.code == 416:  # the partial file is already whole (or longer): start again from scratch
                partial.unlink(missing_ok=True)
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            if watchdog.fired:
                raise deadline.error("download") from None
            raise
        if watchdog.fired and not length_checked:  # the shutdown may have looked like the end of the body
            raise deadline.error("download")


def _receive(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    partial: Path,
    offset: int,
    timeout: float,
) -> bool:
    """Append the response body to partial; True when its length was checked against Content-Length."""
    with opener.open(request, timeout=timeout) as response:
        if offset and response.status != 206:  # server ignored the range: restart the file
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None and length.isdigit() else None
        with (
            open(partial, "ab" if offset else "wb") as out,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=partial.name, leave=False
            ) as bar,
        ):
            # read1: whatever has arrived is written, so it is kept on disk even if the next read fails
            while chunk := response.read1(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and partial.stat().st_size < total:
            raise OSError(f"connection closed after {partial.stat().st_size} of {total} bytes")
    return total is not None


# Zip extraction limits. Audio barely compresses (ESC-50: 1.1x), so a high expansion ratio means a zip bomb; the
# ratio applies above RATIO_FLOOR_BYTES so that small archives of text are not refused.
MAX_ZIP_BYTES = 64 * 2**30
MAX_ZIP_MEMBERS = 500_000
MAX_ZIP_RATIO = 100.0
RATIO_FLOOR_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ZipLimits:
    max_bytes: int = MAX_ZIP_BYTES
    max_members: int = MAX_ZIP_MEMBERS
    max_ratio: float = MAX_ZIP_RATIO
    ratio_floor_bytes: int = RATIO_FLOOR_BYTES

    def allowed_bytes(self, archive_bytes: int) -> tuple[int, str]:
        """The uncompressed total allowed for an archive of this size, and the name of the limit that sets it."""
        by_ratio = max(int(self.max_ratio * archive_bytes), self.ratio_floor_bytes)
        if by_ratio < self.max_bytes:
            return by_ratio, f"{self.max_ratio:g}x the archive's {archive_bytes} bytes"
        return self.max_bytes, "max_bytes"


def extract_zip(archive: Path, destination: Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Extract archive into destination; refuse members that would land outside it, links and special files,
    encrypted members, and archives whose member count or uncompressed size exceed the limits. Extraction is
    streamed and counted, so a lying size header cannot get past the size limit either. On refusal, a destination
    this call created is removed."""
    created = not destination.exists()
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            allowed, limit_name = limits.allowed_bytes(archive.stat().st_size)
            _check_members(archive, destination, members, limits, allowed, limit_name)
            written = 0
            for member in members:
                written = _extract_member(archive, bundle, member, destination, written, allowed, limit_name)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        _discard(destination, created)
        raise DatasetError(f"{archive}: not a valid zip archive ({error})") from error
    except DatasetError:
        _discard(destination, created)
        raise
    except OSError as error:  # a member clashing with another ("a" then "a/b"), a full disk, ...
        _discard(destination, created)
        raise DatasetError(f"{archive}: cannot extract into {destination}: {error}") from None
    return destination


def _discard(destination: Path, created: bool) -> None:
    if created:
        shutil.rmtree(destination, ignore_errors=True)


def _check_members(
    archive: Path,
    destination: Path,
    members: list[zipfile.ZipInfo],
    limits: ZipLimits,
    allowed: int,
    limit_name: str,
) -> None:
    """Everything that can be refused from the central directory, before a byte is written."""
    if len(members) > limits.max_members:
        raise DatasetError(
            f"{archive}: {len(members)} members exceed the limit of {limits.max_members} (max_members)"
        )
    declared = sum(member.file_size for member in members)
    if declared > allowed:
        raise DatasetError(
            f"{archive}: expands to {declared} bytes, over the limit of {allowed} bytes ({limit_name})"
        )
    root = destination.resolve()
    for member in members:
        name = PurePosixPath(member.filename.replace("\\", "/"))
        target = (destination / member.filename).resolve()
        if (
            name.is_absolute()
            or ".." in name.parts
            or "\0" in member.filename
            or not target.is_relative_to(root)
        ):
            raise DatasetError(f"{archive}: member {member.filename!r} points outside the archive root")
        kind = stat.S_IFMT(member.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise DatasetError(f"{archive}: member {member.filename!r} is {what}; refused")
        if member.flag_bits & 0x1:
            raise DatasetError(f"{archive}: member {member.filename!r} is encrypted; refused")


def _extract_member(
    archive: Path,
    bundle: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    destination: Path,
    written: int,
    allowed: int,
    limit_name: str,
) -> int:
    """Stream one member to disk, counting every byte against the archive's allowance; the new total."""
    target = destination / member.filename
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return written
    target.parent.mkdir(parents=True, exist_ok=True)
    with bundle.open(member) as source, open(target, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > allowed:
                raise DatasetError(
                    f"{archive}: expands beyond the limit of {allowed} bytes ({limit_name}) "
                    f"while extracting {member.filename!r}"
                )
            out.write(chunk)
    return written


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise DatasetError(f"{safe(url, url)}: not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if "@" in bucket:
        raise DatasetError(
            f"{safe(url, url)}: credentials in an s3:// URL are not supported; "
            "give them through the AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or a profile)"
        )
    if not bucket:
        raise DatasetError(f"{url}: no bucket name")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None, timeout_s: float = READ_TIMEOUT_S):
    import boto3
    from botocore.config import Config

    try:
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 3},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
            ),
        )
    except ValueError as error:  # botocore: "Invalid endpoint: ..."
        raise DatasetError(safe(f"s3_endpoint_url: {error}", endpoint_url)) from None


def download_s3_prefix(
    url: str,
    destination: Path,
    endpoint_url: str | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    deadline_s: float = FETCH_DEADLINE_S,
    force: bool = False,
) -> Path:
    """Make destination a copy of every object under s3://bucket/prefix, keeping relative paths.

    A sync: the listing (size and ETag of each object) is kept beside destination, and an object whose size and
    ETag are unchanged is not downloaded again (unless `force`); a file whose object is gone is removed, so the
    copy is what the prefix holds now. `timeout_s` bounds each wait for data, `deadline_s` the whole copy
    (checked between objects)."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = Deadline(deadline_s)
    bucket, prefix = parse_s3_url(url)
    client = s3_client(endpoint_url, timeout_s)
    listing_path = s3_listing_path(destination)
    known = {} if force else _read_listing(listing_path)
    current: dict[str, dict] = {}
    try:
        for key, relative, entry in _list_objects(client, url, bucket, prefix):
            if deadline.expired():
                raise DatasetError(
                    f"{safe(url, url)}: S3 copy {deadline.describe()} after {len(current)} objects; "
                    "the next run starts again"
                )
            target = destination / relative
            if force or known.get(relative) != entry or not _has_size(target, entry["size"]):
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(target))
            current[relative] = entry
    except (BotoCoreError, ClientError) as error:
        raise DatasetError(safe(f"{url}: S3 error: {error}", url, endpoint_url)) from error
    if not current:
        raise DatasetError(f"{safe(url, url)}: no objects under this prefix")
    _remove_unlisted(destination, current)
    atomic_write_text(listing_path, json.dumps(current, sort_keys=True, indent=1))
    return destination


def s3_listing_path(destination: Path) -> Path:
    """Where the listing of the objects copied into destination is kept: beside it, not inside (inside, it would
    be one more file of the dataset)."""
    return destination.with_name(destination.name + ".s3-listing.json")


def _read_listing(path: Path) -> dict:
    try:
        listing = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: every object is downloaded
    return listing if isinstance(listing, dict) else {}


def _list_objects(client, url: str, bucket: str, prefix: str) -> Iterator[tuple[str, str, dict]]:
    """(key, path relative to the prefix, {"size", "etag"}) of every object under the prefix."""
    # "data/" and not "data": the prefix is a folder, "data2/..." is not under it
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""
    )
    for page in pages:
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):  # a folder marker, not a file
                continue
            relative = PurePosixPath(key[len(prefix) + 1 :] if prefix else key)
            if relative.is_absolute() or ".." in relative.parts or not relative.parts:
                raise DatasetError(f"{safe(url, url)}: object key {key!r} points outside the prefix")
            yield key, relative.as_posix(), {"size": item.get("Size"), "etag": item.get("ETag")}


def _has_size(path: Path, size: int | None) -> bool:
    return path.is_file() and path.stat().st_size == size


def _remove_unlisted(destination: Path, listed: dict[str, dict]) -> None:
    for path in sorted(destination.rglob("*"), reverse=True):
        if path.is_file() and path.relative_to(destination).as_posix() not in listed:
            path.unlink()


def copy_tree(source: Path, destination: Path) -> Path:
    if not source.is_dir():
        raise DatasetError(f"{source}: dataset directory not found")
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return destination
