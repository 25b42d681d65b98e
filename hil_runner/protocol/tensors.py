"""Tensor descriptions and payloads (reference page sections 4.5-4.6): format words, shapes, raw bytes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hil_runner.errors import ProtocolError
from hil_runner.protocol import pb

# X-CUBE-AI buffer format words.
FORMATS: dict[str, int] = {
    "float32": 0x00821040,
    "int8": 0x00840440,
    "uint8": 0x00040440,
    "int16": 0x00840840,
    "int32": 0x00841040,
    "bool": 0x00060440,
}
DTYPE_OF_FORMAT = {code: np.dtype(name) for name, code in FORMATS.items()}
FORMAT_NONE = 0x00000040

# Tensor flags.
FLAG_INPUT, FLAG_OUTPUT, FLAG_INTERNAL, FLAG_MEMPOOL = 1, 2, 4, 8
FLAG_LAST, FLAG_NO_DATA, FLAG_IN_MEMPOOL = 256, 512, 1024

SHAPE_RAW = 5
SHAPE_BHWC = 2


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def format_of(dtype: np.dtype) -> int:
    try:
        return FORMATS[np.dtype(dtype).name]
    except KeyError as error:
        raise ProtocolError(f"dtype {np.dtype(dtype).name} has no stm32msg buffer format") from error


def make_desc(spec: TensorSpec, flags: int) -> pb.aiTensorDescMsg:
    """A RAW-shaped description: dims are the real shape, size counts elements."""
    return pb.aiTensorDescMsg(
        name=spec.name[:64],
        format=format_of(spec.dtype),
        size=spec.size,
        n_dims=(SHAPE_RAW << 24) | len(spec.shape),
        dims=list(spec.shape),
        scale=float(spec.scale),
        zeropoint=int(spec.zero_point),
        addr=0,
        flags=flags,
    )


def pool_desc(name: str, n_bytes: int, flags: int = FLAG_MEMPOOL) -> pb.aiTensorDescMsg:
    """Memory pools (activations, weights) are described as S8 [n_bytes]."""
    return make_desc(TensorSpec(name, np.dtype("int8"), (int(n_bytes),)), flags)


def spec_from_desc(desc: pb.aiTensorDescMsg, where: str) -> TensorSpec:
    dtype = DTYPE_OF_FORMAT.get(desc.format)
    if dtype is None:
        raise ProtocolError(f"{where}: tensor {desc.name!r} has unsupported format 0x{desc.format:08x}")
    shape = _decode_shape(desc, where)
    elements = int(np.prod(shape)) if shape else 1
    if abs(elements - desc.size) > 3:  # the same tolerance as ST's host
        raise ProtocolError(f"{where}: tensor {desc.name!r} declares {desc.size} elements but shape {shape}")
    return TensorSpec(desc.name, dtype, shape, float(desc.scale), int(desc.zeropoint))


def _decode_shape(desc: pb.aiTensorDescMsg, where: str) -> tuple[int, ...]:
    shape_format, rank = desc.n_dims >> 24, desc.n_dims & 0xFFFFFF
    dims = tuple(int(d) for d in desc.dims)
    if rank != len(dims):
        raise ProtocolError(f"{where}: tensor {desc.name!r} has rank {rank} but {len(dims)} dims")
    if shape_format == SHAPE_BHWC and rank == 2:
        return (dims[0], 1, 1, dims[1])
    return dims


def encode(array: np.ndarray, spec: TensorSpec) -> bytes:
    if tuple(array.shape) != spec.shape:
        raise ProtocolError(f"tensor {spec.name!r}: expected shape {spec.shape}, got {tuple(array.shape)}")
    return np.ascontiguousarray(array, dtype=spec.dtype.newbyteorder("<")).tobytes()


def decode(data: bytes, spec: TensorSpec, where: str) -> np.ndarray:
    if len(data) != spec.nbytes:
        raise ProtocolError(
            f"{where}: tensor {spec.name!r} expected {spec.nbytes} bytes ({spec.shape} {spec.dtype}), "
            f"got {len(data)}"
        )
    return np.frombuffer(data, dtype=spec.dtype.newbyteorder("<")).reshape(spec.shape).astype(spec.dtype)


def quantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float -> the tensor's integer type with its scale / zero point (identity for float tensors)."""
    if spec.dtype.kind == "f" or spec.scale == 0.0:
        return values.astype(spec.dtype)
    info = np.iinfo(spec.dtype)
    return np.clip(np.round(values / spec.scale) + spec.zero_point, info.min, info.max).astype(spec.dtype)


def dequantize(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    if spec.dtype.kind == "f" or spec.scale == 0.0:
        return values.astype(np.float32)
    return ((values.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
