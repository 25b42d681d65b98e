"""Board profiles: what a board of a given kind reports and may hold
(the validation protocol's device fields, the boards' memory sizes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BoardProfile:
    name: str
    device: str  # description string as ST's host prints it
    devid: int
    sclock_hz: int
    hclock_hz: int
    cache: int
    extra: tuple[int, ...]
    flash_bytes: int  # budget for weights + code
    ram_bytes: int  # budget for activations + runtime
    estimator_target: str  # aed.footprint target name
    baud: int  # the validation firmware's UART speed
    runtime_ram_bytes: int  # ST runtime RAM and code flash on top of the model (ST Edge AI 2.0.0 constants)
    code_flash_bytes: int
    openocd_target: str | None  # target config of OpenOCD 0.12 (None: not supported)
    pyocd_target: str | None
    flash_base: int  # load address of a raw .bin image

    def identity(self) -> dict:
        return {"devid": f"0x{self.devid:03x}", "device": self.device, "sclock_hz": self.sclock_hz}


PROFILES: dict[str, BoardProfile] = {
    "b-u585i-iot02a": BoardProfile(
        name="b-u585i-iot02a",
        device="STM32U575/585",
        devid=0x482,
        sclock_hz=160_000_000,
        hclock_hz=160_000_000,
        cache=0x04010200,  # series 4 (U5), FPU, ICACHE
        extra=(),
        flash_bytes=2 * 1024 * 1024,
        ram_bytes=786 * 1024,
        estimator_target="stm32u5",
        baud=115200,
        runtime_ram_bytes=round(7.61 * 1024),
        code_flash_bytes=round(57.74 * 1024),
        openocd_target="target/stm32u5x.cfg",
        pyocd_target="stm32u585aiix",
        flash_base=0x08000000,
    ),
    "stm32n6570-dk": BoardProfile(
        name="stm32n6570-dk",
        device="STM32N6",
        devid=0x486,
        sclock_hz=800_000_000,
        hclock_hz=400_000_000,
        cache=0x05010C01,  # series 5 (N6), FPU, I-cache, D-cache, NPU cache
        extra=(0, 1_000_000_000, 900_000_000),  # [-, NPU Hz, NIC Hz]
        flash_bytes=112 * 1024 * 1024,  # external octo-SPI NOR pool of ST's default memory map
        ram_bytes=1024 * 1024 + 4 * 448 * 1024,  # cpuRAM2 + npuRAM3..6
        estimator_target="stm32n6",
        baud=921600,
        runtime_ram_bytes=round(35.41 * 1024),
        code_flash_bytes=round(334.30 * 1024),
        openocd_target=None,  # OpenOCD 0.12 has no STM32N6 config
        pyocd_target="stm32n657x0hxq",  # needs the STM32N6 CMSIS pack
        flash_base=0x70000000,  # external NOR, through the board's external loader
    ),
}

DEVICE_IDS = {profile.devid: profile.device for profile in PROFILES.values()}


def get_profile(name: str) -> BoardProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown board profile {name!r}; known: {sorted(PROFILES)}") from None
