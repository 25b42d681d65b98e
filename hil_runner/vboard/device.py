"""Device side of stm32msg v3.1, as the aiValidation firmware answers it (reference sections 2.3, 5, 6).

The device reads 33-byte packets, answers every incomplete message with one sync byte (never after the last packet),
and serves one model (index 0, C name "network"). Timing and memory come from the estimator via VirtualModel.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from google.protobuf.message import DecodeError, Message

from hil_runner.boards.profiles import BoardProfile
from hil_runner.errors import ProtocolError
from hil_runner.protocol import constants as c
from hil_runner.protocol import pb
from hil_runner.protocol.framing import PACKET, PAYLOAD, SYNC, RequestAssembler, device_packets
from hil_runner.protocol.tensors import (
    FLAG_IN_MEMPOOL,
    FLAG_INPUT,
    FLAG_LAST,
    FLAG_OUTPUT,
    decode,
    encode,
    make_desc,
    pool_desc,
)
from hil_runner.vboard.faults import NO_FAULTS, FaultPlan
from hil_runner.vboard.model import VirtualModel

log = logging.getLogger(__name__)

MODEL_NAME = "network"
RTID = c.rtid(runtime=1, api=1, tools=1)  # X-CUBE-AI runtime, st-ai API, GCC: what ST's firmware reports
RUNTIME_VERSION, TOOL_VERSION = "10.2.0", "2.0.0"
IDLE_DISCARD = 0.3  # seconds of silence after which a partial packet / message is dropped (a host went away)
INPUT_TIMEOUT = 10.0
OP_TYPES = {
    "CONV_2D": 1,
    "DEPTHWISE_CONV_2D": 2,
    "FULLY_CONNECTED": 3,
    "MEAN": 4,
    "SOFTMAX": 5,
    "AVERAGE_POOL_2D": 6,
}


_SYNC_BYTE = bytes([SYNC])


class DeviceLink(Protocol):
    def fileno(self) -> int: ...

    def recv(self, n: int) -> bytes: ...

    def send(self, data: bytes) -> None: ...


class LinkClosed(Exception):
    pass


class _Silenced(Exception):
    """Raised to abandon the exchange in progress (stop / reset faults)."""


@dataclass(frozen=True)
class _Run:
    """An accepted NETWORK_RUN request: the run's number (faults are keyed on it), the reqid every answer
    carries (possibly falsified by the wrong_reqid fault), the request's RUN_* flags and the served model."""

    number: int
    reqid: int
    param: int
    model: VirtualModel


class VirtualDevice:
    def __init__(
        self,
        profile: BoardProfile,
        model: Callable[[], VirtualModel | None],
        faults: FaultPlan = NO_FAULTS,
        seed: int = 0,
        realtime: bool = False,
    ) -> None:
        self.profile = profile
        self.model = model
        self.faults = faults
        self.rng = np.random.default_rng(seed)
        self.realtime = realtime
        self.runs = 0
        self.dead = False  # set by the stop fault: the board never answers again
        self.lock = threading.Lock()

    # ---- receive ----------------------------------------------------------------------------------------------
    def serve(self, link: DeviceLink, stop: threading.Event) -> None:
        """Serve one link until it closes or `stop` is set."""
        self._rx = bytearray()
        self._assembler = RequestAssembler()
        self._poller = select.poll()
        self._poller.register(link.fileno(), select.POLLIN)
        while not stop.is_set():
            try:
                body = self._next_message(link, stop, timeout=None)
                if body is None:
                    continue
                self._handle_request(link, stop, body)
            except LinkClosed:
                return
            except _Silenced:
                continue

    def _next_message(self, link: DeviceLink, stop: threading.Event, timeout: float | None) -> bytes | None:
        """Collect packets into the next complete message, syncing between packets. None on a timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not stop.is_set():
            packet = self._read_packet(link, stop, deadline)
            if packet is None:
                return None
            if self.dead:
                continue
            try:
                body = self._assembler.feed(packet)
            except ProtocolError as error:
                log.debug("discarding bad request packet: %s", error)
                continue
            if body is not None:
                return body
            link.send(_SYNC_BYTE)
            body = self._bulk_receive(link)
            if body is not None:
                return body
        raise LinkClosed

    def _bulk_receive(self, link: DeviceLink) -> bytes | None:
        """Fast path for long messages (a 6 KiB input is 193 packets): once the length prefix is known, receive the
        remaining packets in a tight loop, one sync after each non-final packet. Falls back to the general loop
        (returns None) on anything unusual: pending bytes, a bad header, or a pause longer than IDLE_DISCARD."""
        assembler, rx = self._assembler, self._rx
        needed = assembler._needed
        if needed is None or rx:
            return None
        poll, recv, send, buffer = self._poller.poll, link.recv, link.send, assembler.buffer
        timeout_ms = IDLE_DISCARD * 1000.0
        while needed - len(buffer) > PAYLOAD:  # every packet but the last one gets a sync
            packet = b""
            while len(packet) < PACKET:
                if not poll(timeout_ms):
                    rx += packet
                    return None
                data = recv(PACKET - len(packet))
                if not data:
                    raise LinkClosed
                packet += data
            size = packet[0]
            if not 1 <= size <= PAYLOAD:
                rx += packet
                return None
            buffer += packet[1 : 1 + size]
            send(_SYNC_BYTE)
        return None  # the last packet goes through the general path (it completes the message)

    def _read_packet(self, link: DeviceLink, stop: threading.Event, deadline: float | None) -> bytes | None:
        rx = self._rx
        if len(rx) < PACKET:
            last_byte = time.monotonic()
            poller = self._poller
            while len(rx) < PACKET:
                if stop.is_set():
                    raise LinkClosed
                if not poller.poll(100):
                    if deadline is not None and time.monotonic() > deadline:
                        return None
                    if (rx or self._assembler.buffer) and time.monotonic() - last_byte > IDLE_DISCARD:
                        rx.clear()
                        self._assembler.clear()
                    continue
                data = link.recv(4096)
                if not data:
                    raise LinkClosed
                rx += data
                last_byte = time.monotonic()
                if deadline is not None and last_byte > deadline and len(rx) < PACKET:
                    return None
        packet = bytes(rx[:PACKET])
        del rx[:PACKET]
        return packet

    def _parse(self, body: bytes, message: Message) -> Message:
        try:
            message.ParseFromString(body)
        except DecodeError as error:
            raise ProtocolError(f"undecodable {message.DESCRIPTOR.name}: {error}") from error
        return message

    # ---- send -------------------------------------------------------------------------------------------------
    def _send(self, link: DeviceLink, resp: pb.respMsg, drop: bool = False, garble: bool = False) -> None:
        if self.faults.delay:
            time.sleep(self.faults.delay)
        packets = device_packets(resp)
        if drop:
            packets = packets[1:]
        if garble:
            first = bytearray(packets[0])
            first[0] = 0x7F  # no valid header has a length above 32
            first[1:] = bytes(b ^ 0x5A for b in first[1:])
            packets[0] = bytes(first)
        link.send(b"".join(packets))

    @staticmethod
    def _ack(reqid: int, state: int, error: int = pb.E_NONE, param: int = 0) -> pb.respMsg:
        return pb.respMsg(reqid=reqid, state=state, ack=pb.ackMsg(param=param, error=error))

    # ---- commands ---------------------------------------------------------------------------------------------
    def _handle_request(self, link: DeviceLink, stop: threading.Event, body: bytes) -> None:
        try:
            req = self._parse(body, pb.reqMsg())
        except ProtocolError:
            self._send(link, self._ack(0, pb.S_ERROR, pb.E_INVALID_FORMAT))
            return
        if req.cmd == pb.CMD_SYNC:
            version = self.faults.version_word or c.VERSION
            sync = pb.syncMsg(version=version, capability=c.CAP_OBSERVER, rtid=RTID)
            self._send(link, pb.respMsg(reqid=req.reqid, state=pb.S_IDLE, sync=sync))
        elif req.cmd == pb.CMD_SYS_INFO:
            p = self.profile
            sinfo = pb.sysinfoMsg(
                devid=p.devid, sclock=p.sclock_hz, hclock=p.hclock_hz, cache=p.cache, extra=p.extra
            )
            self._send(link, pb.respMsg(reqid=req.reqid, state=pb.S_IDLE, sinfo=sinfo))
        elif req.cmd == pb.CMD_NETWORK_INFO:
            self._network_info(link, req)
        elif req.cmd == pb.CMD_NETWORK_RUN:
            self._run(link, stop, req)
        else:
            self._send(link, self._ack(req.reqid, pb.S_ERROR, pb.E_INVALID_PARAM))

    def _network_info(self, link: DeviceLink, req: pb.reqMsg) -> None:
        model = self.model()
        if model is None:
            self._send(link, self._ack(req.reqid, pb.S_ERROR, pb.E_GENERIC))
            return
        if req.param != 0:
            self._send(link, self._ack(req.reqid, pb.S_ERROR, pb.E_INVALID_PARAM))
            return
        inputs = [make_desc(s, FLAG_INPUT | FLAG_IN_MEMPOOL) for s in model.inputs]
        outputs = [make_desc(s, FLAG_OUTPUT | FLAG_IN_MEMPOOL) for s in model.outputs]
        outputs[-1].flags |= FLAG_LAST
        minfo = pb.aiModelInfoMsg(
            name=MODEL_NAME,
            rtid=RTID,
            signature=model.sha256[:64],
            compile_datetime=model.compile_datetime,
            runtime_version=c.pack_version(RUNTIME_VERSION),
            tool_version=c.pack_version(TOOL_VERSION),
            n_macc=model.macs,
            n_nodes=len(model.layers),
            n_inputs=len(inputs),
            inputs=inputs,
            n_outputs=len(outputs),
            outputs=outputs,
            n_activations=1,
            activations=[pool_desc("activations", model.activations_bytes)],
            n_params=1,
            params=[pool_desc("weights", model.weights_bytes)],
            runtime_desc=f"virtual board ({self.profile.name}, {model.runtime.kernels})"[:64],
        )
        self._send(link, pb.respMsg(reqid=req.reqid, state=pb.S_IDLE, minfo=minfo))

    def _run(self, link: DeviceLink, stop: threading.Event, req: pb.reqMsg) -> None:
        """One NETWORK_RUN exchange: accept, receive the inputs, (log), infer, report timing, send the outputs.

        A phase that returns None / False means the host went away or the run was refused: back to idle."""
        run = self._accept_run(link, stop, req)
        if run is None:
            return
        arrays = self._receive_inputs(link, stop, run)
        if arrays is None:
            return
        if self.faults.at("stop", run.number):
            self.dead = True
            raise _Silenced
        if run.param & c.RUN_CONF_DEBUG and not self._send_debug_log(link, stop, run):
            return
        outputs = run.model.infer(arrays)
        factor = self._timing_factor()
        if self.realtime:
            time.sleep(run.model.latency_ms * factor / 1e3)
        self._report_timing(link, run, factor)
        if not run.param & c.RUN_PERF:
            self._send_outputs(link, run, outputs)
        if self.faults.at("stray", run.number):
            link.send(bytes([SYNC]))

    def _accept_run(self, link: DeviceLink, stop: threading.Event, req: pb.reqMsg) -> _Run | None:
        """Number the run and answer the request: an error ack (None), or S_WAITING for the inputs."""
        with self.lock:
            self.runs += 1
            number = self.runs
        faults = self.faults
        model = self.model()
        reqid = req.reqid + 1 if faults.at("wrong_reqid", number) else req.reqid
        if model is None or req.name != MODEL_NAME:
            error = pb.E_GENERIC if model is None else pb.E_INVALID_PARAM
            self._send(link, self._ack(reqid, pb.S_ERROR, error))
            return None
        if faults.at("error", number):
            self._send(link, self._ack(reqid, pb.S_ERROR, pb.E_INVALID_STATE))
            return None
        self._send(link, self._ack(reqid, pb.S_WAITING))
        if faults.at("reset", number):
            self._reset(link, stop)
        return _Run(number, reqid, req.param, model)

    def _receive_inputs(self, link: DeviceLink, stop: threading.Event, run: _Run) -> list[np.ndarray] | None:
        """Each input tensor message, acknowledged, then the host's ackMsg. None when the run ends early."""
        arrays = []
        specs = run.model.inputs
        for number, spec in enumerate(specs):
            body = self._next_message(link, stop, INPUT_TIMEOUT)
            if body is None:
                return None  # the host went away; back to idle
            data = self._parse(body, pb.aiDataMsg()).datas
            if run.param & c.RUN_CONF_CONST_VALUE:  # one value, repeated over the whole tensor
                data = data[: spec.dtype.itemsize] * spec.size
            try:
                arrays.append(decode(data, spec, "input"))
            except ProtocolError:
                self._send(link, self._ack(run.reqid, pb.S_ERROR, pb.E_INVALID_SIZE))
                return None
            last = number == len(specs) - 1
            self._send(link, self._ack(run.reqid, pb.S_PROCESSING if last else pb.S_WAITING))
            if self._next_message(link, stop, INPUT_TIMEOUT) is None:  # the host's ackMsg
                return None
        return arrays

    def _send_debug_log(self, link: DeviceLink, stop: threading.Event, run: _Run) -> bool:
        """The debug-mode log message and the host's ack; False when the host went away."""
        log_msg = pb.logMsg(level=1, str=f"virtual board: run {run.number} of {MODEL_NAME}")
        self._send(link, pb.respMsg(reqid=run.reqid, state=pb.S_PROCESSING, log=log_msg))
        return self._next_message(link, stop, INPUT_TIMEOUT) is not None

    def _timing_factor(self) -> float:
        """The noise fault's multiplier on every duration of this run (1.0 without noise, never below 0.01)."""
        noise = self.faults.noise
        return max(1.0 + noise * float(self.rng.standard_normal()), 0.01) if noise else 1.0

    def _report_timing(self, link: DeviceLink, run: _Run, factor: float) -> None:
        """One operator message per layer when asked for, then the whole network's duration."""
        model = run.model
        if run.param & (c.RUN_PER_LAYER | c.RUN_PER_LAYER_WITH_DATA):
            for number, layer in enumerate(model.layers):
                last = c.OP_LAST if number == len(model.layers) - 1 else 0
                flags = c.OP_INTERNAL | c.OP_WITHOUT_TENSOR | last
                self._send(link, self._operator(run.reqid, layer.name, flags, OP_TYPES.get(layer.op, 0), layer.index,
                                                layer.latency_ms * factor, round(layer.cycles * factor)))  # fmt: skip
        report = self._operator(
            run.reqid, MODEL_NAME, c.OP_NONE, 0, 0, model.latency_ms * factor, round(model.cycles * factor)
        )
        self._send(link, report, drop=self.faults.at("drop", run.number))

    def _send_outputs(self, link: DeviceLink, run: _Run, outputs: list[np.ndarray]) -> None:
        """Each output tensor; the last one closes the run with S_DONE."""
        garble = self.faults.at("garble", run.number)
        for number, (array, spec) in enumerate(zip(outputs, run.model.outputs, strict=True)):
            last = number == len(outputs) - 1
            desc = make_desc(spec, FLAG_OUTPUT | FLAG_IN_MEMPOOL | (FLAG_LAST if last else 0))
            data = encode(array, spec)
            tensor = pb.aiTensorMsg(desc=desc, data=pb.aiDataMsg(type=0, size=len(data), addr=0, datas=data))
            state = pb.S_DONE if last else pb.S_PROCESSING
            self._send(
                link, pb.respMsg(reqid=run.reqid, state=state, tensor=tensor), garble=garble and number == 0
            )

    @staticmethod
    def _operator(
        reqid: int, name: str, flags: int, layer_type: int, layer_id: int, duration_ms: float, cycles: int
    ) -> pb.respMsg:
        op = pb.aiOperatorMsg(
            name=name[:64],
            type=(flags << 24) | layer_type,
            id=layer_id,
            duration=duration_ms,
            counter_type=0,  # 64-bit CPU cycles as [lo32, hi32]
            counters=[cycles & 0xFFFFFFFF, cycles >> 32],
            stack_used=-1,
            heap_used=-1,
        )
        return pb.respMsg(reqid=reqid, state=pb.S_PROCESSING, op=op)

    def _reset(self, link: DeviceLink, stop: threading.Event) -> None:
        """A reset mid-run: the request in flight is lost and the link stays silent until the board is back."""
        self._read_packet(link, stop, time.monotonic() + 0.05)
        until = time.monotonic() + self.faults.reset_pause
        while time.monotonic() < until and not stop.is_set():
            ready, _, _ = select.select([link.fileno()], [], [], 0.05)
            if ready and not link.recv(4096):
                raise LinkClosed
        self._rx.clear()
        self._assembler = RequestAssembler()
        raise _Silenced
