"""Device memory budgets and ST's runtime constants."""

from __future__ import annotations

from dataclasses import dataclass

from aed.footprint.latency import LATEST, n6_blob_bytes

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Device:
    target: str
    board: str
    flash_bytes: int
    ram_bytes: int
    # Activations figure the verdict uses: ST's MCU allocator overlaps buffers (improved planner);
    # the N6 NPU figure equals the TFLM greedy arena.
    activations_key: str
    notes: str


DEVICES = {
    "stm32u5": Device(
        target="stm32u5",
        board="B-U585I-IOT02A",
        flash_bytes=2 * MIB,
        ram_bytes=786 * KIB,
        activations_key="improved_bytes",
        notes="STM32U585AI: 2 MB internal flash, 786 KB SRAM",
    ),
    "stm32n6": Device(
        target="stm32n6",
        board="STM32N6570-DK",
        flash_bytes=112 * MIB,  # octoFlash pool 0x71000000-0x78000000 in ST's default memory map
        ram_bytes=1 * MIB + 4 * 448 * KIB,  # cpuRAM2 + npuRAM3..6 (internal AXISRAM usable for activations)
        activations_key="arena_tflm_bytes",
        notes="weights in external octo-SPI NOR; activations in internal AXISRAM (cpuRAM2 + npuRAM3..6)",
    ),
}

# ST's published runtime overheads (KiB) per tool version: code flash and runtime RAM.
RUNTIME_KIB = {
    "stm32u5": {
        "2.0.0": {"code_flash": 57.74, "runtime_ram": 7.61},
        "3.0.0": {"code_flash": 31.19, "runtime_ram": 0.99},
    },
    "stm32n6": {
        "2.0.0": {"code_flash": 334.30, "runtime_ram": 35.41},
        "3.0.0": {"code_flash": 184.74, "runtime_ram": 1.77},
    },
}


def verdict(
    target: str, weights_bytes: int, activations: dict, tool_version: str, calibration: str = LATEST
) -> dict:
    device = DEVICES[target]
    runtime = RUNTIME_KIB[target][tool_version]
    code_flash = round(runtime["code_flash"] * KIB)
    runtime_ram = round(runtime["runtime_ram"] * KIB)
    flash_used = weights_bytes + code_flash
    if target == "stm32n6":
        flash_used = n6_blob_bytes(weights_bytes, calibration) + code_flash
    ram_used = activations[device.activations_key] + runtime_ram
    flash_margin, ram_margin = device.flash_bytes - flash_used, device.ram_bytes - ram_used
    return {
        "device": device.board,
        "notes": device.notes,
        "runtime_constants": {
            "tool_version": tool_version,
            "code_flash_bytes": code_flash,
            "runtime_ram_bytes": runtime_ram,
            "source": "ST model zoo published tables",
        },
        "flash_bytes": device.flash_bytes,
        "ram_bytes": device.ram_bytes,
        "flash_used_bytes": flash_used,
        "ram_used_bytes": ram_used,
        "ram_activations_from": device.activations_key,
        "flash_margin_bytes": flash_margin,
        "ram_margin_bytes": ram_margin,
        "flash_margin_pct": round(100.0 * flash_margin / device.flash_bytes, 2),
        "ram_margin_pct": round(100.0 * ram_margin / device.ram_bytes, 2),
        "flash_fits": flash_margin >= 0,
        "ram_fits": ram_margin >= 0,
        "fits": flash_margin >= 0 and ram_margin >= 0,
    }
