"""Parsers for `network_c_info.json` (schema 2.0) and the text reports of analyze / generate / validate.

Missing keys and nulls are tolerated (N6 reports have null kernel/toolchain sizes and macc 0 on every node) and
recorded; only the figures the pipeline cannot do without (`memory_footprint.weights` / `.activations`) are
required. Text numbers use ',' as the thousands separator; the N6 'kB' / 'MB' figures are KiB / MiB.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from aed.stedgeai.errors import StedgeaiReportError
from aed.stedgeai.runner import parse_version

_UNITS = {"B": 1, "kB": 1024, "KiB": 1024, "MB": 1024**2, "MiB": 1024**2}


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def parse_address(value: Any) -> int | None:
    """Pool addresses are ints, decimal strings, '0x' hex strings, or symbols ('NULL', 'g_network_weights_array')."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return int(text, 16)
        if re.fullmatch(r"\d+", text):
            return int(text)
    return None


def _num(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def parse_c_info(path: Path) -> dict[str, Any]:
    path = Path(path)
    data = _load_json_report(path)
    footprint = _memory_footprint(data, path)
    environment = data.get("environment") or {}
    tool = ((environment.get("tools")) or [{}])[0] or {}
    graph = (data.get("graphs") or [{}])[0] or {}
    result: dict[str, Any] = {
        "source": "stedgeai",
        "file": str(path),
        "json_schema_version": data.get("json_schema_version"),
        "tool_name": tool.get("name"),
        "tool_version": tool.get("version"),
        "arguments": tool.get("arguments"),
        "series": footprint.get("series"),
        "memory_footprint": footprint,
        **_footprint_figures(footprint),
        **_node_figures(graph),
        **_pool_figures(data.get("memory_pools") or []),
        "network_signature": environment.get("network_signature"),
        "generated_files": [
            f.get("name") for f in (environment.get("generated_model") or {}).get("model_files") or []
        ],
    }
    if isinstance(graph.get("exec_time"), dict):
        result["exec_time"] = graph["exec_time"]
    if isinstance(data.get("validation"), dict):
        result["validation"] = data["validation"]
    return result


def _load_json_report(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise StedgeaiReportError(f"{path}: report not found") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StedgeaiReportError(f"{path}: not a JSON report ({error})") from error
    if not isinstance(data, dict):
        raise StedgeaiReportError(f"{path}: expected a JSON object at the top level")
    return data


def _memory_footprint(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """`memory_footprint`, with the two figures the pipeline cannot do without checked."""
    footprint = data.get("memory_footprint")
    if not isinstance(footprint, dict):
        raise StedgeaiReportError(f"{path}: missing key 'memory_footprint'")
    for key in ("weights", "activations"):
        if not isinstance(footprint.get(key), int):
            raise StedgeaiReportError(f"{path}: missing or non-integer key 'memory_footprint.{key}'")
    return footprint


def _footprint_figures(footprint: dict[str, Any]) -> dict[str, Any]:
    """Sizes, and ROM / RAM by the Developer Cloud client's formulas (each number stated with its
    formula); a null size counts 0 and is listed in `null_fields`."""
    io = footprint.get("io") or []
    io_bytes = sum(_num(v) for v in io) if isinstance(io, list) else _num(io)
    kernel_flash, kernel_ram = _num(footprint.get("kernel_flash")), _num(footprint.get("kernel_ram"))
    toolchain_flash = _num(footprint.get("toolchain_flash"))
    toolchain_ram = footprint.get("toolchain_ram")
    toolchain_ram = _num(footprint.get("extra_ram")) if toolchain_ram is None else _num(toolchain_ram)
    return {
        "null_fields": sorted(key for key, value in footprint.items() if value is None),
        "weights_bytes": footprint["weights"],
        "activations_bytes": footprint["activations"],
        "io_bytes": io_bytes,
        "rom_bytes": footprint["weights"] + kernel_flash + toolchain_flash,
        "rom_formula": "weights + kernel_flash + toolchain_flash",
        "ram_bytes": footprint["activations"] + io_bytes + kernel_ram + toolchain_ram,
        "ram_formula": "activations + sum(io) + kernel_ram + toolchain_ram",
    }


def _node_figures(graph: dict[str, Any]) -> dict[str, Any]:
    nodes = graph.get("nodes") or []
    mappings: dict[str, int] = {}
    for node in nodes:
        mapping = str(node.get("mapping") or "unknown")
        mappings[mapping] = mappings.get(mapping, 0) + 1
    macc_nodes = sum(_num(node.get("macc")) for node in nodes)
    # On the N6 every node has macc 0 (work sits in NPU epochs): take MACC from the text report instead.
    return {"macc": macc_nodes if macc_nodes > 0 else None, "node_mappings": mappings}


def _pool_figures(memory_pools: list[Any]) -> dict[str, Any]:
    pools = [_pool(pool) for pool in memory_pools if isinstance(pool, dict)]
    ram = [p for p in pools if p["counts_as_ram"]]
    return {
        "memory_pools": pools,
        "internal_ram_bytes": sum(p["used_size_bytes"] for p in ram if not p["external"]),
        "external_ram_bytes": sum(p["used_size_bytes"] for p in ram if p["external"]),
    }


def _pool(pool: dict[str, Any]) -> dict[str, Any]:
    address = parse_address(pool.get("address"))
    name = str(pool.get("name") or "")
    size = pool.get("size_bytes")
    virtual = bool(pool.get("virtual"))
    return {
        "name": name,
        "address": address,
        "address_raw": pool.get("address"),
        "size_bytes": size,
        "used_size_bytes": _num(pool.get("used_size_bytes")),
        "rights": pool.get("rights"),
        "virtual": pool.get("virtual"),
        # Internal vs external RAM, as ST's cloud client decides it.
        "counts_as_ram": isinstance(size, int) and size >= 0 and not virtual and not pool.get("subpools")
        and pool.get("rights") != "ACC_READ",
        "external": "EXTERNAL" in name.upper() or (address is not None and address >= 0x60000000),
    }  # fmt: skip


# -- text reports ---------------------------------------------------------------------------------------------

_SUMMARY = {
    "macc": re.compile(r"^macc\s*:\s*([\d,]+)", re.M),
    "weights_bytes": re.compile(r"^weights \(ro\)\s*:\s*([\d,]+) B", re.M),
    "activations_bytes": re.compile(r"^activations \(rw\)\s*:\s*([\d,]+) B", re.M),
    "ram_total_bytes": re.compile(r"^ram \(total\)\s*:\s*([\d,]+) B", re.M),
}
_MODEL_C = re.compile(
    r"^model/c-model: macc=([\d,]+|--)/([\d,]+|--).*?weights=([\d,]+|--)/([\d,]+|--).*?"
    r"activations=([\d,]+|--)/([\d,]+|--).*?io=([\d,]+|--)/([\d,]+|--)",
    re.M,
)
_MODEL_N6 = re.compile(
    r"^model: macc=([\d,]+|--) weights=([\d,]+|--) activations=([\d,]+|--) io=([\d,]+|--)", re.M
)
_SECTION = re.compile(r"^\s*(RT total\*\*|weights|activations|states|io|TOTAL|lib \(toolchain\)\*)\s+"
                      r"([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s*$", re.M)  # fmt: skip
_FLASH_RAM = re.compile(r"^\s*(RT total|TOTAL)\s+([\d,]+)(?:\s+[\d.]+%)?\s+([\d,]+)(?:\s+[\d.]+%)?\s*$", re.M)
_POOL = re.compile(
    r"^\s*(\w+)\s+\[(0x[0-9A-Fa-f]+) - (0x[0-9A-Fa-f]+)\]:\s+([\d.]+)\s+(B|kB|MB)\s+/\s+([\d.]+)\s+(B|kB|MB).*?"
    r"weights:\s+([\d.]+)\s+(B|kB|MB).*?activations:\s+([\d.]+)\s+(B|kB|MB)",
    re.M,
)
_DURATION = re.compile(r"duration\s*:\s*([\d.]+) ms by sample \(([\d.]+)/([\d.]+)/([\d.]+)\)")
_EVAL_ROW = re.compile(
    r"^((?:HOST|TARGET|[A-Za-z-]+)?\s*c-model #\d+|original model #\d+|X-cross #\d+)\s+(n\.a\.|[\d.]+%?)\s+"
    r"([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s+([-\d.e]+)\s+(.*?)\s*$",
    re.M,
)
_EPOCHS = {
    "total": re.compile(r"^Total number of epochs\s+(\d+)", re.M),
    "sw": re.compile(r"^>> pure software \(SW\) epochs\s+(\d+)", re.M),
    "hybrid": re.compile(r"^>> hybrid epochs.*?\s(\d+)\s*$", re.M),
    "hw": re.compile(r"^>> pure hardware \(HW or EC\) epochs\s+(\d+)", re.M),
}


def _bytes(value: str, unit: str) -> int:
    return round(float(value) * _UNITS[unit])


def _opt_int(text: str) -> int | None:
    return None if text == "--" else _int(text)


def parse_text_report(source: Path | str) -> dict[str, Any]:
    """Figures from a network_{analyze,generate,validate}_report.txt (a path or the text itself).

    Each part of the report adds its keys in the order below; a part the report lacks adds none."""
    text, label = _report_text(source)
    result: dict[str, Any] = {"source": "stedgeai", "tool_version": parse_version(text.split("\n", 1)[0])}
    parameters = re.search(r"^Parameters\s*:\s*(.+)$", text, re.M)
    if parameters:
        result["parameters"] = parameters.group(1).strip()
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        if match:
            result[key] = _int(match.group(1))
    _add_model_lines(result, text)
    _add_memory_sections(result, text)
    compiler = re.search(r"^Compiler version:\s*(\S+)", text, re.M)
    if compiler:
        result["neural_art_compiler_version"] = compiler.group(1)
    _add_text_pools(result, text)
    epochs = {key: int(m.group(1)) for key, pattern in _EPOCHS.items() if (m := pattern.search(text))}
    if epochs:
        result["epochs"] = epochs
    match = _DURATION.search(text)
    if match:
        mean, low, high, std = (float(v) for v in match.groups())
        result["duration_ms"] = {"mean": mean, "min": low, "max": high, "std": std}
    rows = [_evaluation_row(m) for m in _EVAL_ROW.finditer(text)]
    if rows:
        result["evaluation"] = rows
    if len(result) <= 2 and result["tool_version"] is None:
        raise StedgeaiReportError(f"{label}: no ST Edge AI Core report lines found (not a stedgeai report?)")
    return result


def _report_text(source: Path | str) -> tuple[str, str]:
    """(text, how to name it in an error)."""
    if not isinstance(source, Path):
        return source, "report text"
    try:
        return source.read_text(errors="replace"), str(source)
    except FileNotFoundError as error:
        raise StedgeaiReportError(f"{source}: report not found") from error


def _add_model_lines(result: dict[str, Any], text: str) -> None:
    """The MCU `model/c-model:` line and the N6 `model:` line; either gives MACC when the summary did not."""
    match = _MODEL_C.search(text)
    if match:
        values = [_opt_int(v) for v in match.groups()]
        result["model_c_model"] = dict(zip(
            ["macc_model", "macc_c", "weights_model", "weights_c", "activations_model", "activations_c",
             "io_model", "io_c"], values, strict=True))  # fmt: skip
        result.setdefault("macc", values[1])
    match = _MODEL_N6.search(text)
    if match:
        macc, weights, activations, io = (_opt_int(v) for v in match.groups())
        # 'weights' here is the input model's parameter size, not the deployed blob (as ST Edge AI reports it).
        result["model_line"] = {
            "macc": macc,
            "weights_input_model": weights,
            "activations": activations,
            "io": io,
        }
        result.setdefault("macc", macc)


def _add_memory_sections(result: dict[str, Any], text: str) -> None:
    """The text / rodata / data / bss table and the flash / RAM summary."""
    sections = {m.group(1).rstrip("*"): [_int(v) for v in m.groups()[1:]] for m in _SECTION.finditer(text)}
    if sections:
        result["sections"] = {
            name.strip(): dict(zip(["text", "rodata", "data", "bss"], values, strict=True))
            for name, values in sections.items()
        }
    summary = {
        m.group(1): {"flash": _int(m.group(2)), "ram": _int(m.group(3))} for m in _FLASH_RAM.finditer(text)
    }
    if summary:
        result["flash_ram_summary"] = summary


def _add_text_pools(result: dict[str, Any], text: str) -> None:
    """The N6 memory pools and their total."""
    pools = []
    for m in _POOL.finditer(text):
        pools.append({
            "name": m.group(1), "start": int(m.group(2), 16), "end": int(m.group(3), 16),
            "used_bytes": _bytes(m.group(4), m.group(5)), "size_bytes": _bytes(m.group(6), m.group(7)),
            "weights_bytes": _bytes(m.group(8), m.group(9)), "activations_bytes": _bytes(m.group(10), m.group(11)),
        })  # fmt: skip
    if not pools:
        return
    result["memory_pools"] = pools
    total = re.search(r"^Total:\s+([\d.]+)\s+(B|kB|MB).*?weights:\s+([\d.]+)\s+(B|kB|MB).*?activations:\s+"
                      r"([\d.]+)\s+(B|kB|MB)", text, re.M)  # fmt: skip
    if total:
        result["pool_totals"] = {
            "used_bytes": _bytes(total.group(1), total.group(2)),
            "weights_bytes": _bytes(total.group(3), total.group(4)),
            "activations_bytes": _bytes(total.group(5), total.group(6)),
        }


def _evaluation_row(m: re.Match[str]) -> dict[str, Any]:
    acc = m.group(2)
    return {
        "row": " ".join(m.group(1).split()), "acc": None if acc == "n.a." else acc,
        **dict(zip(["rmse", "mae", "l2r", "mean", "std", "nse", "cos"], map(float, m.groups()[2:9]), strict=True)),
        "tensor": m.group(10),
    }  # fmt: skip
