"""Calibrated latency and N6 weight-blob models, keyed by ST Edge AI Core version. Estimates, never measurements.

Each version's constants are *derived* here from ST's published figures for that version (STM32 model zoo cards)
and the estimator's own counts for the two reference models, so the estimator reproduces those figures exactly.
Matching the calibration points therefore proves only that the code is consistent with them, nothing about
another model or board: the record says so.

- STM32U5 (Cortex-M33 at 160 MHz): cycles = k x MAC, k from YAMNet-256's published time.
- STM32N6 (Neural-ART NPU): t = MAC / rate + weight_bytes / bandwidth, solved through YAMNet-256's and
  YAMNet-1024's published times; the second term is the weights streamed from octo-SPI NOR flash.
- N6 weight blob (after the Neural-ART compiler's reformatting): a line through ST's two published
  (weights -> blob) points of 2.0. 3.0 publishes no blob size; its YAMNet-1024 weights figure moved
  3162.66 -> 3159.2 KiB, so the 3.0 model is the 2.0 line scaled by that ratio (an assumption, said in the record).
Per-op factors scale single op types (1.0 until a board measurement says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KIB = 1024
# The estimator's counts for ST's two reference models (int8 MACs; int8 weights + int32 biases, bytes).
YAMNET_256 = {"macs": 23_927_296, "weights_bytes": 139_176}
YAMNET_1024 = {"macs": 68_647_936, "weights_bytes": 3_238_568}
CONSISTENCY_NOTE = (
    "constants derived from ST's published figures for this version; reproducing them proves only that the code "
    "is consistent with its calibration points, not that other models or boards are predicted"
)


@dataclass(frozen=True)
class Published:
    """ST's figures for one ST Edge AI Core version (ms, KiB), and where they come from."""

    u5_yamnet256_ms: float
    n6_yamnet256_ms: float
    n6_yamnet1024_ms: float
    n6_blob_points_kib: tuple[tuple[float, float], tuple[float, float]]  # (weights, blob) for 256 and 1024
    n6_blob_scale: float  # applied to the blob line (1.0 when the version publishes its own points)
    reference: str


CALIBRATIONS = {
    "2.0.0": Published(
        u5_yamnet256_ms=281.95,
        n6_yamnet256_ms=1.07,
        n6_yamnet1024_ms=9.88,
        n6_blob_points_kib=((135.91, 176.59), (3162.66, 3497.24)),
        n6_blob_scale=1.0,
        reference="ST model zoo YAMNet card, ST Edge AI Core 2.0.0 (STM32Cube.AI 10.0.0): U5 YAMNet-256 281.95 ms; "
        "N6 NPU YAMNet-256 1.07 ms, YAMNet-1024 9.88 ms; N6 weights 135.91 -> 176.59 and 3162.66 -> 3497.24 KiB",
    ),
    "3.0.0": Published(
        u5_yamnet256_ms=279.99,
        n6_yamnet256_ms=0.93,
        n6_yamnet1024_ms=9.12,
        n6_blob_points_kib=((135.91, 176.59), (3162.66, 3497.24)),
        n6_blob_scale=3159.2 / 3162.66,
        reference="ST model zoo YAMNet card, ST Edge AI Core 3.0.0: U5 YAMNet-256 279.99 ms; N6 NPU YAMNet-256 "
        "0.93 ms, YAMNet-1024 9.12 ms; YAMNet-1024 weights 3159.2 KiB (2.0: 3162.66), no blob size published",
    ),
}
LATEST = max(CALIBRATIONS, key=lambda version: tuple(int(p) for p in version.split(".")))


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


def check_calibration(version: str) -> Published:
    if version not in CALIBRATIONS:
        raise ValueError(f"unknown estimator calibration '{version}'; known: {sorted(CALIBRATIONS)}")
    return CALIBRATIONS[version]


def latency_model(target: str, version: str = LATEST) -> LatencyModel:
    published = check_calibration(version)
    if target == "stm32u5":
        clock = 160e6
        return LatencyModel(
            name="u5_cycles_per_mac",
            clock_hz=clock,
            cycles_per_mac=published.u5_yamnet256_ms * 1e-3 * clock / YAMNET_256["macs"],
            calibration=f"{version}: {published.reference}",
        )
    if target == "stm32n6":
        per_mac, per_byte = _solve_n6(published)
        return LatencyModel(
            name="n6_mac_rate_plus_weight_stream",
            clock_hz=1e9,  # NPU clock; cycles are reported at this clock
            macs_per_s=1.0 / per_mac,
            weight_bytes_per_s=1.0 / per_byte,
            calibration=f"{version}: {published.reference}",
        )
    raise ValueError(f"unknown target '{target}'")


def _solve_n6(published: Published) -> tuple[float, float]:
    """Seconds per MAC and per weight byte through the two published N6 times (Cramer's rule)."""
    m1, w1, t1 = YAMNET_256["macs"], YAMNET_256["weights_bytes"], published.n6_yamnet256_ms * 1e-3
    m2, w2, t2 = YAMNET_1024["macs"], YAMNET_1024["weights_bytes"], published.n6_yamnet1024_ms * 1e-3
    det = m1 * w2 - m2 * w1
    return (t1 * w2 - t2 * w1) / det, (m1 * t2 - m2 * t1) / det


def n6_blob_bytes(weights_bytes: int, version: str = LATEST) -> int:
    published = check_calibration(version)
    (w1, b1), (w2, b2) = published.n6_blob_points_kib
    slope = (b2 - b1) / (w2 - w1)
    offset_bytes = (b1 - slope * w1) * KIB
    return round(published.n6_blob_scale * (slope * weights_bytes + offset_bytes))


def calibration_record(target: str, version: str) -> dict[str, str]:
    """What the record says about the calibration it used."""
    published = check_calibration(version)
    return {"stedgeai_version": version, "published": published.reference, "note": CONSISTENCY_NOTE}
