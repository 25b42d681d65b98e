"""Fetching a source is bounded and keeps secrets: a download ends at its overall deadline however the server drips
its bytes (asserted within 20 %), zip extraction is bounded by size and member count and refuses members that leave
the target folder, and no message or log line repeats a password from the source URL or the S3 endpoint."""

from __future__ import annotations

import http.server
import io
import logging
import re
import socket
import stat
import threading
import time
import zipfile
from pathlib import Path

import pytest

from aed.datasets.errors import DatasetError
from aed.datasets.fetch import ZipLimits, download, download_s3_prefix, extract_zip, parse_s3_url
from tests.conftest import loopback_http

pytestmark = pytest.mark.timeout(120)  # a regression that hangs fails here, not at the suite's 900 s

DEADLINE_S = 2.0
DRIP_S = 0.5  # faster than the per-read time-out: only an overall deadline stops it
READ_TIMEOUT_S = 1.5
SECRET = "s3cr3t-Passw0rd"


class DripHandler(http.server.BaseHTTPRequestHandler):
    """`/body`: headers at once, then one byte per DRIP_S; `/headers`: the status line itself dripped;
    `/fail`: HTTP 500; `/ok`: a small body. Records the Authorization header it was sent."""

    stop = threading.Event()
    authorizations: list[str | None] = []

    def do_GET(self):  # noqa: N802
        type(self).authorizations.append(self.headers.get("Authorization"))
        if self.path.endswith("/fail"):
            self.send_error(500, "broken on purpose")
            return
        start = self.headers.get("Range", "bytes=0-").split("=")[1].rstrip("-")
        if self.path.endswith("/range") and int(start) >= 5:  # a resume at or past the end of the 5 bytes
            self.send_error(416, "range not satisfiable")
            return
        if self.path.endswith(("/ok", "/range")):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")
            return
        if self.path.endswith("/headers"):
            self._drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + bytes(1000))
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.flush()
        self._drip(bytes(100000))

    def _drip(self, data: bytes) -> None:
        for byte in data:
            if self.stop.wait(DRIP_S):
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:  # the client gave up
                return

    def log_message(self, *args):
        pass


@pytest.fixture
def drip_server():
    DripHandler.stop.clear()
    DripHandler.authorizations = []
    with loopback_http(DripHandler) as url:
        yield url
        DripHandler.stop.set()


def with_credentials(url: str, password: str = SECRET) -> str:
    return url.replace("http://", f"http://reader:{password}@")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_dripping_server_fails_at_the_overall_deadline(tmp_path, drip_server, caplog, where):
    url = with_credentials(f"{drip_server}/{where}")
    started = time.monotonic()
    with pytest.raises(DatasetError) as raised:
        download(url, tmp_path / "x.zip", None, timeout_s=READ_TIMEOUT_S, backoff_s=0, deadline_s=DEADLINE_S)
    elapsed = time.monotonic() - started
    assert abs(elapsed - DEADLINE_S) <= 0.2 * DEADLINE_S, f"waited {elapsed:.2f} s for {DEADLINE_S} s"
    message = str(raised.value)
    waited = re.search(r"timed out after (\d+\.\d+) s \(limit 2 s\)", message)
    assert waited and abs(float(waited[1]) - DEADLINE_S) <= 0.2 * DEADLINE_S, message
    assert SECRET not in message and "reader:***@127.0.0.1" in message
    assert SECRET not in caplog.text
    if where == "body":  # what arrived is kept for the next run to resume
        assert (tmp_path / "x.zip.part").stat().st_size >= 1


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here (no network, no fixture files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_a_dripping_https_server_fails_at_the_overall_deadline(tmp_path, monkeypatch):
    """The deadline also wakes a read blocked inside TLS."""
    import ssl

    cert, key = self_signed_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client trusts this certificate only
    DripHandler.stop.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"https://reader:{SECRET}@127.0.0.1:{server.server_address[1]}/body"
        started = time.monotonic()
        with pytest.raises(DatasetError, match=r"timed out after \d+\.\d+ s \(limit 2 s\)") as raised:
            download(
                url, tmp_path / "x.zip", None, timeout_s=READ_TIMEOUT_S, backoff_s=0, deadline_s=DEADLINE_S
            )
        elapsed = time.monotonic() - started
    finally:
        DripHandler.stop.set()
        server.shutdown()
        server.server_close()
    assert abs(elapsed - DEADLINE_S) <= 0.2 * DEADLINE_S, f"waited {elapsed:.2f} s for {DEADLINE_S} s"
    assert SECRET not in str(raised.value)
    assert (tmp_path / "x.zip.part").stat().st_size >= 1  # TLS worked: bytes arrived before the deadline


def test_credentials_in_the_url_are_sent_as_basic_auth_not_to_dns(tmp_path, drip_server):
    download(with_credentials(f"{drip_server}/ok"), tmp_path / "ok.bin", None, backoff_s=0)
    assert (tmp_path / "ok.bin").read_bytes() == b"hello"
    assert DripHandler.authorizations == ["Basic cmVhZGVyOnMzY3IzdC1QYXNzdzByZA=="]  # reader:s3cr3t-Passw0rd


@pytest.mark.parametrize(
    "case",
    [
        "http-500",
        "refused",
        "bad-port",
        "sha-mismatch",
        "password-with-at",
        "password-with-slash",
        "percent-encoded",
        "dns",
    ],  # fmt: skip
)
def test_download_errors_never_show_the_password(tmp_path, drip_server, caplog, case):
    caplog.set_level(logging.DEBUG)
    secrets = [SECRET]
    if case == "http-500":
        url = with_credentials(f"{drip_server}/fail")
    elif case == "refused":
        url = with_credentials(f"http://127.0.0.1:{closed_port()}/x.zip")
    elif case == "bad-port":
        url = f"http://reader:{SECRET}@127.0.0.1:notaport/x.zip"
    elif case == "sha-mismatch":
        url = with_credentials(f"{drip_server}/ok")
    elif case == "password-with-at":  # redact's URL pattern alone would leave part of it visible
        secrets = ["p@ss-w0rd"]
        url = with_credentials(f"http://127.0.0.1:{closed_port()}/x.zip", "p@ss-w0rd")
    elif case == "password-with-slash":  # not even a valid URL: the parser sees host "reader", port "pa"
        secrets = ["pa/ss-w0rd"]
        url = "http://reader:pa/ss-w0rd@127.0.0.1/x.zip"
    elif case == "percent-encoded":
        secrets = ["p%40ss-w0rd", "p@ss-w0rd"]
        url = with_credentials(f"http://127.0.0.1:{closed_port()}/x.zip", "p%40ss-w0rd")
    else:
        url = f"http://reader:{SECRET}@no-such-host.invalid/x.zip"
    with pytest.raises(DatasetError) as raised:
        download(url, tmp_path / "x.zip", "0" * 64, attempts=2, timeout_s=READ_TIMEOUT_S, backoff_s=0)
    message = str(raised.value)
    assert "\n" not in message and "***" in message, message
    for secret in secrets:
        assert secret not in message, message
        assert secret not in caplog.text


def test_s3_errors_never_show_the_endpoint_password(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    endpoint = f"http://reader:{SECRET}@127.0.0.1:{closed_port()}"
    with pytest.raises(DatasetError) as raised:
        download_s3_prefix("s3://bucket/data", tmp_path / "s3", endpoint, timeout_s=1.0)
    assert SECRET not in str(raised.value) and "S3 error" in str(raised.value)
    for malformed in (f"reader:{SECRET}@127.0.0.1:9000", f"http://reader:{SECRET}@127.0.0.1:notaport"):
        with pytest.raises(DatasetError, match=r"s3_endpoint_url|not a valid URI") as raised:
            download_s3_prefix("s3://bucket/data", tmp_path / "s3", malformed)
        assert SECRET not in str(raised.value)


def test_credentials_in_an_s3_url_are_refused_without_echoing_them():
    with pytest.raises(DatasetError, match="credentials in an s3:// URL are not supported") as raised:
        parse_s3_url(f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix")
    assert SECRET not in str(raised.value)


# ---- zip extraction ----------------------------------------------------------------------------------------------
def zip_bomb(path: Path, uncompressed: int) -> Path:
    """A small archive that declares and holds `uncompressed` bytes of zeros (about 1000:1)."""
    block = bytes(1 << 20)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle,
        bundle.open("bomb.bin", "w", force_zip64=True) as member,
    ):
        for _ in range(uncompressed // len(block)):
            member.write(block)
    return path


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    archive = zip_bomb(tmp_path / "bomb.zip", 300 << 20)
    assert archive.stat().st_size < 1 << 20  # under 1 MB on disk, 300 MB inside
    with pytest.raises(DatasetError) as raised:
        extract_zip(archive, tmp_path / "out")
    message = str(raised.value)
    assert (
        message.startswith(f"{archive}: expands to {300 << 20} bytes, over the limit of")
        and "100x" in message
    )
    assert "\n" not in message
    assert not (tmp_path / "out").exists()  # the folder it created is gone, nothing was written


def test_the_size_limit_holds_even_when_the_header_lies(tmp_path):
    """A member whose header declares 1 kB but holds 50 MB: extraction stops, far below the true size."""
    archive = zip_bomb(tmp_path / "liar.zip", 50 << 20)
    data = bytearray(archive.read_bytes())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("bomb.bin")
    true_size = (info.file_size).to_bytes(8, "little")
    assert data.count(true_size) >= 1  # zip64 extra fields hold the sizes: rewrite every copy
    data = data.replace(true_size, (1000).to_bytes(8, "little"))
    archive.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=rf"{re.escape(str(archive))}: ") as raised:
        extract_zip(archive, tmp_path / "out", ZipLimits(max_bytes=10 << 20))
    assert "\n" not in str(raised.value)
    assert sum(p.stat().st_size for p in files_under(tmp_path / "out")) <= 10 << 20


def test_the_member_count_and_size_limits_name_the_limit(tmp_path):
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as bundle:
        for number in range(101):
            bundle.writestr(f"clips/{number}.txt", "x")
    with pytest.raises(DatasetError, match=r"many.zip: 101 members exceed the limit of 100 \(max_members\)"):
        extract_zip(many, tmp_path / "out", ZipLimits(max_members=100))
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w") as bundle:  # stored, not compressed: no ratio to blame
        bundle.writestr("a.bin", bytes(3 << 20))
    with pytest.raises(
        DatasetError, match=r"big.zip: expands to 3145728 bytes, over the limit of 2097152 bytes"
    ):
        extract_zip(big, tmp_path / "out", ZipLimits(max_bytes=2 << 20))
    extract_zip(many, tmp_path / "fine")  # default limits: an ordinary archive extracts
    assert len(files_under(tmp_path / "fine")) == 101


def symlink_member(name: str, target: str) -> tuple[zipfile.ZipInfo, str]:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../../outside.txt", "points outside the archive root"),
        ("/tmp/absolute.txt", "points outside the archive root"),
        ("data/../../outside.txt", "points outside the archive root"),
        ("data/./../../outside.txt", "points outside the archive root"),
        (symlink_member("data/link", "/etc/passwd"), "is a symbolic link; refused"),
        (symlink_member("data/up", "../../.."), "is a symbolic link; refused"),
    ],
)
def test_members_leaving_the_target_are_refused(tmp_path, member, reason):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data/ok.txt", "fine")
        if isinstance(member, tuple):
            bundle.writestr(*member)
        else:
            bundle.writestr(member, "escaped")
    with pytest.raises(DatasetError, match=reason) as raised:
        extract_zip(archive, tmp_path / "a" / "b" / "out")
    assert str(raised.value).startswith(f"{archive}: member ")
    assert not (tmp_path / "a" / "b" / "out").exists()  # refused up front: not even the good member
    assert not (tmp_path / "a" / "outside.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_a_truncated_archive_is_one_clear_error(tmp_path):
    archive = zip_bomb(tmp_path / "cut.zip", 2 << 20)
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(DatasetError, match=r"cut.zip: not a valid zip archive"):
        extract_zip(archive, tmp_path / "out")


def test_only_http_urls_are_downloaded(tmp_path):
    with pytest.raises(
        DatasetError, match=r"ftp://reader:\*\*\*@127.0.0.1/x.zip: only http\(s\) URLs"
    ) as raised:
        download(f"ftp://reader:{SECRET}@127.0.0.1/x.zip", tmp_path / "x.zip", None)
    assert SECRET not in str(raised.value)


def test_a_partial_file_that_is_already_whole_is_fetched_again(tmp_path, drip_server):
    """A run killed between the last byte and the rename leaves a whole .part: the server answers its resume
    with 416, and the download starts over instead of failing every attempt."""
    import hashlib

    (tmp_path / "x.bin.part").write_bytes(b"hello")
    download(f"{drip_server}/range", tmp_path / "x.bin", hashlib.sha256(b"hello").hexdigest(), backoff_s=0)
    assert (tmp_path / "x.bin").read_bytes() == b"hello" and not (tmp_path / "x.bin.part").exists()


def test_a_member_that_clashes_with_another_is_one_clear_error(tmp_path):
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("data", "a file")
        bundle.writestr("data/clip.wav", "a file under a file")
    with pytest.raises(DatasetError, match=r"clash.zip: cannot extract into .*out: "):
        extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
