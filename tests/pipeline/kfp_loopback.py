"""A tiny stand-in for the Kubeflow Pipelines v2beta1 REST API on 127.0.0.1, recording what kfp.Client sends.

It implements only the calls `aed pipeline submit|schedule` makes and answers them from in-memory state, so the
tests can check paths, methods, query strings, the uploaded pipeline spec and the run bodies.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def uploaded_file(self) -> bytes:
        """The 'uploadfile' part of a multipart/form-data body."""
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {self.content_type}\r\n\r\n".encode() + self.body
        )
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "uploadfile":
                return part.get_payload(decode=True)
        raise AssertionError("no uploadfile part in the request")


@dataclass
class LoopbackKfp:
    requests: list[Request] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, list[dict]] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: list[dict] = field(default_factory=list)
    recurring_runs: list[dict] = field(default_factory=list)
    url: str = ""

    def calls(self, method: str | None = None, path_prefix: str = "") -> list[Request]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and r.path.startswith(path_prefix)
        ]

    # -- request handling -------------------------------------------------------------------------------------
    def handle(self, request: Request) -> tuple[int, dict]:
        self.requests.append(request)
        path, method = request.path, request.method
        if not path.startswith(API):
            return 404, {"error": f"unknown path {path}"}
        route = path[len(API) :]
        if method == "GET" and route == "/healthz":
            return 200, {"multi_user": False}
        if method == "GET" and route == "/pipelines":
            name = _filter_value(request.query)
            found = [p for p in self.pipelines.values() if p["display_name"] == name]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if method == "POST" and route == "/pipelines/upload":
            return self._upload(request, new_pipeline=True)
        if method == "POST" and route == "/pipelines/upload_version":
            return self._upload(request, new_pipeline=False)
        if method == "GET" and route.startswith("/pipelines/") and route.endswith("/versions"):
            pipeline_id = route.split("/")[2]
            name = _filter_value(request.query)
            found = [
                v for v in self.versions.get(pipeline_id, []) if name is None or v["display_name"] == name
            ]
            return 200, {"pipeline_versions": found, "total_size": len(found)} if found else {}
        if method == "GET" and route == "/experiments":
            name = _filter_value(request.query)
            found = [e for e in self.experiments.values() if e["display_name"] == name]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if method == "POST" and route == "/experiments":
            body = request.json()
            experiment = {
                "experiment_id": f"exp-{len(self.experiments) + 1}",
                "display_name": body["display_name"],
            }
            self.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if method == "POST" and route == "/runs":
            run = {**request.json(), "run_id": f"run-{len(self.runs) + 1}"}
            self.runs.append(run)
            return 200, run
        if method == "POST" and route == "/recurringruns":
            job = {**request.json(), "recurring_run_id": f"job-{len(self.recurring_runs) + 1}"}
            self.recurring_runs.append(job)
            return 200, job
        return 404, {"error": f"no route for {method} {path}"}

    def _upload(self, request: Request, new_pipeline: bool) -> tuple[int, dict]:
        spec = request.uploaded_file()
        name = request.query.get("name", [""])[0]
        if new_pipeline:
            pipeline_id = f"pl-{len(self.pipelines) + 1}"
            self.pipelines[pipeline_id] = {"pipeline_id": pipeline_id, "display_name": name}
            version_name = name
        else:
            pipeline_id = request.query.get("pipelineid", [""])[0]
            if pipeline_id not in self.pipelines:
                return 404, {"error": f"pipeline {pipeline_id} not found"}
            version_name = name
        version = {
            "pipeline_id": pipeline_id,
            "pipeline_version_id": f"{pipeline_id}-v{len(self.versions.get(pipeline_id, [])) + 1}",
            "display_name": version_name,
            "spec": spec.decode(),
        }
        self.versions.setdefault(pipeline_id, []).append(version)
        public = {k: v for k, v in version.items() if k != "spec"}
        return 200, self.pipelines[pipeline_id] if new_pipeline else public


def _filter_value(query: dict[str, list[str]]) -> str | None:
    raw = query.get("filter", [""])[0]
    if not raw:
        return None
    predicates = json.loads(raw).get("predicates", [])
    return predicates[0].get("string_value", predicates[0].get("stringValue")) if predicates else None


def start(
    state: LoopbackKfp, tls: ssl.SSLContext | None = None
) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                parts.path,
                parse_qs(parts.query),
                self.rfile.read(length) if length else b"",
                self.headers.get("Content-Type", ""),
                dict(self.headers.items()),
            )
            status, payload = state.handle(request)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if (
        tls is not None
    ):  # https: the handshake happens on accept, a client refusing the certificate never gets in
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
