"""Devices shared through a labgrid coordinator (the optional extra `neighcheck[labgrid]`).

(Not named labgrid.py: a process started in harness/ would import it as `labgrid`.)

A lab with dozens of devices, wired to several harness hosts and shared by many CI jobs and
people, already runs labgrid's coordinator: it reserves, queues and locks *places* across hosts.
neighcheck uses it instead of a scheduler of its own. A device whose inventory entry names a
place (`[device.labgrid] place = "..."`) is, for a run:

1. reserved through the coordinator (a reservation filtered on the place's name: the
   coordinator queues waiting reservations by priority and age, so runs that want one place are
   served in turn, and a place allocated to a waiting run is not taken by another);
2. waited for, at most `--place-wait` seconds (the one bounded wait, harness.waits.poll_until);
3. acquired (labgrid's lock: `labgrid-client who` shows it, other clients are refused);
4. resolved: the SSH host, user and port the inventory leaves out come from the place's
   NetworkService resource;
5. released after the device's last case, also after a failure or Ctrl-C (harness/plugin/
   devices.py), and the reservation cancelled.

The on-device lock (harness/device/lock.py) stays as a second guard: a device reached outside
labgrid is still never driven by two runs at once.

Everything that goes wrong here is one DeviceError per device (the run's other devices go on):
no labgrid installed, a coordinator that cannot be reached, a place that does not exist or has
no usable NetworkService, a place still taken when the wait is over, a release that failed.
The coordinator is talked to through labgrid's own client session (labgrid.remote.client), on
an event loop of this object's own; every call has a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from harness.errors import DeviceError
from harness.inventory import USER_NAME, Device, LabgridConfig, host_problem
from harness.waits import poll_until

DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default (labgrid-client, the pytest plugin)
INSTALL_HINT = "pip install 'neighcheck[labgrid]'"
DEFAULT_PLACE_WAIT = 600.0  # a shared lab's place may be busy for another job's whole suite
CONNECT_TIMEOUT = 10.0  # opening a client session (a blackholed coordinator never answers)
CALL_TIMEOUT = 10.0  # one request to the coordinator
# Reservation states (labgrid.remote.common.ReservationState; the wire carries the number).
WAITING, ALLOCATED, ACQUIRED, EXPIRED, INVALID = range(5)


class PlaceError(DeviceError):
    """A labgrid place could not be had, resolved or released."""


def coordinator_address(option: str | None) -> str:
    """Where the coordinator is, as labgrid's own tools find it: --lg-coordinator, else
    LG_COORDINATOR, else labgrid's default."""
    return option or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR


@dataclass(frozen=True)
class NetworkService:
    """The SSH endpoint a place's NetworkService resource gives."""

    path: str  # exporter/group/cls/name, as `labgrid-client resources` shows it
    address: str
    username: str | None
    port: int | None


@dataclass
class Claim:
    """An acquired place (release it with Coordinator.release)."""

    device: str
    place: str
    coordinator: str
    token: str  # the reservation's
    owner: str  # host/user, as the coordinator records who acquired it
    service: NetworkService
    waited_s: float
    acquired_at: float  # time.time()

    def info(self) -> dict[str, Any]:
        """What results.json and the JUnit properties record about the place."""
        when = datetime.fromtimestamp(self.acquired_at, timezone.utc).isoformat(timespec="milliseconds")
        return {"place": self.place, "coordinator": self.coordinator, "resource": self.service.path,
                "acquired_by": self.owner, "acquired_at": when.replace("+00:00", "Z"),
                "waited_s": round(self.waited_s, 3)}


def resolve(device: Device, service: NetworkService) -> Device:
    """The device with the SSH settings its inventory left out taken from the NetworkService;
    what the inventory gives always wins. The place is hostile input too: its values pass the
    inventory's own rules."""
    config = device.labgrid
    assert config is not None
    ssh, login = device.ssh, device.ssh.login
    where = f"device {device.name!r}: labgrid place {config.place!r}: NetworkService {service.path}"
    host = ssh.host
    if "host" in config.from_place:
        problem = host_problem(service.address)
        if problem:
            raise PlaceError(f"{where}: address {service.address!r} {problem}; fix the exporter's "
                             "configuration, or set ssh.host in the inventory")
        host = service.address
    user = login.user
    if "user" in config.from_place:
        if not service.username:
            raise PlaceError(f"{where} gives no username; set ssh.user in the inventory")
        if not USER_NAME.ok(service.username):
            raise PlaceError(f"{where}: username {service.username!r} is not allowed ({USER_NAME.words}); "
                             "set ssh.user in the inventory")
        user = service.username
    port = ssh.port
    if "port" in config.from_place and service.port is not None:
        if not 1 <= service.port <= 65535:
            raise PlaceError(f"{where}: port {service.port} is out of range; set ssh.port in the inventory")
        port = service.port
    return replace(device, ssh=replace(ssh, host=host, port=port, login=replace(login, user=user)))


class _LabgridLog(logging.Filter):
    """Keeps the client's log lines (it logs through the root logger) off the terminal and the
    case output while a call runs; the last error it logged explains a failed connect."""

    def __init__(self) -> None:
        super().__init__()
        self.last_error = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}labgrid{os.sep}" not in record.pathname:
            return True
        if record.levelno >= logging.ERROR:
            self.last_error = record.getMessage()
        return False

    def __enter__(self) -> "_LabgridLog":
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.getLogger().removeFilter(self)


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """The process's one loop for talking to coordinators (gRPC's asyncio layer is bound to the
    loops it was used from; one loop per process, used from the main thread, keeps it simple)."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


class Coordinator:
    """A labgrid coordinator, reached through labgrid's client session (on _loop())."""

    def __init__(self, address: str):
        self.address = address

    # --- plumbing ------------------------------------------------------------------------
    @staticmethod
    def _run(coro, timeout: float = CALL_TIMEOUT):
        return _loop().run_until_complete(asyncio.wait_for(coro, timeout))

    def _rpc(self, session, method: str, request):
        """One request, made inside our running loop: a gRPC call made outside it binds to
        another event loop (the thread's default), whose completions then come late or never."""
        async def call():
            return await getattr(session.stub, method)(request)
        return self._run(call())

    def _open(self, device: str):
        """A started ClientSession (it subscribes to every place and resource)."""
        try:
            from labgrid.remote.client import ClientSession
            from labgrid.util.proxy import proxymanager
        except ImportError:
            raise PlaceError(f"device {device!r} names a labgrid place, but labgrid is not installed "
                             f"here; install the extra: {INSTALL_HINT}") from None
        target = proxymanager.get_grpc_address(self.address, default_port=20408)

        async def start():
            # Made inside the loop: the gRPC channel belongs to the loop it is created in.
            session = ClientSession(target, asyncio.get_running_loop())
            try:
                await session.start()
            except BaseException:
                await _stop(session)
                raise
            return session

        with _LabgridLog() as log:
            try:
                return self._run(start(), CONNECT_TIMEOUT)
            except (asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - one message
                why = log.last_error or (f"no answer within {CONNECT_TIMEOUT:g} s"
                                         if isinstance(exc, asyncio.TimeoutError) else str(exc))
                raise PlaceError(f"device {device!r}: the labgrid coordinator at {self.address} cannot "
                                 f"be reached ({why}); start it, or point --lg-coordinator (or "
                                 "LG_COORDINATOR) at it") from None

    def _close(self, session) -> None:
        with _LabgridLog():
            try:
                self._run(_stop(session), CALL_TIMEOUT)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - the session is gone either way
                pass

    def _call(self, session, method: str, request, device: str, what: str):
        """One request; a gRPC error or a timeout is a PlaceError saying `what` failed."""
        import grpc
        with _LabgridLog():
            try:
                return self._rpc(session, method, request)
            except grpc.aio.AioRpcError as exc:
                raise PlaceError(f"device {device!r}: {what}: {exc.details()}") from None
            except asyncio.TimeoutError:
                raise PlaceError(f"device {device!r}: {what}: the coordinator at {self.address} did not "
                                 f"answer within {CALL_TIMEOUT:g} s") from None

    def _refresh(self, session, device: str) -> None:
        """Bring the session's view of places and resources up to date."""
        with _LabgridLog():
            try:
                current = self._run(session.sync_with_coordinator())
            except asyncio.TimeoutError:
                current = False
        if not current:
            raise PlaceError(f"device {device!r}: the labgrid coordinator at {self.address} stopped answering")

    # --- places --------------------------------------------------------------------------
    def _place(self, session, device: str, name: str):
        place = session.places.get(name)  # the exact name: no substring or alias matching
        if place is None:
            known = ", ".join(sorted(session.places)) or "none"
            raise PlaceError(f"device {device!r}: labgrid place {name!r} does not exist on the coordinator "
                             f"at {self.address} (places: {known}); create it (labgrid-client -p {name} "
                             "create) or fix [device.labgrid] place")
        return place

    def _service(self, session, device: str, place, config: LabgridConfig,
                 acquired: bool) -> NetworkService:
        """The place's NetworkService: among the resources it acquired, or (before acquiring)
        among those its matches select now."""
        if acquired:
            paths = [tuple(p) for p in place.acquired_resources]
        else:
            paths = [(exporter, group, entry.cls, name)
                     for exporter, groups in session.resources.items()
                     for group, resources in groups.items() for name, entry in resources.items()
                     if place.hasmatch((exporter, group, entry.cls, name))]
        found = []
        for path in paths:
            exporter, group, cls, name = path
            if cls != "NetworkService":
                continue
            entry = session.resources.get(exporter, {}).get(group, {}).get(name)
            if entry is None:
                continue  # its exporter went away
            match = place.getmatch(path)
            found.append((match.rename if match is not None and match.rename else name, path, entry))
        where = f"device {device!r}: labgrid place {config.place!r}"
        if config.resource is not None:
            found = [f for f in found if f[0] == config.resource]
            if not found:
                raise PlaceError(f"{where} has no NetworkService named {config.resource!r}; fix "
                                 "[device.labgrid] resource, or the place's matches")
        if not found:
            matches = ", ".join(repr(m) for m in place.matches) or "none"
            raise PlaceError(f"{where} has no usable NetworkService resource (its matches: {matches}); "
                             "export one with the device's SSH address (is its exporter running?) and "
                             f"match it: labgrid-client -p {config.place} add-match EXPORTER/GROUP/NetworkService")
        if len(found) > 1:
            names = ", ".join(sorted(f[0] for f in found))
            raise PlaceError(f"{where} has several NetworkService resources ({names}); name the SSH one "
                             "with [device.labgrid] resource = \"...\"")
        _, path, entry = found[0]
        params = entry.args
        port = params.get("port")
        return NetworkService(path="/".join(path), address=str(params.get("address") or ""),
                              username=params.get("username") or None,
                              port=int(port) if isinstance(port, (int, float)) else None)

    def lookup(self, device: Device) -> NetworkService:
        """The place's NetworkService, without reserving or acquiring it (doctor)."""
        config = device.labgrid
        assert config is not None
        session = self._open(device.name)
        try:
            return self._service(session, device.name, self._place(session, device.name, config.place),
                                 config, acquired=False)
        finally:
            self._close(session)

    def claim(self, device: Device, wait: float) -> Claim:
        """Reserve, wait for (at most `wait` s) and acquire the device's place; its NetworkService."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        config = device.labgrid
        assert config is not None
        name, started = device.name, time.monotonic()
        session = self._open(name)
        try:
            place = self._place(session, name, config.place)
            self._service(session, name, place, config, acquired=False)  # unusable: say so now, not after the wait
            request = pb.CreateReservationRequest(
                filters={"main": pb.Reservation.Filter(filter={"name": config.place})}, prio=0.0)
            token = self._call(session, "CreateReservation", request, name,
                               f"cannot reserve labgrid place {config.place!r}").reservation.token
            owner = f"{session.gethostname()}/{session.getuser()}"
            acquired = False
            try:
                acquired = poll_until(lambda: self._try_acquire(session, name, config.place, token),
                                      timeout=wait, delay=0.1, max_delay=0.5, backoff=1.5)
                if not acquired:
                    raise self._still_taken(session, name, config.place, wait)
                self._refresh(session, name)
                service = self._service(session, name, session.places[config.place], config, acquired=True)
            except BaseException as exc:
                # Also when Ctrl-C came while AcquirePlace was on its way: ours if the place is
                # both reserved for our token and acquired in our name.
                acquired = acquired or self._ours(session, name, config.place, token, owner)
                try:
                    self._give_back(session, config.place, token, owner, acquired)
                except PlaceError as also:
                    if isinstance(exc, PlaceError):
                        exc.args = (f"{exc}; and giving the place back failed: {also}",)
                raise
            return Claim(device=name, place=config.place, coordinator=self.address, token=token,
                         owner=owner, service=service, waited_s=time.monotonic() - started,
                         acquired_at=time.time())
        finally:
            self._close(session)

    def _try_acquire(self, session, device: str, place: str, token: str) -> bool:
        """One poll of our reservation (polling also keeps it alive); acquire once allocated."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        import grpc
        what = f"labgrid place {place!r}: reservation {token}"
        reservation = self._call(session, "PollReservation", pb.PollReservationRequest(token=token),
                                 device, what).reservation
        if reservation.state in (EXPIRED, INVALID):
            raise PlaceError(f"device {device!r}: {what} is {'expired' if reservation.state == EXPIRED else 'invalid'} "
                             "(was the place deleted?)")
        if reservation.state != ALLOCATED or reservation.allocations.get("main") != place:
            return False
        with _LabgridLog():
            try:
                self._rpc(session, "AcquirePlace", pb.AcquirePlaceRequest(placename=place))
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION and "already acquired" in (exc.details() or ""):
                    return False  # taken by a client that did not reserve: wait for it like the rest
                raise PlaceError(f"device {device!r}: cannot acquire labgrid place {place!r}: "
                                 f"{exc.details()}") from None
            except asyncio.TimeoutError:
                raise PlaceError(f"device {device!r}: acquiring labgrid place {place!r}: no answer from "
                                 f"{self.address} within {CALL_TIMEOUT:g} s") from None
        return True

    def _ours(self, session, device: str, place: str, token: str, owner: str) -> bool:
        try:
            self._refresh(session, device)
        except Exception:  # noqa: BLE001 - unknown: leave it to the holder check
            return False
        current = session.places.get(place)
        return current is not None and current.reservation == token and current.acquired == owner

    def _still_taken(self, session, device: str, place: str, wait: float) -> PlaceError:
        holder = ""
        try:
            self._refresh(session, device)
            current = session.places.get(place)
            if current is not None and current.acquired:
                holder = f" (acquired by {current.acquired})"
            elif current is not None and current.reservation:
                holder = " (reserved for another run)"
        except Exception:  # noqa: BLE001 - the message is still right without the holder
            pass
        return PlaceError(f"device {device!r}: labgrid place {place!r} is still taken{holder} after waiting "
                          f"{wait:g} s (--place-wait); try later, or, if its holder is gone, release it: "
                          f"labgrid-client -p {place} release --kick")

    def _give_back(self, session, place: str, token: str, owner: str, acquired: bool) -> None:
        """Cancel the reservation, then release the place (when acquired); best effort, every
        call bounded. In this order the next run's reservation is served at once: the
        coordinator makes a place available only in the scheduling pass after the one that saw
        its reservation go, and a release runs one (the other order waits for its timer)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb
        import grpc
        calls = [("CancelReservation", pb.CancelReservationRequest(token=token))]
        if acquired:
            calls.append(("ReleasePlace", pb.ReleasePlaceRequest(placename=place, fromuser=owner)))
        problems = []
        for method, request in calls:
            with _LabgridLog():
                try:
                    self._rpc(session, method, request)
                except grpc.aio.AioRpcError as exc:
                    if method == "ReleasePlace" or exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        problems.append(f"{method}: {exc.details()}")
                except asyncio.TimeoutError:
                    problems.append(f"{method}: no answer within {CALL_TIMEOUT:g} s")
        if problems:
            raise PlaceError("; ".join(problems))

    def release(self, claim: Claim) -> None:
        """Release the place and cancel its reservation (a fresh session: the one that acquired
        it may be long gone). PlaceError naming the command to release it by hand."""
        try:
            session = self._open(claim.device)
            try:
                self._give_back(session, claim.place, claim.token, claim.owner, acquired=True)
            finally:
                self._close(session)
        except PlaceError as exc:
            raise PlaceError(f"device {claim.device!r}: labgrid place {claim.place!r} may still be acquired "
                             f"({exc}); release it by hand: labgrid-client -x {claim.coordinator} "
                             f"-p {claim.place} release") from None


async def _stop(session) -> None:
    try:
        await session.stop()
    finally:
        await session.close()


class Places:
    """The labgrid places of one process's devices: claimed when a device is opened, released
    when it is closed (harness/plugin/devices.py)."""

    def __init__(self, coordinator: str | None, wait: float):
        self.address = coordinator_address(coordinator)
        self.wait = wait
        self._coordinator: Coordinator | None = None
        self.claims: dict[str, Claim] = {}

    def _get(self) -> Coordinator:
        if self._coordinator is None:
            self._coordinator = Coordinator(self.address)
        return self._coordinator

    def claim(self, device: Device) -> Device:
        """The device, resolved through its acquired place (devices without a place as they are)."""
        if device.labgrid is None:
            return device
        claim = self._get().claim(device, self.wait)
        self.claims[device.name] = claim
        try:
            return resolve(device, claim.service)
        except PlaceError:
            self.release(device.name)
            raise

    def release(self, name: str) -> None:
        claim = self.claims.pop(name, None)
        if claim is not None:
            self._get().release(claim)

    def info(self, name: str) -> dict[str, Any] | None:
        claim = self.claims.get(name)
        return claim.info() if claim is not None else None

    def close(self) -> None:
        """Release what is still claimed (every release is tried)."""
        problems = []
        for name in list(self.claims):
            try:
                self.release(name)
            except PlaceError as exc:
                problems.append(str(exc))
        if problems:
            raise PlaceError("; ".join(problems))

