"""Secrets never reach a message: URL passwords, secret-named parameters, secret environment values."""

from __future__ import annotations

from aed.redact import MASK, redact


def test_url_passwords_and_tokens_are_masked() -> None:
    assert redact("GET https://alice:hunter22@example.org/a.zip failed") == (
        f"GET https://alice:{MASK}@example.org/a.zip failed"
    )
    assert redact("s3://AKIAXXXX:wJalrXUtnFEMI@bucket/x") == f"s3://AKIAXXXX:{MASK}@bucket/x"
    assert redact("http://ghp_tokenvalue@host/p") == f"http://{MASK}@host/p"


def test_secret_named_parameters_are_masked_but_ordinary_text_is_not() -> None:
    text = "https://h/x?X-Amz-Signature=abcdef123&X-Amz-Date=2026 api_key=zzz9 password=p4ss"
    out = redact(text)
    assert "abcdef123" not in out and "zzz9" not in out and "p4ss" not in out
    assert "X-Amz-Date=2026" in out
    message = "hil.verify_signature: expected true or false, got 'x'"
    assert redact(message) == message


def test_secret_environment_values_are_masked() -> None:
    environ = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value-42", "HOME": "/root-home-dir", "MY_TOKEN": "abc"}
    out = redact("endpoint refused s3cr3t-value-42 from /root-home-dir abc", environ)
    assert out == f"endpoint refused {MASK} from /root-home-dir abc"


def test_awkward_passwords_are_masked_whole() -> None:
    for secret in ("p@ss", "p/w", "a@b/c"):
        out = redact(f"fetch https://user:{secret}@host:9000/x.zip failed")
        assert secret not in out and "host:9000/x.zip" in out, out
    assert redact("endpoint user:pw1234@minio:9000 refused") == f"endpoint user:{MASK}@minio:9000 refused"


def test_ingest_never_prints_the_password_of_its_source(tmp_path, monkeypatch, capsys) -> None:
    from components.cli import main

    monkeypatch.delenv("AED_DATA_MIRROR", raising=False)
    params = tmp_path / "params.yaml"
    params.write_text(
        "ingest:\n  source: https://alice:hunter22secret@127.0.0.1:9/esc50.zip\n  sha256: null\n"
    )
    code = main(["ingest", "--params", str(params), "--no-fetch", "--raw-dir", str(tmp_path / "raw"),
                 "--manifest", str(tmp_path / "manifest.csv"), "--metrics", str(tmp_path / "ingest.json")])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2 and "does not hold the configured source" in captured.err
    assert "hunter22secret" not in captured.err + captured.out
