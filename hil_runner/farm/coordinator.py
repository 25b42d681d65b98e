"""A bounded session with a labgrid coordinator, through labgrid's own Python client (`ClientSession`).

The session keeps labgrid's view of places and resources up to date (its subscription stream); reservations and
place acquisition are the coordinator's gRPC calls on the session's channel (the coordinator ties reservations and
acquisitions to that session's `host/user` name). Answers come back as labgrid's data classes, read field by field,
never as printed text.

Every call is a coroutine run under `asyncio.wait_for` on one event loop thread shared by the process's sessions
(the caller waits on its result, with a margin, never longer): a coordinator that accepts the connection and then
stays silent costs at most the call's time-out, after which the call is cancelled and a `LabgridError` names the
coordinator, the call and the time waited.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aed.deadline import Deadline
from hil_runner.errors import HilError

T = TypeVar("T")

CALL_TIMEOUT = 30.0  # one coordinator round trip (connect, acquire, release, cancel)
POLL_INTERVAL = 0.5  # between polls of a waiting reservation
CLOSE_TIMEOUT = 5.0  # stopping the session's stream and channel
DEFAULT_PORT = 20408

log = logging.getLogger(__name__)


class LabgridError(HilError):
    pass


def with_port(address: str) -> str:
    """host[:port] -> host:port, labgrid's default port 20408 when none is given."""
    try:
        parts = urlsplit(f"//{address}")
        port = parts.port
    except ValueError as error:
        raise LabgridError(f"labgrid coordinator address {address!r} is not host[:port]: {error}") from None
    malformed = (
        parts.username or parts.path or parts.query or parts.fragment or any(c.isspace() for c in address)
    )
    if not parts.hostname or malformed:
        raise LabgridError(f"labgrid coordinator address {address!r} is not host[:port]")
    return address if port is not None else f"{address}:{DEFAULT_PORT}"


@dataclass(frozen=True)
class PlaceResource:
    """One resource an acquired place holds, as the coordinator describes it (labgrid `ResourceEntry`)."""

    name: str  # the match's rename, else the resource name
    cls: str  # labgrid resource class, e.g. NetworkSerialPort, NetworkUSBDebugger
    params: dict[str, Any]  # the resource's arguments (labgrid's `extra` left out)
    avail: bool


@dataclass(frozen=True)
class PlaceState:
    name: str
    tags: dict[str, str]
    acquired: str | None  # "host/user" of the holder
    reservation: str | None  # token of the reservation the place is allocated to


class _LoopThread:
    """The event loop every session of this process runs on, in one daemon thread: gRPC's asyncio layer cannot
    serve several event loops at once, and parallel jobs (threads) each hold a session."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="labgrid-client", daemon=True).start()
                cls._loop = loop
            return cls._loop


class CoordinatorSession:
    """One labgrid ClientSession; close() it (or use it as a context manager). Thread-safe per call."""

    def __init__(self, address: str, timeout: float = CALL_TIMEOUT) -> None:
        self.address = address
        self.timeout = timeout
        self.loop = _LoopThread.get()
        self.session: Any = None
        try:
            self._run(self._open(), "connect")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> CoordinatorSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _open(self) -> None:
        from labgrid.remote.client import ClientSession

        # Kept before start() so that close() also stops a session whose start timed out.
        self.session = ClientSession(with_port(self.address), asyncio.get_running_loop())
        await self.session.start()

    def _run(
        self,
        coroutine: Coroutine[Any, Any, T],
        what: str,
        timeout: float | Deadline | None = None,
        expiry: str = "no answer",
    ) -> T:
        import grpc
        from labgrid.remote.client import Error as ClientError

        limit = Deadline.of(self.timeout if timeout is None else timeout)
        remaining = limit.remaining()
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, remaining), self.loop)
        try:
            # The margin covers a cancellation that labgrid's code absorbs: this thread never waits longer.
            return future.result(remaining + CLOSE_TIMEOUT)
        except TimeoutError:  # wait_for's expiry, or the margin above
            future.cancel()
            raise LabgridError(
                f"labgrid coordinator {self.address}: {what}: {limit.describe()}; {expiry}"
            ) from None
        except grpc.aio.AioRpcError as error:
            raise LabgridError(f"labgrid coordinator {self.address}: {what}: {error.details()}") from None
        except ClientError as error:  # labgrid's own (ServerError / UserError): a message, not a bug
            raise LabgridError(f"labgrid coordinator {self.address}: {what}: {_text(error)}") from None
        except OSError as error:
            raise LabgridError(f"labgrid coordinator {self.address}: {what}: {error}") from None

    # -- reading: labgrid's Place / ResourceEntry objects, field by field, on the loop that updates them --------

    def places(self) -> dict[str, PlaceState]:
        return self._run(self._places(), "read places")

    def resources(self, place: str) -> list[PlaceResource]:
        """The resources of a place this session has acquired."""
        return self._run(self._resources(place), f"read the resources of place {place}")

    def reservation_tokens(self) -> list[str]:
        return self._run(self._reservation_tokens(), "get reservations")

    async def _places(self) -> dict[str, PlaceState]:
        await self._sync()
        return {
            name: PlaceState(name, dict(place.tags), place.acquired, place.reservation)
            for name, place in self.session.places.items()
        }

    async def _resources(self, place: str) -> list[PlaceResource]:
        await self._sync()
        entries = self.session.get_target_resources(self.session.get_place(place))
        return [
            PlaceResource(name=name, cls=cls, params=dict(entry.args), avail=bool(entry.avail))
            for (name, cls), entry in sorted(entries.items())
        ]

    async def _reservation_tokens(self) -> list[str]:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        response = await self.session.stub.GetReservations(pb.GetReservationsRequest())
        return sorted(reservation.token for reservation in response.reservations)

    # -- acting: reserve, acquire, release, cancel --------------------------------------------------------------

    def reserve(self, tags: dict[str, str]) -> str:
        """Create a reservation for a place carrying these tags; returns its token."""
        return self._run(self._create_reservation(tags), "create reservation")

    def wait_allocated(self, token: str, timeout: float | Deadline) -> str:
        """Poll the reservation until the coordinator allocates a place to it; returns the place name."""
        return self._run(
            self._wait_allocated(token),
            f"wait for reservation {token}",
            timeout=timeout,
            expiry="no place with the wanted tags became free (all busy, or none tagged so)",
        )

    def acquire(self, place: str) -> None:
        self._run(self._acquire(place), f"acquire place {place}")

    def release(self, place: str) -> None:
        self._run(self._release(place), f"release place {place}")

    def cancel(self, token: str) -> None:
        self._run(self._cancel(token), f"cancel reservation {token}")

    async def _sync(self) -> None:
        if not await self.session.sync_with_coordinator():
            raise LabgridError(f"labgrid coordinator {self.address}: the session's stream has stopped")

    async def _create_reservation(self, tags: dict[str, str]) -> str:
        from labgrid.remote.common import Reservation
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter=tags)}, prio=0.0)
        response = await self.session.stub.CreateReservation(request)
        return Reservation.from_pb2(response.reservation).token

    async def _wait_allocated(self, token: str) -> str:
        from labgrid.remote.common import Reservation, ReservationState
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        while True:  # bounded by the caller's wait_for
            response = await self.session.stub.PollReservation(pb.PollReservationRequest(token=token))
            reservation = Reservation.from_pb2(response.reservation)
            allocated = reservation.allocations.get("main")
            if reservation.state in (ReservationState.allocated, ReservationState.acquired) and allocated:
                return allocated[0]
            if reservation.state is not ReservationState.waiting:
                raise LabgridError(f"labgrid reservation {token} is {reservation.state.name}")
            await asyncio.sleep(POLL_INTERVAL)

    async def _acquire(self, place: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        await self.session.stub.AcquirePlace(pb.AcquirePlaceRequest(placename=place))
        await self._sync()  # the place's acquired resources are in the session's view after this

    async def _release(self, place: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        # `fromuser`: the coordinator frees the place only if this host/user holds it (else does nothing)
        holder = f"{self.session.gethostname()}/{self.session.getuser()}"
        await self.session.stub.ReleasePlace(pb.ReleasePlaceRequest(placename=place, fromuser=holder))
        await self._sync()

    async def _cancel(self, token: str) -> None:
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

        await self.session.stub.CancelReservation(pb.CancelReservationRequest(token=token))

    # -- closing: bounded too, and nothing left on the loop -----------------------------------------------------

    @staticmethod
    async def _shut(session: Any) -> None:
        if session.pump_task is not None:
            await session.stop()
        await session.close()

    def close(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        try:
            self._run(self._shut(session), "close", timeout=CLOSE_TIMEOUT)
        except LabgridError as error:  # the reservation and place are already handled; only log it
            log.warning("%s", error)


def _text(error: BaseException) -> str:
    return " ".join(str(arg) for arg in error.args)
