"""LabgridFarm logic against a scripted labgrid-client (the real coordinator runs in test_hil_labgrid.py)."""

from __future__ import annotations

import pytest

from hil_runner.farm.labgrid import LabgridError, LabgridFarm

SHOW = """Place '{place}':
  tags: board=b-u585i-iot02a
  acquired: host/user
Acquired resource 'NetworkSerialPort' (exp1/stm32u5-vboard-{n}/NetworkSerialPort/NetworkSerialPort):
  {{'acquired': '{place}',
   'avail': True,
   'cls': 'NetworkSerialPort',
   'params': {{'extra': {{'proxy': 'lab', 'proxy_required': False}},
              'host': '127.0.0.1',
              'port': 4000{n},
              'protocol': '{protocol}',
              'speed': 921600}}}}
"""


class ScriptedFarm(LabgridFarm):
    def __init__(self, places: list[str], protocol: str = "raw") -> None:
        super().__init__("127.0.0.1:1", client="labgrid-client")
        self.places, self.protocol = places, protocol
        self.reserved: dict[str, str] = {}  # token -> place
        self.acquired: set[str] = set()
        self.calls: list[tuple[str, ...]] = []

    def _call(self, *args: str, token: str | None = None, timeout: float = 30.0) -> str:
        self.calls.append(args)
        if args[0] == "reserve":
            free = [p for p in self.places if p not in self.reserved.values()]
            if not free:
                raise LabgridError("no place (would wait)")
            token = f"T{len(self.calls)}"
            self.reserved[token] = free[0]
            return f"export LG_TOKEN={token}\n"
        if args[0] == "cancel-reservation":
            self.reserved.pop(args[1])
            return ""
        if args[0] == "-p":
            place = self.reserved[args[1][1:]] if args[1].startswith("+") else args[1]
            if args[2] == "acquire":
                self.acquired.add(place)
            elif args[2] == "release":
                self.acquired.discard(place)
            elif args[2] == "show":
                return SHOW.format(place=place, n=self.places.index(place), protocol=self.protocol)
            return ""
        raise AssertionError(args)


def test_lease_reserves_acquires_opens_and_always_releases() -> None:
    farm = ScriptedFarm(["u585-a", "u585-b"])
    with farm.lease("b-u585i-iot02a") as lease:
        assert lease.board.name == "u585-a" and lease.descriptor == "socket:127.0.0.1:40000"
        assert lease.via == "labgrid:u585-a" and farm.acquired == {"u585-a"}
    assert not farm.acquired and not farm.reserved
    with pytest.raises(RuntimeError, match="job failed"), farm.lease("b-u585i-iot02a"):
        raise RuntimeError("job failed")
    assert not farm.acquired and not farm.reserved  # released and cancelled on failure too


def test_excluded_place_keeps_its_reservation_until_another_is_found() -> None:
    farm = ScriptedFarm(["u585-a", "u585-b"])
    with farm.lease("b-u585i-iot02a", exclude={"u585-a"}) as lease:
        assert lease.board.name == "u585-b"
        assert set(farm.reserved.values()) == {"u585-a", "u585-b"}
    assert not farm.reserved and not farm.acquired
    with pytest.raises(LabgridError), farm.lease("b-u585i-iot02a", exclude={"u585-a", "u585-b"}):
        pass
    assert not farm.reserved


def test_ser2net_rfc2217_ports_and_unknown_protocols() -> None:
    farm = ScriptedFarm(["u585-a"], protocol="rfc2217")
    with farm.lease("b-u585i-iot02a") as lease:
        assert lease.descriptor == "rfc2217:127.0.0.1:40000:921600"
    farm = ScriptedFarm(["u585-a"], protocol="telnet")
    with (
        pytest.raises(LabgridError, match="protocol 'telnet' is not raw or rfc2217"),
        farm.lease("b-u585i-iot02a"),
    ):
        pass
    assert not farm.reserved and not farm.acquired
