"""Farm scale: boards are labgrid places tagged `board=<profile>`. A job reserves a matching place, acquires it,
opens its serial resource (NetworkSerialPort raw -> socket:, rfc2217 -> rfc2217: (how an exporter's ser2net shares
a USBSerialPort / RawSerialPort), local RawSerialPort / USBSerialPort -> serial:), gets the place's flash driver
when it exports a probe (hil_runner.farm.debugger), and always releases the place and cancels the reservation,
also when the job fails.

The coordinator is reached through labgrid's Python client (hil_runner.farm.coordinator): places, resources and
reservations are read as labgrid's data classes, and every call has a deadline, so that a wedged coordinator
cannot hang a job. One client session per farm is shared by the leases that are open at the same time (the
coordinator knows one session per connection) and closed with the last of them.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet

from aed.deadline import Deadline
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import BoardProfile, get_profile
from hil_runner.farm import Lease
from hil_runner.farm.coordinator import (
    CALL_TIMEOUT,
    CoordinatorSession,
    LabgridError,
    PlaceResource,
    with_port,
)
from hil_runner.farm.debugger import place_flasher

__all__ = ["LabgridError", "LabgridFarm", "serial_descriptor"]

SERIAL_CLASSES = ("NetworkSerialPort", "RawSerialPort", "USBSerialPort")


def serial_descriptor(place: str, resources: list[PlaceResource]) -> str:
    """The acquired place's serial resource as a transport descriptor."""
    for resource in resources:
        if resource.cls == "NetworkSerialPort":  # exported USB/raw serial ports arrive as ser2net rfc2217
            host, port = _param(place, resource, "host"), _param(place, resource, "port")
            protocol = resource.params.get("protocol", "rfc2217")
            if protocol == "raw":
                return f"socket:{host}:{port}"
            if protocol == "rfc2217":
                return f"rfc2217:{host}:{port}:{resource.params.get('speed', 115200)}"
            raise LabgridError(
                f"place {place}: NetworkSerialPort protocol {protocol!r} is not raw or rfc2217"
            )
        if resource.cls in SERIAL_CLASSES and resource.params.get("port"):
            return f"serial:{resource.params['port']}:{resource.params.get('speed', 115200)}"
    raise LabgridError(f"place {place}: no NetworkSerialPort / RawSerialPort resource acquired")


def _param(place: str, resource: PlaceResource, name: str) -> str:
    value = resource.params.get(name)
    if value in (None, ""):
        raise LabgridError(f"place {place}: resource {resource.name} ({resource.cls}) has no {name!r}")
    return str(value)


class LabgridFarm:
    """tools: flash tool per driver name ("openocd", "pyocd", "cubeprog"); default: $AED_OPENOCD, $AED_PYOCD,
    $AED_STM32_PROGRAMMER_CLI, else the tool's name on PATH."""

    def __init__(
        self,
        coordinator: str,
        wait_timeout: float = 120.0,
        call_timeout: float = CALL_TIMEOUT,
        tools: Mapping[str, str] | None = None,
        connect: Callable[[str, float], CoordinatorSession] = CoordinatorSession,
    ) -> None:
        with_port(coordinator)  # a malformed address is refused now, not at the first lease
        self.coordinator = coordinator
        self.wait_timeout = wait_timeout
        self.call_timeout = call_timeout
        self.tools = dict(tools or {})
        self._connect = connect
        self._lock = threading.Lock()
        self._session: CoordinatorSession | None = None
        self._users = 0

    @contextlib.contextmanager
    def session(self) -> Iterator[CoordinatorSession]:
        """The farm's client session, opened by the first user and closed by the last one."""
        with self._lock:
            if self._session is None:
                self._session = self._connect(self.coordinator, self.call_timeout)
            self._users += 1
            session = self._session
        try:
            yield session
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._session is session:
                    self._session = None
                    session.close()

    @contextlib.contextmanager
    def lease(self, profile: str, exclude: AbstractSet[str] = frozenset()) -> Iterator[Lease]:
        board_profile = get_profile(profile)
        with self.session() as session:
            # Reservations of excluded places stay held so that the next one lands elsewhere.
            tokens: list[str] = []
            try:
                place = self._reserve(session, profile, exclude, tokens)
                try:
                    session.acquire(place)
                    yield self._lease_of(session, place, board_profile)
                finally:  # also after a failed or timed-out acquire: release only ever frees our own hold
                    with contextlib.suppress(LabgridError):
                        session.release(place)
            finally:
                for token in tokens:
                    with contextlib.suppress(LabgridError):
                        session.cancel(token)

    def _reserve(
        self, session: CoordinatorSession, profile: str, exclude: AbstractSet[str], tokens: list[str]
    ) -> str:
        deadline = Deadline(self.wait_timeout)  # for the whole search, however many places are skipped
        for _ in range(len(exclude) + 1):
            tokens.append(session.reserve({"board": profile}))
            place = session.wait_allocated(tokens[-1], deadline)
            if place not in exclude:
                return place
        raise LabgridError(f"every {profile} place handed out already failed in this job: {sorted(exclude)}")

    def _lease_of(self, session: CoordinatorSession, place: str, profile: BoardProfile) -> Lease:
        resources = session.resources(place)
        descriptor = serial_descriptor(place, resources)
        state = session.places().get(place)
        if state is None:
            raise LabgridError(f"place {place}: deleted from the coordinator while being acquired")
        flasher = place_flasher(place, profile, resources, state.tags, self.tools)
        board = Board(
            name=place,
            profile=profile,
            port=descriptor,
            flash=flasher.name if flasher else "none",
        )
        return Lease(board=board, descriptor=descriptor, via=f"labgrid:{place}", flasher=flasher)
