"""Find the `stedgeai` executable: explicit path, then $STEDGEAI_CORE_DIR/Utilities/<os>/, then PATH."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

from aed.stedgeai.errors import StedgeaiNotFound

_OS_DIR = {"Linux": "linux", "Windows": "windows", "Darwin": "mac"}


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_stedgeai(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    """The tool's path, or None when it is not installed. An explicit path that does not work is an error."""
    environ = dict(os.environ) if environ is None else environ
    if explicit is not None:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / "stedgeai"
        if not _executable(path):
            raise StedgeaiNotFound(f"{path}: configured stedgeai is not an executable file")
        return path
    core_dir = environ.get("STEDGEAI_CORE_DIR", "").strip()
    if core_dir:
        os_dir = _OS_DIR.get(platform.system(), "linux")
        for name in ("stedgeai", "stedgeai.exe"):
            candidate = Path(core_dir).expanduser() / "Utilities" / os_dir / name
            if _executable(candidate):
                return candidate
    found = shutil.which("stedgeai", path=environ.get("PATH"))
    return Path(found) if found else None
