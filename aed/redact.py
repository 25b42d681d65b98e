"""Keep secrets out of messages, logs and records.

Credentials reach us in URLs (`https://user:password@host/...`, `s3://KEY:SECRET@bucket`), in query strings
(pre-signed `X-Amz-Signature=...`, `token=...`) and in the environment (`AWS_SECRET_ACCESS_KEY`, ...). Every
message that may quote a user's input passes through `redact` before it is printed or written.
"""

from __future__ import annotations

import os
import re

MASK = "***"

# scheme://user:password@host -> scheme://user:***@host ; scheme://token@host -> scheme://***@host. Greedy up to
# the last '@' of the word, so a password holding '@' or '/' is masked whole (over-masking is the safe side).
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^\s'\"]+)@")
# user:password@host without a scheme (an endpoint written as host:port with credentials in front)
_BARE_USERINFO = re.compile(r"(?<![\w/:])(?P<user>[\w.+-]+):(?!//)(?P<password>[^\s'\"]+)@(?=[\w.-])")
# name=value pairs (query strings, key=value settings) whose name says they are secret
_SECRET_PARAMETER = re.compile(
    r"(?i)(?P<name>[a-z0-9_-]*(?:password|passwd|secret|token|signature|credential|api[_-]?key|access[_-]?key)"
    r"[a-z0-9_-]*)(?P<sep>=)(?P<value>[^\s&'\",;]+)"
)
_SECRET_ENV_NAME = re.compile(r"(?i)(password|passwd|secret|token|credential|api_?key|session)")
# ...but a variable naming where a secret is (KF_PIPELINES_SA_TOKEN_PATH, AWS_SHARED_CREDENTIALS_FILE) holds
# a path, which an error about that file must be able to name
_LOCATION_ENV_NAME = re.compile(r"(?i)_(path|file)$")
_MIN_ENV_SECRET = 6  # shorter values are too likely to match ordinary text
# Secrets read from files (a KFP bearer token, a session cookie): masked in every later message of the process.
_REGISTERED: set[str] = set()


def _mask_userinfo(match: re.Match[str]) -> str:
    user, sep, _ = match["userinfo"].partition(":")
    return f"{match['scheme']}{user}:{MASK}@" if sep else f"{match['scheme']}{MASK}@"


def secret_env_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names say they hold a secret (longest first)."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if _SECRET_ENV_NAME.search(name)
        and not _LOCATION_ENV_NAME.search(name)
        and len(value) >= _MIN_ENV_SECRET
    }
    return sorted(values, key=len, reverse=True)


def register_secret(value: str) -> None:
    """Mask `value` wherever a later message of this process quotes it (tracebacks and library logs included)."""
    if len(value) >= _MIN_ENV_SECRET:
        _REGISTERED.add(value)


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """`text` with URL passwords, secret-named parameters, secret environment values and registered secrets
    masked."""
    text = _URL_USERINFO.sub(_mask_userinfo, str(text))
    text = _BARE_USERINFO.sub(lambda m: f"{m['user']}:{MASK}@", text)
    text = _SECRET_PARAMETER.sub(lambda m: f"{m['name']}{m['sep']}{MASK}", text)
    for value in sorted(_REGISTERED | set(secret_env_values(environ)), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
