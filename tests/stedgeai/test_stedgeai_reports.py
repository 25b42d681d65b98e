"""The parsers against every real stedgeai output file in $AED_SHARED/fixtures/stedgeai."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aed.stedgeai import StedgeaiReportError, parse_c_info, parse_text_report
from aed.stedgeai.reports import parse_address

F4_JSON = "stedgeai-3.0.0_stm32f4_conv2d-s8_network_c_info.json"
F4_TXT = "stedgeai-3.0.0_stm32f4_conv2d-s8_network_generate_report.txt"
N6_JSON = "stedgeai-3.0.0_stm32n6_mobilenetv2_network_c_info.TRIMMED.json"
N6_TXT = "stedgeai-3.0.0_stm32n6_mobilenetv2_network_generate_report.txt"
HOST_TXT = "stedgeai-2.2.0_stm32_host_network_validate_report.txt"


def test_every_fixture_parses(fixtures_dir: Path) -> None:
    files = [p for p in sorted(fixtures_dir.iterdir()) if p.suffix in (".json", ".txt")]
    assert len(files) == 5
    for path in files:
        result = parse_c_info(path) if path.suffix == ".json" else parse_text_report(path)
        assert result["source"] == "stedgeai"
        assert result["tool_version"] and result["tool_version"][0] in "23"
        json.dumps(result)


def test_f4_c_info(fixtures_dir: Path) -> None:
    info = parse_c_info(fixtures_dir / F4_JSON)
    assert info["json_schema_version"] == "2.0"
    assert info["tool_version"] == "3.0.0-20426 123672867"
    assert (info["weights_bytes"], info["activations_bytes"], info["io_bytes"]) == (16860, 36432, 0)
    assert info["macc"] == 887_889  # sum of the nodes' macc
    assert info["rom_bytes"] == 35_278  # cloud-client formula, not the report's TOTAL (33,166)
    assert info["ram_bytes"] == 37_016
    assert info["null_fields"] == []
    pools = {p["name"]: p for p in info["memory_pools"]}
    assert (
        pools["heap_overlay_pool"]["address"] is None and pools["heap_overlay_pool"]["address_raw"] == "NULL"
    )
    assert pools["weights_array"]["address_raw"] == "g_network_weights_array"


def test_f4_generate_report(fixtures_dir: Path) -> None:
    report = parse_text_report(fixtures_dir / F4_TXT)
    assert report["macc"] == 887_889
    assert (report["weights_bytes"], report["activations_bytes"], report["ram_total_bytes"]) == (
        16860,
        36432,
        36432,
    )
    assert report["model_c_model"]["macc_model"] == 983_443
    assert report["model_c_model"]["activations_model"] is None
    assert report["sections"]["lib (toolchain)"]["text"] == 2116
    assert report["sections"]["weights"]["rodata"] == 16864
    assert report["flash_ram_summary"]["RT total"] == {"flash": 16302, "ram": 584}
    assert report["flash_ram_summary"]["TOTAL"] == {"flash": 33166, "ram": 37016}


def test_n6_c_info_nulls_and_zero_macc(fixtures_dir: Path) -> None:
    info = parse_c_info(fixtures_dir / N6_JSON)
    assert info["series"] == "generic"
    assert set(info["null_fields"]) >= {"kernel_flash", "kernel_ram", "toolchain_flash", "toolchain_ram"}
    assert info["macc"] is None  # every node has macc 0: take it from the text report
    assert (info["activations_bytes"], info["weights_bytes"]) == (245_760, 212_609)
    pools = {p["name"]: p for p in info["memory_pools"]}
    assert pools["octoFlash"]["address"] == 0x71000000
    assert pools["octoFlash"]["rights"] == "ACC_READ" and not pools["octoFlash"]["counts_as_ram"]
    assert pools["hyperRAM"]["external"]
    assert not pools["cpuRAM2_npuRAM3_npuRAM4_npuRAM5_npuRAM6"]["counts_as_ram"]  # merged pool with subpools
    assert info["internal_ram_bytes"] == 245_760 and info["external_ram_bytes"] == 0
    assert info["node_mappings"] == {"NODE_NO_X": 2, "NODE_HW": 3, "NODE_SW": 1}


def test_n6_generate_report(fixtures_dir: Path) -> None:
    report = parse_text_report(fixtures_dir / N6_TXT)
    assert report["macc"] == 22_464_344
    assert report["model_line"]["weights_input_model"] == 718_728
    assert report["neural_art_compiler_version"] == "1.1.3-8"
    pools = {p["name"]: p for p in report["memory_pools"]}
    assert pools["npuRAM5"]["activations_bytes"] == 245_760  # '240.000 kB' are KiB
    assert pools["octoFlash"]["weights_bytes"] == 212_609
    assert pools["octoFlash"]["size_bytes"] == 112 * 1024 * 1024
    assert report["pool_totals"]["activations_bytes"] == 245_760
    assert report["epochs"] == {"total": 56, "sw": 1, "hybrid": 0, "hw": 55}


def test_host_validate_report(fixtures_dir: Path) -> None:
    report = parse_text_report(fixtures_dir / HOST_TXT)
    assert report["tool_version"] == "2.2.0-20266 2adc00962"
    assert report["duration_ms"] == {"mean": 0.018, "min": 0.014, "max": 0.021, "std": 0.002}
    rows = {row["row"]: row for row in report["evaluation"]}
    assert set(rows) == {"HOST c-model #1", "original model #1", "X-cross #1"}
    assert rows["HOST c-model #1"]["rmse"] == pytest.approx(7.3e-8)
    assert rows["HOST c-model #1"]["acc"] is None  # n.a.
    assert rows["X-cross #1"]["cos"] == 1.0


@pytest.mark.parametrize(
    ("value", "expected"), [("1895825408", 0x71000000), ("0x34200000", 0x34200000), ("NULL", None), (12, 12)]
)
def test_addresses(value, expected) -> None:
    assert parse_address(value) == expected


def test_bad_reports(tmp_path: Path, fixtures_dir: Path) -> None:
    broken = tmp_path / "network_c_info.json"
    broken.write_text("{ not json")
    with pytest.raises(StedgeaiReportError, match="network_c_info.json: not a JSON report"):
        parse_c_info(broken)
    data = json.loads((fixtures_dir / F4_JSON).read_text())
    del data["memory_footprint"]["activations"]
    broken.write_text(json.dumps(data))
    with pytest.raises(StedgeaiReportError, match="memory_footprint.activations"):
        parse_c_info(broken)
    broken.write_text(json.dumps({"graphs": []}))
    with pytest.raises(StedgeaiReportError, match="missing key 'memory_footprint'"):
        parse_c_info(broken)
    with pytest.raises(StedgeaiReportError, match="report not found"):
        parse_c_info(tmp_path / "absent.json")
    garbage = tmp_path / "network_generate_report.txt"
    garbage.write_text("\x00\x01 garbage\nnothing useful here\n")
    with pytest.raises(StedgeaiReportError, match="no ST Edge AI Core report lines"):
        parse_text_report(garbage)
