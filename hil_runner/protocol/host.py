"""Host side of stm32msg v3.1: connect, identify the device and model, run inferences (reference sections 1, 5).

Each exchange has its own timeout (section 7); any timeout, framing error, reqid mismatch or device error raises,
and the caller treats the board as failed for this job.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from aed.deadline import Deadline
from hil_runner.errors import DeviceError, ProtocolError
from hil_runner.protocol import constants as c
from hil_runner.protocol import pb
from hil_runner.protocol.framing import ByteLink, receive_response, send_request
from hil_runner.protocol.tensors import TensorSpec, decode, encode, spec_from_desc


@dataclass(frozen=True)
class Timeouts:
    """Seconds per exchange; defaults follow ST's host (reference section 7)."""

    sync_byte: float = 5.0
    sync: float = 0.5
    sys_info: float = 0.5
    network_info: float = 5.0
    run_ack: float = 1.0
    input_ack: float = 10.0
    result: float = 50.0
    layer_tensor: float = 0.1
    settle: float = 0.4  # quiet time after draining the link at connect

    def scaled(self, factor: float) -> Timeouts:
        return Timeouts(**{name: value * factor for name, value in self.__dict__.items()})


@dataclass(frozen=True)
class DeviceInfo:
    devid: int
    sclock_hz: int
    hclock_hz: int
    cache: int
    extra: tuple[int, ...]
    protocol_version: str
    capability: int
    rtid: int

    def describe(self) -> str:
        return f"0x{self.devid:03x} @{self.sclock_hz / 1e6:g}/{self.hclock_hz / 1e6:g}MHz"


@dataclass(frozen=True)
class ModelInfo:
    name: str
    signature: str
    compile_datetime: str
    runtime: str
    runtime_version: str
    tool_version: str
    rtid: int
    n_macc: int | None
    n_nodes: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    activations_bytes: int | None
    weights_bytes: int | None
    runtime_desc: str


@dataclass
class LayerResult:
    name: str
    layer_id: int
    layer_type: int
    duration_ms: float
    cycles: int | None


@dataclass
class RunResult:
    outputs: list[np.ndarray]
    duration_ms: float
    cycles: int | None
    stack_used: int
    heap_used: int
    layers: list[LayerResult] = field(default_factory=list)
    host_seconds: float = 0.0


def _max_layer_reports(model: ModelInfo) -> int:
    """Per-layer reports accepted before the model-level one: one per node, with room for runtimes that report
    more operators than nodes. Without a bound, a device sending reports forever would never time out."""
    return 4 * max(model.n_nodes, 1) + 64


class ValidationClient:
    """One session with an aiValidation device over a ByteLink (serial port or socket)."""

    def __init__(self, link: ByteLink, timeouts: Timeouts = Timeouts(), where: str = "device") -> None:
        self.link = link
        self.timeouts = timeouts
        self.where = where
        self.reqid = 0

    # ---- connection -------------------------------------------------------------------------------------------
    def connect(self) -> DeviceInfo:
        """Drain stale bytes, then CMD_SYNC (version check) and CMD_SYS_INFO."""
        reset = getattr(self.link, "reset_input", None)
        if reset is not None:
            reset()
        for _ in range(1000):
            if not self.link.read_some(10, 0.01):
                break
        time.sleep(self.timeouts.settle)
        sync = self._call(pb.CMD_SYNC, "sync", self.timeouts.sync).sync
        major, minor = sync.version >> 8, sync.version & 0xFF
        if major != c.VERSION_MAJOR or minor > c.VERSION_MINOR:
            raise ProtocolError(
                f"{self.where}: protocol version {major}.{minor} is not supported "
                f"(expected {c.VERSION_MAJOR}.x with x <= {c.VERSION_MINOR})"
            )
        sinfo = self._call(pb.CMD_SYS_INFO, "sinfo", self.timeouts.sys_info).sinfo
        return DeviceInfo(
            devid=sinfo.devid,
            sclock_hz=sinfo.sclock,
            hclock_hz=sinfo.hclock,
            cache=sinfo.cache,
            extra=tuple(sinfo.extra),
            protocol_version=f"{major}.{minor}",
            capability=sync.capability,
            rtid=sync.rtid,
        )

    def models(self) -> list[ModelInfo]:
        """Model discovery: CMD_NETWORK_INFO 0, 1, ... until the answer is not a model description."""
        found = []
        for index in range(16):
            info = self.network_info(index)
            if info is None:
                break
            found.append(info)
        return found

    def network_info(self, index: int) -> ModelInfo | None:
        resp = self._call(pb.CMD_NETWORK_INFO, None, self.timeouts.network_info, param=index)
        kind = resp.WhichOneof("payload")
        if kind == "ack":
            if resp.ack.error == pb.E_GENERIC:
                raise DeviceError(f"{self.where}: model {index} is not initialised (E_GENERIC)")
            return None
        if kind != "minfo":
            raise ProtocolError(f"{self.where}: CMD_NETWORK_INFO: expected minfo or ack, got {kind}")
        return self._model_info(resp.minfo)

    def _model_info(self, m: pb.aiModelInfoMsg) -> ModelInfo:
        extra = m.rtid >> 24
        where = f"{self.where}: model {m.name!r}"
        return ModelInfo(
            name=m.name,
            signature=m.signature,
            compile_datetime=m.compile_datetime,
            runtime=c.describe_rtid(m.rtid),
            runtime_version=c.unpack_version(m.runtime_version),
            tool_version=c.unpack_version(m.tool_version),
            rtid=m.rtid,
            n_macc=None if extra & c.RTID_NO_MACC else int(m.n_macc),
            n_nodes=m.n_nodes,
            inputs=tuple(spec_from_desc(d, f"{where} input") for d in m.inputs),
            outputs=tuple(spec_from_desc(d, f"{where} output") for d in m.outputs),
            activations_bytes=None if extra & c.RTID_NO_ACTIVATIONS else sum(d.size for d in m.activations),
            weights_bytes=None if extra & c.RTID_NO_PARAMS else sum(d.size for d in m.params),
            runtime_desc=m.runtime_desc,
        )

    # ---- inference --------------------------------------------------------------------------------------------
    def run(
        self, model: ModelInfo, inputs: list[np.ndarray], mode: int = c.RUN_IO_ONLY, first: bool = True
    ) -> RunResult:
        """One inference (reference section 5, steps 1-6). Inputs must already have the model's input dtype."""
        started = time.perf_counter()
        if len(inputs) != len(model.inputs):
            raise ProtocolError(f"{self.where}: model expects {len(model.inputs)} inputs, got {len(inputs)}")
        perf = bool(mode & c.RUN_PERF)
        if perf:
            mode = (mode | c.RUN_CONF_CONST_VALUE) & ~c.RUN_PER_LAYER_WITH_DATA
        const_value = bool(mode & c.RUN_CONF_CONST_VALUE)
        reqid = self._next_reqid()
        req = pb.reqMsg(reqid=reqid, cmd=pb.CMD_NETWORK_RUN, param=mode, name=model.name, opt=int(first))
        send_request(self.link, req, self.timeouts.sync_byte)
        self._expect_ack(reqid, pb.S_WAITING, self.timeouts.run_ack, "CMD_NETWORK_RUN ack")
        for number, (array, spec) in enumerate(zip(inputs, model.inputs, strict=True)):
            data = encode(array, spec)
            if const_value:
                data = data[: spec.dtype.itemsize]
            message = pb.aiDataMsg(type=0, size=len(data), addr=0, datas=data)
            send_request(self.link, message, self.timeouts.sync_byte)
            last = number == len(inputs) - 1
            state = pb.S_PROCESSING if last else pb.S_WAITING
            self._expect_ack(reqid, state, self.timeouts.input_ack, f"ack of input {number}")
            send_request(self.link, pb.ackMsg(param=0, error=pb.E_NONE), self.timeouts.sync_byte)

        layers: list[LayerResult] = []
        while True:  # per-layer operators (if any) end with the model-level operator (type NONE)
            op = self._receive(reqid, self.timeouts.result, "operator report", kind="op").op
            flags = op.type >> 24
            if flags == c.OP_NONE:
                break
            if len(layers) >= _max_layer_reports(model):  # each report in time, but they never end
                raise ProtocolError(
                    f"{self.where}: more than {len(layers)} per-layer operator reports for a model of "
                    f"{model.n_nodes} nodes; expected the model-level report (type NONE)"
                )
            layers.append(self._layer(op))
            if not flags & c.OP_WITHOUT_TENSOR:
                self._skip_layer_tensors(reqid)
        cycles = self._cycles(op)
        outputs = [] if perf else self._receive_outputs(reqid, model)
        duration = op.duration if not layers else sum(layer.duration_ms for layer in layers)
        return RunResult(
            outputs=outputs,
            duration_ms=float(duration),
            cycles=cycles,
            stack_used=op.stack_used,
            heap_used=op.heap_used,
            layers=layers,
            host_seconds=time.perf_counter() - started,
        )

    def _receive_outputs(self, reqid: int, model: ModelInfo) -> list[np.ndarray]:
        outputs = []
        for number, spec in enumerate(model.outputs):
            resp = self._receive(reqid, self.timeouts.result, f"output tensor {number}", kind="tensor")
            tensor = resp.tensor
            last = number == len(model.outputs) - 1
            if bool(tensor.desc.flags & 256) != last or (resp.state == pb.S_DONE) != last:
                raise ProtocolError(
                    f"{self.where}: output {number}/{len(model.outputs)}: LAST flag / S_DONE state disagree "
                    f"with the declared output count"
                )
            outputs.append(decode(tensor.data.datas, spec, f"{self.where} output {number}"))
        return outputs

    def _skip_layer_tensors(self, reqid: int) -> None:
        while True:
            tensor = self._receive(reqid, self.timeouts.layer_tensor, "layer tensor", kind="tensor").tensor
            if tensor.desc.flags & 256:
                return

    @staticmethod
    def _layer(op: pb.aiOperatorMsg) -> LayerResult:
        return LayerResult(
            name=op.name,
            layer_id=op.id & 0xFFFF,
            layer_type=op.type & 0xFFFFFF,
            duration_ms=float(op.duration),
            cycles=ValidationClient._cycles(op),
        )

    @staticmethod
    def _cycles(op: pb.aiOperatorMsg) -> int | None:
        counter_format, counter_type = op.counter_type >> 16, op.counter_type & 0xFFFF
        values = list(op.counters)
        if counter_type != 0 or not values:
            return None
        if counter_format == 0:  # 64-bit values as [lo32, hi32] pairs; the first value is the CPU cycle count
            return values[0] | (values[1] << 32) if len(values) >= 2 else values[0]
        return values[0]

    # ---- exchanges --------------------------------------------------------------------------------------------
    def _next_reqid(self) -> int:
        self.reqid += 1
        return self.reqid

    def _call(self, cmd: int, kind: str | None, timeout: float, param: int = 0) -> pb.respMsg:
        reqid = self._next_reqid()
        send_request(
            self.link, pb.reqMsg(reqid=reqid, cmd=cmd, param=param, name="", opt=0), self.timeouts.sync_byte
        )
        return self._receive(reqid, timeout, f"answer to {pb.EnumCmd.Name(cmd)}", kind=kind)

    def _expect_ack(self, reqid: int, state: int, timeout: float, what: str) -> None:
        resp = self._receive(reqid, timeout, what, kind="ack")
        if resp.state != state:
            raise ProtocolError(
                f"{self.where}: {what}: expected state {pb.EnumState.Name(state)}, "
                f"got {pb.EnumState.Name(resp.state)}"
            )

    def _receive(self, reqid: int, timeout: float, what: str, kind: str | None = None) -> pb.respMsg:
        """Next response for reqid; device logs are acknowledged and skipped; S_ERROR raises.

        One deadline covers the whole wait, logs included, so that a chatty device cannot extend it and the
        time-out message states the time waited since the wait began."""
        deadline = Deadline(timeout)
        while True:
            resp = receive_response(self.link, pb.respMsg(), deadline, f"{self.where}: {what}")
            if resp.reqid != reqid:
                raise ProtocolError(f"{self.where}: {what}: expected reqid {reqid}, got {resp.reqid}")
            payload = resp.WhichOneof("payload")
            if payload == "log":
                send_request(self.link, pb.ackMsg(param=0, error=pb.E_NONE), self.timeouts.sync_byte)
                continue
            if resp.state == pb.S_ERROR:
                error = pb.EnumError.Name(resp.ack.error) if payload == "ack" else "no error code"
                if kind is None and payload == "ack":
                    return resp  # CMD_NETWORK_INFO: an error ack ends the model list
                raise DeviceError(f"{self.where}: {what}: device reported S_ERROR ({error})")
            if kind is not None and payload != kind:
                raise ProtocolError(f"{self.where}: {what}: expected a {kind!r} message, got {payload!r}")
            return resp
