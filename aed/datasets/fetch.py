"""Getting a dataset source onto local disk: resumable, sha256-verified http(s) downloads, safe zip extraction,
and S3 prefixes through boto3."""

from __future__ import annotations

import logging
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from aed.datasets.errors import DatasetError
from aed.records import sha256_file

log = logging.getLogger(__name__)
CHUNK = 1 << 20


def download(
    url: str,
    destination: Path,
    sha256: str | None,
    attempts: int = 3,
    timeout_s: float = 60.0,
    backoff_s: float = 2.0,
) -> Path:
    """Download url to destination, resuming a partial file; verify sha256; retry from scratch on a mismatch."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists() and sha256 and sha256_file(destination) == sha256:
        return destination
    partial = destination.with_name(destination.name + ".part")
    last_problem = ""
    for attempt in range(1, attempts + 1):
        try:
            _download_resuming(url, partial, timeout_s)
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            last_problem = f"download failed: {error}"
            log.warning("%s (attempt %d/%d): %s", url, attempt, attempts, last_problem)
            time.sleep(backoff_s * attempt)
            continue
        actual = sha256_file(partial)
        if sha256 is None or actual == sha256:
            partial.replace(destination)
            return destination
        last_problem = f"sha256 mismatch: expected {sha256}, got {actual} ({partial.stat().st_size} bytes)"
        log.warning("%s (attempt %d/%d): %s", url, attempt, attempts, last_problem)
        partial.unlink()  # a corrupt or truncated body cannot be resumed: start again
    raise DatasetError(f"{url}: {last_problem} after {attempts} attempts; file kept out of {destination}")


def _download_resuming(url: str, partial: Path, timeout_s: float) -> None:
    offset = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "aed-mlops"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if offset and response.status != 206:  # server ignored the range: restart the file
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with (
            open(partial, "ab" if offset else "wb") as out,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=partial.name, leave=False
            ) as bar,
        ):
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        if total is not None and partial.stat().st_size < total:
            raise OSError(f"connection closed after {partial.stat().st_size} of {total} bytes")


def extract_zip(archive: Path, destination: Path) -> Path:
    """Extract archive into destination, refusing members that would land outside it."""
    destination.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = PurePosixPath(member.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise DatasetError(
                        f"{archive}: member {member.filename!r} points outside the archive root"
                    )
            bundle.extractall(destination)
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{archive}: not a valid zip archive ({error})") from error
    return destination


def parse_s3_url(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise DatasetError(f"{url}: not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise DatasetError(f"{url}: no bucket name")
    return bucket, prefix.strip("/")


def s3_client(endpoint_url: str | None = None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or None,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}),
    )


def download_s3_prefix(url: str, destination: Path, endpoint_url: str | None = None) -> Path:
    """Copy every object under s3://bucket/prefix into destination, keeping relative paths."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, prefix = parse_s3_url(url)
    client = s3_client(endpoint_url)
    count = 0
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                relative = (
                    PurePosixPath(item["Key"]).relative_to(prefix) if prefix else PurePosixPath(item["Key"])
                )
                if ".." in relative.parts:
                    raise DatasetError(f"{url}: object key {item['Key']!r} points outside the prefix")
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, item["Key"], str(target))
                count += 1
    except (BotoCoreError, ClientError) as error:
        raise DatasetError(f"{url}: S3 error: {error}") from error
    if count == 0:
        raise DatasetError(f"{url}: no objects under this prefix")
    return destination


def copy_tree(source: Path, destination: Path) -> Path:
    if not source.is_dir():
        raise DatasetError(f"{source}: dataset directory not found")
    shutil.copytree(source, destination, dirs_exist_ok=True)
    return destination
