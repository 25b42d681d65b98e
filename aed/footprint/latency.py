"""Calibrated latency models. Estimates, never measurements.

- STM32U5 (Cortex-M33 at 160 MHz): cycles = 1.885 x MAC, calibrated on ST's YAMNet-256 figure (281.95 ms).
- STM32N6 (Neural-ART NPU): t = MAC / 32.5e9 + weight_bytes / 417e6 s, fitted to ST's YAMNet-256 (1.07 ms) and
  YAMNet-1024 (9.88 ms) figures; the second term is the weights streamed from octo-SPI NOR flash.
Per-op factors scale single op types (1.0 until a board measurement says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LatencyModel:
    name: str
    clock_hz: float
    cycles_per_mac: float | None = None  # MCU model
    macs_per_s: float | None = None  # NPU model
    weight_bytes_per_s: float | None = None
    op_factors: dict[str, float] = field(default_factory=dict)
    calibration: str = ""

    def layer_seconds(self, op: str, macs: int, weight_bytes: int) -> float:
        factor = self.op_factors.get(op, 1.0)
        if self.cycles_per_mac is not None:
            return factor * self.cycles_per_mac * macs / self.clock_hz
        assert self.macs_per_s is not None and self.weight_bytes_per_s is not None
        return factor * macs / self.macs_per_s + weight_bytes / self.weight_bytes_per_s


MODELS = {
    "stm32u5": LatencyModel(
        name="u5_cycles_per_mac",
        clock_hz=160e6,
        cycles_per_mac=1.885,
        calibration="ST model zoo: YAMNet-256 int8 on B-U585I-IOT02A, 281.95 ms at 160 MHz (STM32Cube.AI 10.0.0)",
    ),
    "stm32n6": LatencyModel(
        name="n6_mac_rate_plus_weight_stream",
        clock_hz=1e9,  # NPU clock; cycles are reported at this clock
        macs_per_s=32.5e9,
        weight_bytes_per_s=417e6,
        calibration="ST model zoo: YAMNet-256 1.07 ms and YAMNet-1024 9.88 ms on STM32N6570-DK NPU (ST Edge AI 2.0.0)",
    ),
}
