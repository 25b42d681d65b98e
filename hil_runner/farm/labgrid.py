"""Farm scale: boards are labgrid places tagged `board=<profile>`. A job reserves a matching place, acquires it,
opens its serial resource (NetworkSerialPort raw -> socket:, rfc2217 -> rfc2217: (how an exporter's ser2net shares
a USBSerialPort / RawSerialPort), local RawSerialPort / USBSerialPort -> serial:) and always releases
the place and cancels the reservation, also when the job fails.

labgrid-client is driven as a subprocess (each call with a deadline, its process group killed on expiry) so that a
wedged coordinator cannot hang a job.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import sys
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

from aed.deadline import ProcessTimeout, run_with_deadline
from hil_runner.boards.inventory import Board
from hil_runner.boards.profiles import get_profile
from hil_runner.errors import HilError
from hil_runner.farm import Lease

CALL_TIMEOUT = 30.0


class LabgridError(HilError):
    pass


def client_path() -> str:
    """labgrid-client from the running interpreter's environment (the venv), else PATH."""
    candidate = Path(sys.executable).parent / "labgrid-client"
    return str(candidate) if candidate.exists() else "labgrid-client"


class LabgridFarm:
    def __init__(self, coordinator: str, wait_timeout: float = 120.0, client: str | None = None) -> None:
        self.coordinator = coordinator
        self.wait_timeout = wait_timeout
        self.client = client or client_path()

    def _call(self, *args: str, token: str | None = None, timeout: float = CALL_TIMEOUT) -> str:
        env = {**os.environ, "LG_COORDINATOR": self.coordinator}
        env.pop("LG_PLACE", None)
        if token:
            env["LG_TOKEN"] = token
        argv = [self.client, *args]
        try:
            result = run_with_deadline(argv, timeout, f"labgrid-client {' '.join(args)}", env=env)
        except ProcessTimeout as error:
            raise LabgridError(f"{error}; no answer from the coordinator {self.coordinator}") from None
        except FileNotFoundError:
            raise LabgridError(f"{self.client}: labgrid-client not found") from None
        except OSError as error:
            raise LabgridError(f"{self.client}: cannot run labgrid-client ({error})") from None
        if result.returncode != 0:
            raise LabgridError(
                f"labgrid-client {' '.join(args)} failed: {result.stderr.strip() or result.stdout}"
            )
        return result.stdout

    def reserve(self, profile: str) -> str:
        out = self._call("reserve", "--wait", "--shell", f"board={profile}", timeout=self.wait_timeout)
        match = re.search(r"LG_TOKEN=(\S+)", out)
        if not match:
            raise LabgridError(f"labgrid-client reserve: no token in {out!r}")
        return match.group(1)

    def place_of(self, token: str) -> str:
        out = self._call("-p", f"+{token}", "show", token=token)
        match = re.search(r"Place '([^']+)'", out)
        if not match:
            raise LabgridError(f"labgrid-client show: no place for reservation {token}")
        return match.group(1)

    def serial_descriptor(self, place: str) -> str:
        """The acquired place's serial resource as a transport descriptor."""
        out = self._call("-p", place, "show")
        blocks = re.split(r"^Acquired resource '[^']*' \((\S+)\):\s*$", out, flags=re.MULTILINE)
        for path, body in zip(blocks[1::2], blocks[2::2], strict=False):
            cls = path.split("/")[2]
            try:  # labgrid prints the resource as pformat(dict): literals only
                params = ast.literal_eval(body.strip()).get("params", {})
            except (ValueError, SyntaxError, AttributeError) as error:
                raise LabgridError(f"place {place}: cannot read resource {path}: {error}") from None
            if cls == "NetworkSerialPort":  # exported USB/raw serial ports arrive as ser2net rfc2217
                protocol = params.get("protocol", "rfc2217")
                if protocol == "raw":
                    return f"socket:{params['host']}:{params['port']}"
                if protocol == "rfc2217":
                    return f"rfc2217:{params['host']}:{params['port']}:{params.get('speed', 115200)}"
                raise LabgridError(
                    f"place {place}: NetworkSerialPort protocol {protocol!r} is not raw or rfc2217"
                )
            if cls in ("RawSerialPort", "USBSerialPort") and params.get("port"):
                return f"serial:{params['port']}:{params.get('speed', 115200)}"
        raise LabgridError(f"place {place}: no NetworkSerialPort / RawSerialPort resource acquired")

    @contextlib.contextmanager
    def lease(self, profile: str, exclude: AbstractSet[str] = frozenset()) -> Iterator[Lease]:
        get_profile(profile)
        tokens: list[str] = []  # reservations of excluded places stay held so the next one lands elsewhere
        place = None
        acquired = False
        try:
            for _ in range(len(exclude) + 1):
                tokens.append(self.reserve(profile))
                place = self.place_of(tokens[-1])
                if place not in exclude:
                    break
            else:
                raise LabgridError(
                    f"every {profile} place handed out already failed in this job: {sorted(exclude)}"
                )
            self._call("-p", place, "acquire")
            acquired = True
            descriptor = self.serial_descriptor(place)
            board = Board(name=place, profile=get_profile(profile), port=descriptor, flash="none")
            yield Lease(board=board, descriptor=descriptor, via=f"labgrid:{place}")
        finally:
            with contextlib.suppress(LabgridError):
                if acquired and place:
                    self._call("-p", place, "release")
            for token in tokens:
                with contextlib.suppress(LabgridError):
                    self._call("cancel-reservation", token)
