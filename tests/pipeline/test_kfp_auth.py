"""`aed pipeline submit | schedule` against a secured, multi-user Kubeflow (issue 21): a loopback HTTPS server with
a throwaway CA that wants a bearer token or the login cookie (401 without) and a namespace the credentials may use
(403 for another), served to the real kfp.Client."""

from __future__ import annotations

import json
import os
import secrets
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kfp_secure import COOKIE_NAME, Pki, SecuredKfp, header, make_pki, serve

import pipelines.remote as remote
from pipelines.cli import main as aed_main

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "team-a"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secured(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> Iterator[SecuredKfp]:
    # not inside a pod: no service-account token, no pod namespace
    monkeypatch.delenv("KF_PIPELINES_SA_TOKEN_PATH", raising=False)
    monkeypatch.setattr(remote, "SA_TOKEN_PATH", Path("/nonexistent/kfp-token"), raising=False)
    monkeypatch.setattr(remote, "POD_NAMESPACE_PATH", Path("/nonexistent/namespace"), raising=False)
    state = SecuredKfp(
        token="tok-" + secrets.token_urlsafe(32),
        session="sess-" + secrets.token_urlsafe(32),
        allowed=frozenset({NAMESPACE}),
    )
    with serve(state, pki):
        yield state


@pytest.fixture
def params_file(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _aed(*args: str) -> int:
    return aed_main(["pipeline", *args])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _files(tmp_path: Path, server: SecuredKfp) -> tuple[Path, Path]:
    return (
        _write(tmp_path / "token", server.token + "\n"),
        _write(tmp_path / "cookie", f"{COOKIE_NAME}={server.session}\n"),
    )


def _base(params_file: Path, server: SecuredKfp, pki: Pki) -> list[str]:
    return ["--params", str(params_file), "--host", server.url, "--ca-cert", str(pki.ca)]


def _one_line_error(captured: pytest.CaptureResult) -> str:
    assert "Traceback" not in captured.out + captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


# -- refused ------------------------------------------------------------------------------------------------------
def test_without_credentials_the_server_answers_401_and_the_cli_says_how_to_authenticate(
    secured: SecuredKfp, params_file: Path, pki: Pki, capsys
) -> None:
    assert _aed("submit", *_base(params_file, secured, pki), "--namespace", NAMESPACE) == 2
    line = _one_line_error(capsys.readouterr())
    assert f"KFP host {secured.url} answered HTTP 401 on /apis/v2beta1/healthz" in line
    assert "pass --token-file or --cookie-file" in line
    assert [r.path for r in secured.refused] == ["/apis/v2beta1/healthz"] and not secured.requests


def test_a_wrong_token_is_refused_and_named_by_its_file(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    wrong = _write(tmp_path / "old-token", "tok-expired-" + secrets.token_urlsafe(16))
    args = _base(params_file, secured, pki)
    assert _aed("schedule", *args, "--namespace", NAMESPACE, "--token-file", str(wrong)) == 2
    line = _one_line_error(capsys.readouterr())
    assert (
        "HTTP 401" in line and f"the credentials were refused: bearer token from --token-file {wrong}" in line
    )
    assert not secured.recurring_runs


def test_a_namespace_the_token_may_not_use_is_403_and_nothing_is_created(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    token, _ = _files(tmp_path, secured)
    args = [*_base(params_file, secured, pki), "--token-file", str(token), "--namespace", "team-b"]
    for command in ("submit", "schedule"):
        assert _aed(command, *args) == 2
        line = _one_line_error(capsys.readouterr())
        assert "HTTP 403" in line and "namespace team-b" in line and "'team-b'" in line
    # the server refused (the namespace check, not the token's), and nothing was created
    assert secured.refused and all(header(r, "Authorization") for r in secured.refused)
    assert (
        not secured.pipelines and not secured.experiments and not secured.runs and not secured.recurring_runs
    )


def test_a_multi_user_host_without_namespace_is_one_line(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    token, _ = _files(tmp_path, secured)
    assert _aed("submit", *_base(params_file, secured, pki), "--token-file", str(token)) == 2
    line = _one_line_error(capsys.readouterr())
    assert f"KFP host {secured.url} is multi-user: pass --namespace NS" in line
    assert not secured.calls("POST")


# -- accepted -----------------------------------------------------------------------------------------------------
def test_token_and_namespace_upload_and_run(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    token, _ = _files(tmp_path, secured)
    args = [*_base(params_file, secured, pki), "--token-file", str(token), "--namespace", NAMESPACE]
    assert _aed("submit", *args, "--run-name", "secured") == 0
    assert "run run-1" in capsys.readouterr().out
    # the pipeline is the profile's own, the experiment lives in the namespace, the run in that experiment
    (pipeline_id,) = secured.pipelines
    assert secured.owner[pipeline_id] == NAMESPACE
    (experiment,) = secured.experiments.values()
    assert secured.owner[experiment["experiment_id"]] == NAMESPACE
    assert secured.runs[0]["experiment_id"] == experiment["experiment_id"]
    assert secured.runs[0]["display_name"] == "secured"
    # every request carried the token, and none was refused
    assert all(header(r, "Authorization") == f"Bearer {secured.token}" for r in secured.requests)
    assert not secured.refused


def test_token_and_namespace_create_a_recurring_run(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    token, _ = _files(tmp_path, secured)
    args = [*_base(params_file, secured, pki), "--token-file", str(token), "--namespace", NAMESPACE]
    assert _aed("schedule", *args, "--cron", "15 2 * * *") == 0
    assert "recurring run job-1 (15 2 * * *)" in capsys.readouterr().out
    job = secured.recurring_runs[0]
    assert job["trigger"]["cron_schedule"]["cron"] == "0 15 2 * * *"
    assert secured.owner[job["experiment_id"]] == NAMESPACE
    assert not secured.runs and not secured.refused


@pytest.mark.parametrize("form", ["pairs", "header", "cookies.txt"])
def test_the_login_cookie_is_enough(
    form: str, secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    text = {
        "pairs": f"theme=dark; {COOKIE_NAME}={secured.session}\n",
        "header": f"Cookie: {COOKIE_NAME}={secured.session}\n",
        "cookies.txt": "# Netscape HTTP Cookie File\n"
        f"#HttpOnly_127.0.0.1\tFALSE\t/\tTRUE\t0\t{COOKIE_NAME}\t{secured.session}\n",
    }[form]
    cookie = _write(tmp_path / "cookie", text)
    command = "schedule" if form == "cookies.txt" else "submit"
    args = [*_base(params_file, secured, pki), "--cookie-file", str(cookie), "--namespace", NAMESPACE]
    assert _aed(command, *args) == 0, capsys.readouterr().err
    assert len(secured.runs) + len(secured.recurring_runs) == 1 and not secured.refused
    assert all(not header(r, "Authorization") for r in secured.requests)


def test_the_namespace_defaults_to_params(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path
) -> None:
    params = yaml.safe_load(params_file.read_text())
    params["pipeline"].update(namespace=NAMESPACE, ca_cert=os.path.relpath(pki.ca, params_file.parent))
    params_file.write_text(yaml.safe_dump(params))
    token, _ = _files(tmp_path, secured)
    args = ["--params", str(params_file), "--host", secured.url, "--token-file", str(token)]
    assert _aed("submit", *args) == 0
    assert secured.owner[secured.runs[0]["experiment_id"]] == NAMESPACE


def test_inside_a_pod_the_service_account_token_and_namespace_are_used(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, monkeypatch
) -> None:
    """As kfp does: the token at $KF_PIPELINES_SA_TOKEN_PATH, else at its standard path; the pod's namespace
    on a multi-user host when none is given."""
    token, _ = _files(tmp_path, secured)
    monkeypatch.setattr(remote, "POD_NAMESPACE_PATH", _write(tmp_path / "namespace", NAMESPACE))
    monkeypatch.setenv(remote.SA_TOKEN_ENV, str(token))
    assert _aed("submit", *_base(params_file, secured, pki)) == 0
    monkeypatch.delenv(remote.SA_TOKEN_ENV)
    monkeypatch.setattr(remote, "SA_TOKEN_PATH", token)
    assert _aed("schedule", *_base(params_file, secured, pki)) == 0
    assert len(secured.runs) == 1 and len(secured.recurring_runs) == 1 and not secured.refused
    assert secured.owner[secured.runs[0]["experiment_id"]] == NAMESPACE


def test_the_service_account_token_path_is_kfps() -> None:
    from kfp import client

    assert remote.SA_TOKEN_ENV == client.KF_PIPELINES_SA_TOKEN_ENV
    assert str(remote.SA_TOKEN_PATH) == client.KF_PIPELINES_SA_TOKEN_PATH
    assert str(remote.POD_NAMESPACE_PATH) == client.Client._NAMESPACE_PATH


# -- TLS ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trust", ["default roots", "another CA"])
def test_a_certificate_from_an_unknown_ca_is_rejected_in_one_line(
    trust: str, secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    token, _ = _files(tmp_path, secured)
    args = ["--params", str(params_file), "--host", secured.url, "--token-file", str(token)]
    if trust == "another CA":
        args += ["--ca-cert", str(pki.other_ca)]
    assert _aed("submit", *args, "--namespace", NAMESPACE) == 2
    line = _one_line_error(capsys.readouterr())
    assert f"KFP host {secured.url}: its TLS certificate is not trusted" in line
    assert "--ca-cert PATH" in line
    assert not secured.requests and not secured.refused  # the token was never sent


@pytest.mark.parametrize(
    "why",
    [
        "Hostname mismatch, certificate is not valid for 'kf'.",
        "IP address mismatch, certificate is not valid for '10.0.0.9'.",
    ],
)
def test_a_certificate_for_another_name_says_so(why: str) -> None:
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    error.verify_message, error.verify_code = why, 62
    message = remote._tls_message("https://kf", error, remote.Auth())
    assert (
        message
        == f"KFP host https://kf: its TLS certificate is for another name ({why}); use the name it was issued for"
    )


def test_https_to_a_plain_http_server_says_so(kfp_server, params_file: Path, capsys) -> None:
    host = kfp_server.url.replace("http://", "https://")
    assert _aed("submit", "--params", str(params_file), "--host", host) == 2
    line = _one_line_error(capsys.readouterr())
    assert f"KFP host {host}: TLS handshake failed" in line and "try http://" in line


def test_a_login_redirect_is_one_line(kfp_server, params_file: Path, capsys) -> None:
    """An auth proxy that sends API calls to its login page: reported, not followed into HTML."""
    kfp_server.handle = lambda request: (302, {})
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url) == 2
    line = _one_line_error(capsys.readouterr())
    assert "answered HTTP 302 on /apis/v2beta1/healthz" in line and "--token-file or --cookie-file" in line


def test_a_healthz_that_is_not_the_api_is_one_line(kfp_server, params_file: Path, capsys) -> None:
    kfp_server.handle = lambda request: (200, ["<html>login</html>"])
    assert _aed("submit", "--params", str(params_file), "--host", kfp_server.url) == 2
    assert "something else than the KFP API's JSON" in _one_line_error(capsys.readouterr())


# -- files --------------------------------------------------------------------------------------------------------
def _bad_files(tmp_path: Path, server: SecuredKfp) -> dict[str, tuple[list[str], Path, str]]:
    """{case: (options, the file the error must name, what it must say)}."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    missing = tmp_path / "missing"
    empty = _write(tmp_path / "empty", "\n")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00" + server.token.encode())
    huge = _write(tmp_path / "huge", "x" * (remote.MAX_SECRET_BYTES + 1))
    spaced = _write(tmp_path / "spaced", f"{server.token} {server.token}\n")
    no_pairs = _write(tmp_path / "no-pairs", server.session)
    not_pem = _write(tmp_path / "not-pem", server.token)
    return {
        "token missing": (["--token-file", str(missing)], missing, "cannot read it (No such file"),
        "token folder": (["--token-file", str(folder)], folder, "cannot read it (Is a directory"),
        "token empty": (["--token-file", str(empty)], empty, "the file is empty"),
        "token binary": (["--token-file", str(binary)], binary, "not a text file"),
        "token huge": (["--token-file", str(huge)], huge, "larger than 64 KiB"),
        "token two words": (["--token-file", str(spaced)], spaced, "expected one token"),
        "cookie missing": (["--cookie-file", str(missing)], missing, "cannot read it (No such file"),
        "cookie empty": (["--cookie-file", str(empty)], empty, "the file is empty"),
        "cookie without name": (["--cookie-file", str(no_pairs)], no_pairs, "expected cookies as name=value"),
        "ca missing": (["--ca-cert", str(missing)], missing, "cannot read it (No such file"),
        "ca folder": (["--ca-cert", str(folder)], folder, "cannot read it (Is a directory"),
        "ca not pem": (["--ca-cert", str(not_pem)], not_pem, "not a PEM certificate bundle"),
        "ca binary": (["--ca-cert", str(binary)], binary, "not a text file"),
    }


def test_bad_token_cookie_and_ca_files_are_one_line_naming_the_file(
    secured: SecuredKfp, params_file: Path, tmp_path: Path, capsys
) -> None:
    cases = _bad_files(tmp_path, secured)
    for case, (options, path, problem) in cases.items():
        for command in ("submit", "schedule"):
            args = ["--params", str(params_file), "--host", secured.url, "--namespace", NAMESPACE, *options]
            assert _aed(command, *args) == 2, case
            captured = capsys.readouterr()
            line = _one_line_error(captured)
            assert f"{options[0]} {path}: {problem}" in line, (case, line)
            assert secured.token not in captured.err and secured.session not in captured.err, case
    assert not secured.requests and not secured.refused  # nothing was sent


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_token_file_is_one_line(secured: SecuredKfp, params_file: Path, tmp_path: Path, capsys):
    token, _ = _files(tmp_path, secured)
    token.chmod(0)
    args = ["--params", str(params_file), "--host", secured.url, "--token-file", str(token)]
    assert _aed("submit", *args) == 2
    assert f"--token-file {token}: cannot read it (Permission denied)" in _one_line_error(capsys.readouterr())


def test_bad_pod_token_params_ca_and_namespace_are_one_line(
    secured: SecuredKfp, params_file: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    base = ["--params", str(params_file), "--host", secured.url]
    monkeypatch.setenv(remote.SA_TOKEN_ENV, str(tmp_path / "no-token"))
    assert _aed("submit", *base, "--namespace", NAMESPACE) == 2
    expected = f"{remote.SA_TOKEN_ENV} {tmp_path / 'no-token'}: cannot read it (No such file"
    assert expected in _one_line_error(capsys.readouterr())
    monkeypatch.delenv(remote.SA_TOKEN_ENV)

    assert _aed("submit", *base, "--set", "pipeline.ca_cert=certs/ca.pem") == 2
    expected = f"pipeline.ca_cert {params_file.parent / 'certs/ca.pem'}: cannot read it (No such file"
    assert expected in _one_line_error(capsys.readouterr())

    for option in (["--namespace", "Team_A"], ["--set", "pipeline.namespace=-a"]):
        assert _aed("submit", *base, *option) == 2
        assert "not a Kubernetes namespace" in _one_line_error(capsys.readouterr())
    assert not secured.requests and not secured.refused


# -- dry run ------------------------------------------------------------------------------------------------------
def test_dry_run_prints_what_would_be_sent_and_contacts_nothing(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys
) -> None:
    from pipelines.aed_pipeline import PIPELINE_NAME

    token, cookie = _files(tmp_path, secured)
    args = [*_base(params_file, secured, pki), "--namespace", NAMESPACE, "--dry-run"]
    auth = ["--token-file", str(token), "--cookie-file", str(cookie)]
    assert _aed("schedule", *args, *auth, "--cron", "0 4 * * 1", "--experiment", "nightly") == 0
    out = capsys.readouterr().out
    compiled = tmp_path / "compiled.yaml"
    assert _aed("compile", "--params", str(params_file), "--out", str(compiled)) == 0
    version = remote.version_name(compiled, PIPELINE_NAME)
    for expected in (
        f"dry run: nothing sent to {secured.url}",
        f"host:          {secured.url}",
        f"namespace:     {NAMESPACE}",
        "experiment:    nightly",
        f"pipeline:      {PIPELINE_NAME}, version {version}",
        "cron:          0 4 * * 1 (sent as 0 0 4 * * 1)",
        f"credentials:   bearer token from --token-file {token}; cookie {COOKIE_NAME} from --cookie-file {cookie}",
        f"TLS trust:     {pki.ca}",
    ):
        assert expected in out, (expected, out)
    assert secured.token not in out and secured.session not in out
    assert not secured.requests and not secured.refused  # the host was not contacted


def test_dry_run_needs_no_reachable_host(params_file: Path, capsys) -> None:
    args = ["--params", str(params_file), "--host", "https://127.0.0.1:9", "--dry-run"]
    assert _aed("submit", *args, "--pipeline-root", "s3://no-such-bucket/kfp") == 0
    out = capsys.readouterr().out
    assert "namespace:     (none" in out and "pipeline root: s3://no-such-bucket/kfp" in out
    assert "cron:" not in out


# -- the token never shows --------------------------------------------------------------------------------------
def test_the_token_and_cookie_never_appear_in_any_output(
    secured: SecuredKfp, params_file: Path, pki: Pki, tmp_path: Path, capsys, caplog
) -> None:
    """Every output of successful, refused and dry runs, the logs, the uploaded YAML, the run arguments, the
    compiled YAML and a whole `aed -v` process: neither secret anywhere."""
    token, cookie = _files(tmp_path, secured)
    base = _base(params_file, secured, pki)
    auth = ["--token-file", str(token), "--cookie-file", str(cookie)]
    outputs = []
    runs = [
        ["submit", *base, *auth, "--namespace", NAMESPACE],
        ["schedule", *base, *auth, "--namespace", NAMESPACE],
        ["submit", *base, *auth, "--namespace", "team-b"],  # 403
        ["submit", *base, *auth, "--namespace", NAMESPACE, "--dry-run"],
        ["submit", *base, "--token-file", str(_write(tmp_path / "two", f"{secured.token} x"))],  # bad file
    ]
    for args in runs:
        _aed(*args)
        captured = capsys.readouterr()
        outputs += [captured.out, captured.err]
    outputs.append(caplog.text)
    outputs += [version["spec"] for versions in secured.versions.values() for version in versions]
    outputs += [json.dumps(run) for run in secured.runs + secured.recurring_runs]
    compiled = tmp_path / "compiled.yaml"
    _aed("compile", "--params", str(params_file), "--out", str(compiled))
    outputs.append(compiled.read_text())
    # a whole process with debug logging (kfp, kfp_server_api and urllib3 log at DEBUG)
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "-v",
            "pipeline",
            "schedule",
            *base,
            *auth,
            "--namespace",
            NAMESPACE,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    outputs += [process.stdout, process.stderr]
    assert len(secured.recurring_runs) == 2 and len(secured.runs) == 1

    everything = "\n".join(outputs)
    assert secured.token not in everything
    assert secured.session not in everything
    assert "Bearer tok-" not in everything
    # the server did get them (the test would prove nothing otherwise)
    assert any(secured.token in header(r, "Authorization") for r in secured.requests)


def test_registered_secrets_are_masked_but_a_secret_files_location_is_not() -> None:
    from aed.redact import MASK, redact, register_secret

    secret = "tok-" + secrets.token_urlsafe(16)
    register_secret(secret)
    assert redact(f"refused {secret} and Bearer {secret}") == f"refused {MASK} and Bearer {MASK}"
    environ = {
        "KF_PIPELINES_SA_TOKEN_PATH": "/var/run/secrets/kubeflow/pipelines/token",
        "MY_TOKEN": "abcdefgh",
    }
    message = "KF_PIPELINES_SA_TOKEN_PATH /var/run/secrets/kubeflow/pipelines/token: cannot read it; abcdefgh"
    assert redact(message, environ) == message.replace("abcdefgh", MASK)
