"""Fixtures of the stedgeai area: the real report files and a fake `stedgeai` executable."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

FAKE_TOOL = r'''#!{python}
"""Fake stedgeai for tests: checks its arguments like the real CLI and writes schema-correct outputs."""
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
mode = os.environ.get("FAKE_STEDGEAI_MODE", "ok")
Path(os.environ["FAKE_STEDGEAI_ARGS"]).open("a").write(json.dumps(args) + "\n")
if args == ["--version"]:
    if mode == "noversion":
        print("usage: something else entirely")
        sys.exit(0)
    print("ST Edge AI Core v3.0.0-20426 123672867 / ISPU 1.1.0 / MLC 1.1.0 / STM32CubeAI 10.0.0")
    sys.exit(0)
if mode == "hang":
    print("compiling...", flush=True)
    time.sleep(60)
if mode == "fail":
    for i in range(40):
        print(f"log line {{i}}")
    print("E103(CliArgumentError): unsupported layer type: Erf", file=sys.stderr)
    sys.exit(3)
if mode == "garbage":
    print("\x00\x01 ~~~ not a report ~~~")
    sys.exit(0)
command = args[0]
assert command in ("analyze", "generate", "validate"), args
opt = {{args[i]: args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "" for i in range(1, len(args)) if args[i].startswith("--")}}
for required in ("--model", "--target", "--output", "--workspace", "--name"):
    if required not in opt:
        print(f"E100: missing {{required}}", file=sys.stderr)
        sys.exit(2)
if not Path(opt["--model"]).is_file():
    print(f"E102: model not found {{opt['--model']}}", file=sys.stderr)
    sys.exit(2)
if opt["--target"] == "stm32n6" and "--st-neural-art" not in opt:
    print("E100: stm32n6 needs --st-neural-art", file=sys.stderr)
    sys.exit(2)
out = Path(opt["--output"]); out.mkdir(parents=True, exist_ok=True)
name = opt["--name"]
n6 = opt["--target"] == "stm32n6"
info = {{
    "json_schema_version": "2.0",
    "memory_footprint": {{"activations": 112200, "weights": 139176, "io": [0, 0], "series": "generic" if n6 else opt["--target"],
        "kernel_flash": None if n6 else 31940, "kernel_ram": None if n6 else 1014, "toolchain": None,
        "toolchain_flash": None if n6 else 0, "toolchain_ram": None if n6 else 0}},
    "memory_pools": [{{"id": 0, "name": "heap_overlay_pool", "address": "NULL", "size_bytes": -1, "used_size_bytes": 112200,
                      "rights": "ACC_WRITE", "virtual": False, "subpools": [], "buffers": []}}],
    "buffers": [],
    "graphs": [{{"id": 0, "name": name, "nodes": [{{"id": 0, "name": "conv", "type": "Conv2D", "macc": 0 if n6 else 24000000, "mapping": "NODE_HW" if n6 else "NODE_SW"}}]}}],
    "environment": {{"tools": [{{"name": "ST.EdgeAI.Core", "version": "3.0.0-20426 123672867", "arguments": " ".join(args)}}],
                    "generated_model": {{"name": name, "model_files": [{{"name": name + ".c", "signature": "0x1"}}]}}}},
}}
if mode == "badjson":
    (out / f"{{name}}_c_info.json").write_text("{{ truncated")
elif mode == "missingkey":
    del info["memory_footprint"]["weights"]
    (out / f"{{name}}_c_info.json").write_text(json.dumps(info))
elif mode != "noreport":
    (out / f"{{name}}_c_info.json").write_text(json.dumps(info))
report = ["ST Edge AI Core v3.0.0-20426 123672867", "Parameters            : " + " ".join(args), ""]
report += ["model: macc=24,000,000 weights=139,176 activations=-- io=--"] if n6 else [
    "macc               :   24,000,000", "weights (ro)       :   139,176 B (135.91 KiB) (1 segment)",
    "activations (rw)   :   112,200 B (109.57 KiB) (1 segment) *"]
(out / f"{{name}}_{{command}}_report.txt").write_text("\n".join(report) + "\n")
if command == "generate":
    for suffix in (".c", ".h", "_data.c", "_data.h"):
        (out / f"{{name}}{{suffix}}").write_text("/* generated */\n")
print("done")
'''


@pytest.fixture(scope="session")
def fixtures_dir(shared_dir: Path) -> Path:
    """$AED_SHARED/fixtures/stedgeai, through the shared `shared_dir` fixture (fails when missing)."""
    path = shared_dir / "fixtures" / "stedgeai"
    if not path.is_dir():
        pytest.fail(f"{path}: stedgeai fixtures not found (AED_SHARED)")
    return path


@pytest.fixture()
def fake_stedgeai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake tool on PATH; FAKE_STEDGEAI_MODE picks its behaviour; its argv lands in <tmp>/fake_args.jsonl."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "stedgeai"
    tool.write_text(FAKE_TOOL.format(python=sys.executable))
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("FAKE_STEDGEAI_ARGS", str(tmp_path / "fake_args.jsonl"))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("STEDGEAI_CORE_DIR", raising=False)
    return tool
