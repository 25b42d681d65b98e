"""stm32msg v3.1 codec and framing: generated code is current, proto2 wire form, packets, errors never hang."""

from __future__ import annotations

import time

import numpy as np
import pytest

from hil_runner.errors import ProtocolError, ProtocolTimeout
from hil_runner.protocol import pb, regen
from hil_runner.protocol.framing import (
    PACKET,
    SYNC,
    RequestAssembler,
    device_packets,
    host_packets,
    receive_response,
    send_request,
)
from hil_runner.protocol.tensors import FORMATS, TensorSpec, decode, make_desc, spec_from_desc


class FakeLink:
    """In-memory link: bytes queued for the host to read; everything the host writes is kept."""

    def __init__(self, incoming: bytes = b"") -> None:
        self.incoming = bytearray(incoming)
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data

    def read_some(self, n: int, timeout: float) -> bytes:
        if not self.incoming:
            time.sleep(min(timeout, 0.01))
            return b""
        data = bytes(self.incoming[:n])
        del self.incoming[:n]
        return data


def test_generated_code_is_current() -> None:
    assert regen.check() == []


def test_required_zero_fields_are_on_the_wire() -> None:
    # proto2: reqid=1, cmd=CMD_SYNC(0), param=0, name="", opt=0 -> every field present
    wire = pb.reqMsg(reqid=1, cmd=pb.CMD_SYNC, param=0, name="", opt=0).SerializeToString()
    assert wire == bytes.fromhex("0801100018002200" + "2800")
    resp = pb.respMsg(reqid=1, state=pb.S_IDLE, ack=pb.ackMsg(param=0, error=pb.E_NONE))
    assert resp.SerializeToString() == bytes.fromhex("08011000" + "62" + "04" + "08001000")


def test_field_numbers_follow_the_reference() -> None:
    numbers = {f.name: f.number for f in pb.respMsg.DESCRIPTOR.fields}
    assert numbers == {"reqid": 1, "state": 2, "sync": 10, "sinfo": 11, "ack": 12, "log": 13, "data": 15,
                       "op": 16, "tensor": 17, "minfo": 22}  # fmt: skip
    minfo = {f.name: f.number for f in pb.aiModelInfoMsg.DESCRIPTOR.fields}
    assert minfo["n_inputs"] == 10 and minfo["params"] == 17 and minfo["runtime_desc"] == 20
    assert {f.name: f.number for f in pb.syncMsg.DESCRIPTOR.fields} == {
        "version": 1,
        "capability": 4,
        "rtid": 5,
    }


def test_a_6144_byte_input_takes_193_packets() -> None:
    data = pb.aiDataMsg(type=0, size=6144, addr=0, datas=bytes(6144))
    packets = host_packets(data)
    assert len(packets) == 193 and all(len(p) == PACKET for p in packets)
    assert [p[0] for p in packets[:-1]] == [32] * 192 and 1 <= packets[-1][0] <= 32
    assert sum(p[0] for p in packets) == 6156  # the delimited aiDataMsg


def test_device_packets_are_full_and_flag_the_last() -> None:
    resp = pb.respMsg(reqid=7, state=pb.S_DONE, data=pb.aiDataMsg(type=0, size=70, addr=0, datas=bytes(70)))
    packets = device_packets(resp)
    assert [p[0] & 0x80 for p in packets] == [0] * (len(packets) - 1) + [0x80]
    assert all(p[0] == 32 for p in packets[:-1])
    parsed = receive_response(FakeLink(b"".join(packets)), pb.respMsg(), 1.0, "test")
    assert parsed == resp


def test_request_round_trip_through_the_device_assembler() -> None:
    message = pb.aiDataMsg(type=0, size=100, addr=0, datas=bytes(range(100)))
    assembler = RequestAssembler()
    bodies = [assembler.feed(packet) for packet in host_packets(message)]
    assert bodies[:-1] == [None] * (len(bodies) - 1)
    assert pb.aiDataMsg.FromString(bodies[-1]) == message


def test_host_waits_for_each_sync_byte() -> None:
    message = pb.aiDataMsg(type=0, size=100, addr=0, datas=bytes(100))
    n = len(host_packets(message))
    link = FakeLink(bytes([SYNC]) * (n - 1))
    send_request(link, message, sync_timeout=0.5)
    assert len(link.written) == n * PACKET and not link.incoming


def test_missing_sync_byte_is_a_timeout_naming_it() -> None:
    link = FakeLink()
    started = time.monotonic()
    with pytest.raises(ProtocolTimeout, match=r"sync byte 0xAA after request packet 1/"):
        send_request(link, pb.aiDataMsg(type=0, size=64, addr=0, datas=bytes(64)), sync_timeout=0.2)
    assert time.monotonic() - started < 1.0


def test_wrong_sync_byte_is_an_error() -> None:
    with pytest.raises(ProtocolError, match=r"expected sync byte 0xAA .* got 0x55"):
        send_request(FakeLink(b"\x55"), pb.aiDataMsg(type=0, size=64, addr=0, datas=bytes(64)), 0.2)


def test_garbled_header_names_what_was_expected() -> None:
    packet = bytearray(device_packets(pb.respMsg(reqid=1, state=pb.S_IDLE))[0])
    packet[0] = 0x7F
    with pytest.raises(ProtocolError, match=r"header 0x7f: expected a chunk length 0..32"):
        receive_response(FakeLink(bytes(packet)), pb.respMsg(), 1.0, "answer to CMD_SYNC")


def test_short_non_final_packet_header_is_an_error() -> None:
    packet = bytes([5]) + bytes(32)
    with pytest.raises(ProtocolError, match=r"non-final packet 1 header 0x05: expected a full 32-byte chunk"):
        receive_response(FakeLink(packet), pb.respMsg(), 1.0, "x")


def test_short_packet_times_out_instead_of_hanging() -> None:
    started = time.monotonic()
    with pytest.raises(ProtocolTimeout, match=r"expected 33 bytes, got 12"):
        receive_response(FakeLink(bytes(12)), pb.respMsg(), 0.3, "answer to CMD_SYS_INFO")
    assert time.monotonic() - started < 1.0


def test_undecodable_payload_is_an_error() -> None:
    packet = bytes([0x80 | 4]) + b"\xff\xff\xff\xff" + bytes(28)
    with pytest.raises(ProtocolError, match=r"expected a valid respMsg"):
        receive_response(FakeLink(packet), pb.respMsg(), 1.0, "x")


def test_format_codes_and_tensor_round_trip() -> None:
    assert FORMATS["float32"] == 0x00821040 and FORMATS["int8"] == 0x00840440
    spec = TensorSpec("in", np.dtype("int8"), (1, 64, 96, 1), 0.05472258, 40)
    desc = make_desc(spec, 1)
    assert desc.n_dims == (5 << 24) | 4 and list(desc.dims) == [1, 64, 96, 1] and desc.size == 6144
    back = spec_from_desc(desc, "t")
    assert back.shape == spec.shape and back.zero_point == 40 and abs(back.scale - 0.05472258) < 1e-7
    with pytest.raises(ProtocolError, match="expected 6144 bytes"):
        decode(bytes(10), back, "t")


def test_bhwc_rank2_and_size_mismatch() -> None:
    desc = pb.aiTensorDescMsg(name="o", format=FORMATS["float32"], size=10, n_dims=(2 << 24) | 2, dims=[1, 10],
                              scale=0.0, zeropoint=0, addr=0, flags=2)  # fmt: skip
    assert spec_from_desc(desc, "t").shape == (1, 1, 1, 10)
    desc.size = 20
    with pytest.raises(ProtocolError, match="declares 20 elements"):
        spec_from_desc(desc, "t")
