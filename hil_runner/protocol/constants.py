"""Numbers of stm32msg v3.1 that both sides share (reference page section 4)."""

from __future__ import annotations

VERSION_MAJOR, VERSION_MINOR = 3, 1
VERSION = (VERSION_MAJOR << 8) | VERSION_MINOR

# Capabilities
CAP_OBSERVER, CAP_RELOC, CAP_READ_WRITE, CAP_SELF_TEST = 1, 2, 8, 128

# Run parameter bits
RUN_IO_ONLY, RUN_PER_LAYER, RUN_PER_LAYER_WITH_DATA, RUN_PERF = 1, 2, 4, 8
RUN_MODE_MASK = 15
RUN_CONF_DEBUG, RUN_CONF_CONST_VALUE = 256, 512

# Operator flags (aiOperatorMsg.type >> 24)
OP_NONE, OP_INTERNAL, OP_LAST, OP_WITHOUT_TENSOR = 0, 1, 2, 4

# rtid: runtime | api << 8 | tools << 16 | extra << 24
RUNTIME_NAMES = {1: "STM.AI", 2: "TFLM", 3: "TVM", 4: "ATONN", 5: "GLOW", 6: "STM.AI-reloc"}
TOOL_NAMES = {1: "GCC", 2: "IAR", 3: "MDK-ARM AC5", 4: "MDK-ARM AC6", 5: "HighTec", 6: "Green Hills"}
RTID_NO_ACTIVATIONS, RTID_NO_PARAMS, RTID_NO_MACC = 1, 2, 4


def rtid(runtime: int, api: int, tools: int, extra: int = 0) -> int:
    return runtime | (api << 8) | (tools << 16) | (extra << 24)


def unpack_version(word: int) -> str:
    """major<<24 | minor<<16 | patch<<8 -> 'major.minor.patch'."""
    return f"{(word >> 24) & 0xFF}.{(word >> 16) & 0xFF}.{(word >> 8) & 0xFF}"


def pack_version(text: str) -> int:
    major, minor, patch = (int(part) for part in (text.split(".") + ["0", "0"])[:3])
    return (major << 24) | (minor << 16) | (patch << 8)


def describe_rtid(word: int) -> str:
    runtime, tools = word & 0xFF, (word >> 16) & 0xFF
    return f"{RUNTIME_NAMES.get(runtime, f'runtime {runtime}')} / {TOOL_NAMES.get(tools, f'tools {tools}')}"
