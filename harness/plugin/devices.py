"""The devices of one pytest process: opened on a device's first case, each with its lock,
agent and responder; closed after its last case (or at the end, whatever happened), which
removes what the harness planted. A device that could not be opened, or was lost mid-run,
stays an error for the rest of the run: its remaining cases error at once.

A device that names a labgrid place is acquired through the coordinator before it is opened
(its SSH address may come from the place) and released when it is closed, also when opening it
failed, and at the end whatever happened (harness/places.py)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from harness.errors import NeighcheckError
from harness.places import DEFAULT_PLACE_WAIT


class DeviceClosed(NeighcheckError):
    pass


class DeviceSessions:
    def __init__(self, inventory, *, run_dir: Path, run_id: str, entries: int, scale_entries: int,
                 lock_wait: float, serve: bool = True, coordinator: str | None = None,
                 place_wait: float = DEFAULT_PLACE_WAIT):
        self.inventory = inventory
        self.run_dir = run_dir
        self.run_id = run_id
        self.entries = entries
        self.scale_entries = scale_entries
        self.lock_wait = lock_wait
        self.serve = serve
        self.duts: dict[str, Any] = {}  # device name -> DeviceUnderTest or the error that stopped it
        self.seeder = None
        self.coordinator = coordinator  # labgrid's, for devices with a place (--lg-coordinator)
        self.place_wait = place_wait
        self.places = None  # harness.places.Places, made for the first device with a place

    def open(self, name: str):
        """The opened device for `name`, opening it on first use; re-raises a failed open."""
        known = self.duts.get(name)
        if isinstance(known, Exception):
            raise known
        if known is not None:
            try:
                known.ensure_held()
            except NeighcheckError as lost:
                # Gone mid-run: close what can be closed now; every later case errors at once.
                try:
                    self.close(name)
                except NeighcheckError:
                    pass  # recorded with the device (cleanup) by close
                self.duts[name] = lost
                raise
            return known
        from harness.device.dut import DeviceUnderTest
        from harness.traffic.seeding import Seeder
        device = self.inventory.device(name)
        try:
            if device.labgrid is not None:
                device = self._places().claim(device)  # acquired, its SSH address resolved
            if device.lab is not None:
                from harness.lab.netns import Lab
                lab = Lab(self.inventory)
                if not lab.is_up((device,)):
                    lab.up((device,))
            if self.seeder is None:
                self.seeder = Seeder(self.inventory.test_interfaces)
            holder = f"{socket.gethostname()} pid {os.getpid()} run {self.run_id}"
            dut = DeviceUnderTest(device, self.inventory, entries=self.entries, seeder=self.seeder,
                                  holder=holder, lock_wait=self.lock_wait, scale_entries=self.scale_entries,
                                  serve=self.serve)
            try:
                dut.open()
            except BaseException:
                _close_quietly(dut)
                raise
        except NeighcheckError as exc:
            self.duts[name] = exc
            self._release(name, exc)
            raise
        except BaseException:  # Ctrl-C while opening: the place still goes back
            try:
                self._release(name)
            except NeighcheckError as exc:
                print(f"neighcheck: {exc}", file=sys.stderr)
            raise
        self.duts[name] = dut
        self.write_info(dut)
        return dut

    def _places(self):
        if self.places is None:
            from harness.places import Places
            self.places = Places(self.coordinator, self.place_wait)
        return self.places

    def _release(self, name: str, error: NeighcheckError | None = None) -> None:
        """Give the device's labgrid place back (if it has one). A failure joins `error` (the
        device's own) when there is one, else it is raised."""
        if self.places is None:
            return
        try:
            self.places.release(name)
        except NeighcheckError as exc:
            if error is None:
                raise
            error.args = (f"{error}; and {exc}",)

    def output_before_replies(self, name: str) -> list[tuple[str, str]]:
        """What the device printed before its agent's replies so far (a login banner)."""
        dut = self.duts.get(name)
        agent = getattr(dut, "agent", None) if not isinstance(dut, Exception) else None
        return agent.output_before_replies if agent is not None else []

    def close(self, name: str) -> None:
        dut = self.duts.get(name)
        if dut is not None and not isinstance(dut, Exception):
            try:
                dut.close()
                self.write_info(dut)  # what the run learned of the device (e.g. static entries refused)
            except NeighcheckError as exc:
                # The device may be left dirty: say so in the results, not only in a log.
                self.write_info(dut, cleanup=str(exc))
                raise
            except KeyboardInterrupt:
                self.write_info(dut, cleanup="interrupted before its cleanup finished")
                raise
            finally:
                self.duts[name] = DeviceClosed(f"device {name!r} was already closed")
                # After the device is clean and unlocked, whatever happened; a failed release
                # joins the close's own error, and never hides a Ctrl-C.
                pending = sys.exc_info()[1]
                try:
                    self._release(name, pending if isinstance(pending, NeighcheckError) else None)
                except NeighcheckError as exc:
                    if pending is None:
                        raise
                    print(f"neighcheck: {exc}", file=sys.stderr)

    def close_all(self, *, cleanup: bool) -> None:
        """Close every device; without cleanup (a second Ctrl-C), only record them as left."""
        try:
            for name in list(self.duts) if cleanup else []:
                try:
                    self.close(name)
                except NeighcheckError:
                    pass  # recorded with the device (cleanup_failed) and shown in the summary
        finally:
            if not cleanup:
                for dut in self.duts.values():
                    if not isinstance(dut, Exception):
                        self.write_info(dut, cleanup="interrupted before its cleanup finished")
            if self.seeder is not None:
                self.seeder.close()
            if self.places is not None:
                # Even without cleanup: a place left acquired blocks every other run of the lab.
                try:
                    self.places.close()
                except NeighcheckError as exc:
                    print(f"neighcheck: {exc}", file=sys.stderr)

    def write_info(self, dut, cleanup: str | None = None) -> None:
        path = self.run_dir / "devices" / f"{dut.device.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "name": dut.device.name, "os": dut.device.os, "fingerprint": dut.fingerprint,
            "stacks": dut.stacks,
            "interfaces": [{"index": link.ifindex, "name": link.config.device_if} for link in dut.links],
        }
        if cleanup is not None:
            info["cleanup_failed"] = cleanup
        place = self.places.info(dut.device.name) if self.places is not None else None
        if place is not None:
            info["labgrid"] = place
        path.write_text(json.dumps(info, indent=2))

    def recorded_info(self, devices) -> list[dict]:
        """Each device's info as its worker wrote it (results.json `devices`)."""
        out = []
        for device in devices:
            try:
                out.append(json.loads((self.run_dir / "devices" / f"{device.name}.json").read_text()))
            except (OSError, ValueError):
                out.append({"name": device.name, "os": device.os, "fingerprint": {}, "interfaces": []})
        return out


def _close_quietly(dut) -> None:
    try:
        dut.close()
    except Exception:  # noqa: BLE001 - the open error is the one to report
        pass
