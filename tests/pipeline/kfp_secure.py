"""A secured, multi-user Kubeflow on 127.0.0.1 for the auth tests: the loopback KFP API (kfp_loopback) behind TLS
with a throwaway CA made here, an auth check like the platform's auth proxy (a bearer token or the login cookie,
else 401) and KFP's namespace authorization (a namespace the credentials may not use: 403).

Namespaces are followed as the KFP v2beta1 API carries them: `namespace` in the query of the pipeline and
experiment lists and of the upload, in the body of a new experiment; a pipeline version, a run and a recurring
run belong to the namespace of their pipeline or experiment.
"""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kfp_loopback import API, LoopbackKfp, Request, start

COOKIE_NAME = "authservice_session"


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the server's certificate (what --ca-cert must name)
    other_ca: Path  # an unrelated CA: trusting it must not let the server's certificate through
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(folder: Path) -> Pki:
    """A throwaway CA, a server certificate it signs for 127.0.0.1 / localhost, and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _ca("aed test CA")
    _, other_cert = _ca("aed unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(folder / "ca.pem", folder / "other-ca.pem", folder / "server.pem", folder / "server.key")
    pki.ca.write_bytes(_pem(ca_cert))
    pki.other_ca.write_bytes(_pem(other_cert))
    pki.server_cert.write_bytes(_pem(server))
    pki.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pki


@dataclass
class SecuredKfp(LoopbackKfp):
    token: str = ""
    session: str = ""  # the value of the login cookie COOKIE_NAME
    allowed: frozenset[str] = frozenset()  # the namespaces these credentials may use
    refused: list[Request] = field(default_factory=list)  # requests answered 401 / 403
    owner: dict[str, str] = field(default_factory=dict)  # pipeline or experiment id -> its namespace

    def handle(self, request: Request) -> tuple[int, dict]:
        if not self._authenticated(request):
            self.refused.append(request)
            return 401, {"code": 16, "message": "Unauthorized: no valid bearer token or session cookie"}
        route = request.path.removeprefix(API)
        if request.method == "GET" and route == "/healthz":
            self.requests.append(request)
            return 200, {"multi_user": True}
        namespace = self._namespace(request, route)
        if namespace == "" and route == "/experiments":
            self.refused.append(request)
            return 400, {
                "code": 3,
                "message": "Invalid input error: in multi-user mode a namespace is required",
            }
        if namespace and namespace not in self.allowed:
            self.refused.append(request)
            return 403, {"code": 7, "message": f"PermissionDenied: may not access namespace {namespace}"}
        status, payload = super().handle(request)
        if status == 200 and request.method == "POST" and route in ("/experiments", "/pipelines/upload"):
            self.owner[payload.get("experiment_id") or payload["pipeline_id"]] = namespace or ""
        if status == 200 and request.method == "GET" and route in ("/experiments", "/pipelines"):
            key = route.strip("/")
            kept = [item for item in payload.get(key, []) if self.owner.get(_id(item)) == (namespace or "")]
            payload = {key: kept, "total_size": len(kept)} if kept else {}
        return status, payload

    def _authenticated(self, request: Request) -> bool:
        if self.token and header(request, "Authorization") == f"Bearer {self.token}":
            return True
        cookies = [part.strip() for part in header(request, "Cookie").split(";")]
        return bool(self.session) and f"{COOKIE_NAME}={self.session}" in cookies

    def _namespace(self, request: Request, route: str) -> str | None:
        """The namespace a request acts in ('' when it names none; None when it has none)."""
        listing = request.method == "GET" and route in ("/experiments", "/pipelines")
        if listing or route == "/pipelines/upload":
            return request.query.get("namespace", [""])[0]
        if request.method == "POST" and route == "/experiments":
            return request.json().get("namespace") or ""
        if route == "/pipelines/upload_version":
            return self.owner.get(request.query.get("pipelineid", [""])[0])
        if route.startswith("/pipelines/") and route.endswith("/versions"):
            return self.owner.get(route.split("/")[2])
        if request.method == "POST" and route in ("/runs", "/recurringruns"):
            return self.owner.get(request.json().get("experiment_id", ""))
        return None


def header(request: Request, name: str) -> str:
    """A request header by its case-insensitive name (urllib and urllib3 spell them differently)."""
    return next((value for key, value in request.headers.items() if key.lower() == name.lower()), "")


def _id(item: dict) -> str:
    return item.get("experiment_id") or item.get("pipeline_id") or ""


@contextmanager
def serve(state: SecuredKfp, pki: Pki) -> Iterator[SecuredKfp]:
    """The server on an https:// loopback URL (state.url) for the duration of the block."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.server_cert, pki.server_key)
    server, thread = start(state, tls)
    try:
        yield state
    finally:
        _stop(server, thread)


def _stop(server: ThreadingHTTPServer, thread: threading.Thread) -> None:
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
