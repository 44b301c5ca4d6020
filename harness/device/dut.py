"""A device under test: its session, agent, lock, links, seeding and cleanup, in one place.

Data flows one way: inventory -> session -> agent -> (links resolved on the device) ->
seeding -> the cases. A DeviceUnderTest is opened once per device per run (per xdist worker)
and closed whatever happens; closing removes everything the harness planted on the device.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.contract.clauses import AF_INET, AF_INET6
from harness.contract.clauses import FAMILY_NAMES, STACK_NAME, STACK_OF
from harness.contract.judging import Planted as JudgedPlanted
from harness.contract.judging import index
from harness.contract.status import Outcome, describe
from harness.device import become
from harness.device.agent import Agent, make_agent
from harness.device.dialect import dialect_for
from harness.device.lock import DeviceLock
from harness.contract.protocol import Key, Neighbor, canonical_address
from harness.errors import DeviceError, NeighcheckError, SeedingError
from harness.inventory import Device, Inventory, TestLink
from harness.ssh import SshSession
from harness.traffic.responder import Responder
from harness.traffic.seeding import LinkTarget, SeedEntry, Seeder, address_plan, missing_seeds, static_plan
from harness.waits import poll_until

VERIFY_TIMEOUT = 5.0
RESEND_ROUNDS = 2  # bounded re-sends of seeds that did not land (loss on the link)
CLEANUP_ROUNDS = 3  # bounded read-and-delete rounds when removing planted entries


@dataclass
class LinkUnderTest:
    config: TestLink
    slot: int
    ifindex: int
    target: LinkTarget
    seeds: list[SeedEntry]  # the plan at --entries
    statics: dict[Key, str] = field(default_factory=dict)  # static entries planted here, key -> lladdr
    unplanted: dict[int, str] = field(default_factory=dict)  # family -> why it cannot be planted

    @property
    def families(self) -> frozenset[int]:
        return frozenset(s.family for s in self.seeds)

    def plan(self, count: int) -> list[SeedEntry]:
        return address_plan(self.slot, count, self.target)

    def key(self, seed: SeedEntry) -> Key:
        return (seed.family, self.ifindex, seed.address)  # plans hold canonical addresses


@dataclass
class Planted:
    """What a case planted: seeded (traffic) and static (agent `add`) entries."""

    entries: dict[Key, str] = field(default_factory=dict)  # key -> lladdr
    static: dict[Key, str] = field(default_factory=dict)
    before: tuple[Neighbor, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def judged(self) -> JudgedPlanted:
        return JudgedPlanted(self.entries, self.static)


class DeviceUnderTest:
    def __init__(self, device: Device, inventory: Inventory, *, entries: int, seeder: Seeder,
                 holder: str, lock_wait: float = 30.0, scale_entries: int = 0):
        self.device = device
        self.inventory = inventory
        self.entries_per_family = entries
        self.scale_entries = scale_entries
        self.seeder = seeder
        self.holder = holder
        self.lock_wait = lock_wait
        self.session = SshSession(device.name, device.ssh)
        self.dialect = dialect_for(device)
        self.agent: Agent | None = None
        self.lock: DeviceLock | None = None
        self.responder: Responder | None = None
        self.fingerprint: dict[str, Any] = {}
        self.stacks: dict[str, bool] = {}
        self.interfaces: list[dict[str, Any]] = []
        self.links: list[LinkUnderTest] = []
        self.lost: DeviceError | None = None  # set once the device is gone; it stays gone
        self._leftovers: dict[Key, str] = {}  # planted and not yet removed
        self.read_families: tuple[int, ...] = (0,)
        self._last_table: tuple[Neighbor, ...] | None = None  # the latest read, while current
        self._last_table_at = -1  # the agent's mutation count at that read
        self.delete_supported = True

    # --- open / close --------------------------------------------------------------------
    def open(self) -> "DeviceUnderTest":
        self.session.connect()
        become.check(self.device, self.session)  # before the lock, which needs root too
        self.lock = DeviceLock(self.session, self.dialect, self.holder, self.lock_wait,
                               become.become_words(self.device))
        self.lock.acquire()
        self.agent = make_agent(self.device, self.session, self.inventory)
        self.fingerprint = {"os": self.device.os, **self.agent.info()}
        self.stacks = self.agent.stacks()
        self.read_families = self._readable_families()
        self.interfaces = self.agent.interfaces()
        self.links = [self._resolve(link, slot) for slot, link in enumerate(self.device.links)]
        self.responder = Responder(self.inventory.test_interfaces)
        for link in self.links:  # the largest plan: the smaller ones are its first entries
            self.responder.serve(link.target, link.plan(max(self.entries_per_family, self.scale_entries)))
        self.responder.start()
        return self

    def _readable_families(self) -> tuple[int, ...]:
        """Which `table` reads work: (0,) when AF_UNSPEC does, else each family that does.

        Some implementations refuse AF_UNSPEC or a family's table (Wine answers only
        AF_INET); seeds are planted only where the harness can see them land."""
        assert self.agent is not None
        if self.agent.table(0).status.outcome is Outcome.SUCCESS:
            return (0,)
        families = tuple(fam for fam, stack in ((AF_INET, "ipv4"), (AF_INET6, "ipv6"))
                         if self.stacks.get(stack) and
                         self.agent.table(fam).status.outcome is Outcome.SUCCESS)
        if not families:
            raise DeviceError(f"device {self.device.name!r}: the agent cannot read the neighbor "
                              "table for any family")
        unreadable = [name for fam, name in ((AF_INET, "IPv4"), (AF_INET6, "IPv6"))
                      if fam not in families and self.stacks.get(name.lower())]
        if unreadable:
            self.fingerprint["unreadable_tables"] = ", ".join(unreadable)
        return families

    @property
    def unplanted(self) -> dict[tuple[int, int], str]:
        """(family, ifindex) the device should have entries for but the harness cannot plant."""
        return {(family, link.ifindex): why for link in self.links for family, why in link.unplanted.items()}

    def has_family(self, family: int) -> bool:
        """Some test link has `family` planted or expected (its stack exists on the device)."""
        return any(family in link.families or family in link.unplanted for link in self.links)

    def readable(self, family: int) -> bool:
        return 0 in self.read_families or family in self.read_families

    def _resolve(self, link: TestLink, slot: int) -> LinkUnderTest:
        match = [i for i in self.interfaces if i.get("name") == link.device_if]
        if not match:
            names = ", ".join(str(i.get("name")) for i in self.interfaces)
            raise DeviceError(f"device {self.device.name!r}: test link interface {link.device_if!r} "
                              f"does not exist on the device (it has: {names})")
        iface = match[0]
        mac = iface.get("mac")
        if not isinstance(mac, str):
            raise DeviceError(f"device {self.device.name!r}: interface {link.device_if!r} has no MAC")
        unplanted: dict[int, str] = {}
        usable = {}
        for family, address in ((AF_INET, link.device_v4), (AF_INET6, link.device_v6)):
            stack = STACK_OF[family]
            if not self.stacks.get(stack):
                continue  # no such stack: nothing is expected (RET-NOSTACK-* judge the family)
            where = f"{STACK_NAME[stack]} entries cannot be planted on {link.device_if}"
            if not self.readable(family):
                unplanted[family] = f"{where}: the agent cannot read the {STACK_NAME[stack]} table"
            elif address is None:
                unplanted[family] = f"{where}: the inventory gives no device_{'v4' if family == AF_INET else 'v6'} for the link"
            else:
                usable[family] = address
        v4, v6 = usable.get(AF_INET), usable.get(AF_INET6)
        target = LinkTarget(harness_if=link.harness_if, device_mac=mac.lower(),
                            device_v4=str(v4.ip) if v4 else None,
                            device_v6=str(v6.ip) if v6 else None,
                            v6_network=str(v6.network) if v6 else None)
        ifindex = int(iface["index"])
        seeds = address_plan(slot, self.entries_per_family, target)
        statics = {(e.family, ifindex, e.address): e.lladdr for e in static_plan(slot, target)}
        return LinkUnderTest(link, slot, ifindex, target, seeds, statics, unplanted)

    def close(self) -> None:
        """Remove what is still planted, stop the responder, release the lock, whatever fails
        on the way; then raise DeviceError naming what could not be done (e.g. entries left)."""
        problems = []
        try:
            if self.agent is not None and self._leftovers:
                self.remove(dict(self._leftovers))
        except Exception as exc:  # noqa: BLE001 - teardown must go on
            problems.append(f"cleanup: {len(self._leftovers)} planted entries may be left on the "
                            f"device: {exc}")
        try:
            if self.responder is not None:
                self.responder.stop()
        except Exception as exc:  # noqa: BLE001
            problems.append(f"responder: {exc}")
        if self.lock is not None:
            self.lock.release()
        self.session.close()
        if problems:
            raise DeviceError(f"device {self.device.name!r}: " + "; ".join(problems))

    def ensure_held(self) -> None:
        """Raise DeviceError if the device was lost: its connection dropped (and the device
        lock with it: another run may hold the device now), or it stopped answering after a
        command timed out. Checked before each case and before cleanup, so a lost device
        costs one timeout, not one per remaining case, and is never touched without its lock."""
        if self.lost is not None:
            raise self.lost
        why = None
        if self.lock is not None and not self.lock.held:
            why = "its connection dropped, and the device lock with it"
        elif self.session.timed_out:
            try:  # a hung agent call, or a device that went silent?
                self.session.run(self.dialect.liveness, timeout=self.device.ssh.connect_timeout)
                self.session.timed_out = False
            except DeviceError as exc:
                why = f"it stopped answering after a command timed out ({exc})"
        if why is not None:
            self.lost = DeviceError(f"device {self.device.name!r} was lost mid-run: {why}; "
                                    "its remaining cases are not run")
            raise self.lost

    # --- what cases use ------------------------------------------------------------------
    @contextmanager
    def unprivileged_agent(self):
        """The same agent, called over a second session as the inventory's non-admin account."""
        account = self.device.unprivileged
        if account is None:
            raise DeviceError(f"device {self.device.name!r}: no [device.unprivileged] account")
        assert self.agent is not None
        session = SshSession(self.device.name, self.device.ssh, account)
        session.connect()
        try:
            yield self.agent.over(session)
        finally:
            session.close()

    def link_by_name(self, device_if: str) -> LinkUnderTest:
        return next(link for link in self.links if link.config.device_if == device_if)

    def missing_ifindex(self) -> int:
        """An interface index that does not exist on the device."""
        return max(int(i["index"]) for i in self.interfaces) + 1000

    def table(self) -> tuple[Neighbor, ...]:
        """The device's whole readable table (one agent call where AF_UNSPEC reads work)."""
        assert self.agent is not None
        entries: list[Neighbor] = []
        for family in self.read_families:
            part = self.agent.table(family)
            if part.status.outcome is not Outcome.SUCCESS:
                raise DeviceError(f"device {self.device.name!r}: `table {family}` returned "
                                  f"{describe(part.status.raw, part.status.space)}")
            entries += part.entries
        self._last_table = tuple(entries)
        self._last_table_at = self.agent.mutations
        return self._last_table

    def seed(self, count: int | None = None) -> Planted:
        """Plant every link's seeds by traffic (`count` per family per link; default --entries)
        and wait until the device shows all of them; then make sure the standing static entries
        are there (planted once, re-added only when a flush took them)."""
        planted = Planted()
        self._last_table = None  # entries are about to appear: no earlier read is current
        plans = {link.ifindex: (link.plan(count) if count else link.seeds) for link in self.links}
        wanted: dict[Key, str] = {}
        t0 = time.perf_counter()
        for link in self.links:
            keys = {link.key(s): s.lladdr for s in plans[link.ifindex]}
            wanted.update(keys)
            self._leftovers.update(keys)  # before sending: a send that fails may have planted some
            self.seeder.send(link.target, plans[link.ifindex])
        t1 = time.perf_counter()
        resends, polls = 0, 0
        last: dict = {}

        def landed() -> bool:
            nonlocal resends, polls
            table = index(self.table())
            missing = {link.ifindex: missing_seeds(table, link.ifindex, plans[link.ifindex]) for link in self.links}
            last.update(table=table, missing=missing)
            polls += 1
            if not any(missing.values()):
                return True
            if polls >= 5 and resends < RESEND_ROUNDS:
                # Frames lost on the link: send the missing ones again (bounded).
                resends += 1
                for link in self.links:
                    if missing[link.ifindex]:
                        try:
                            self.seeder.send(link.target, [e for e, _ in missing[link.ifindex]])
                        except NeighcheckError as exc:  # e.g. the test link went down
                            raise SeedingError(f"{self._shortfall(missing, len(wanted), 'yet')}; "
                                               f"re-sending them failed: {exc}") from None
            return False

        if not poll_until(landed, timeout=VERIFY_TIMEOUT, delay=0.01, max_delay=0.25, backoff=2):
            raise SeedingError(self._shortfall(last["missing"], len(wanted),
                                               f"within {VERIFY_TIMEOUT:g} s after {resends} re-sends"))
        t2 = time.perf_counter()
        table = last["table"]
        if self._plant_statics(table):
            table = index(self.table())  # the case's "before" shows the statics it judges
        planted.entries = wanted
        planted.static = {k: v for link in self.links for k, v in link.statics.items() if k in table}
        planted.before = tuple(table.values())
        planted.timings = {"seed": t1 - t0, "verify": t2 - t1, "statics": time.perf_counter() - t2}
        return planted

    def _plant_statics(self, table: dict[Key, Neighbor]) -> bool:
        """Add the static entries a flush took (or the first case's); True when any call ran.
        An agent that cannot add them is recorded once (fingerprint) and not asked again."""
        if self.fingerprint.get("static_entries"):
            return False
        assert self.agent is not None
        added = False
        for link in self.links:
            for (family, ifindex, address), lladdr in link.statics.items():
                now = table.get((family, ifindex, address))
                if now is not None and now.lladdr == lladdr and now.state == "permanent":
                    continue
                self._leftovers[(family, ifindex, address)] = lladdr
                if now is not None:  # a stale copy (another lladdr or state): replace it
                    self.agent.delete(family, ifindex, address)
                reply = self.agent.add(family, ifindex, address, lladdr)
                added = True
                if reply.outcome is not Outcome.SUCCESS:
                    why = f"{reply.error}: {reply.detail}" if reply.error else describe(reply.raw, reply.space)
                    self.fingerprint["static_entries"] = (
                        f"not planted: `add {family} {ifindex} {address}` returned {why}")
                    self._leftovers.pop((family, ifindex, address), None)
                    return True
        return added

    def _shortfall(self, missing: dict[int, list], wanted: int, when: str) -> str:
        total = sum(len(m) for m in missing.values())
        first = [f"{e.address} on {self._name(i)} ({why})" for i, m in missing.items() for e, why in m][:5]
        return (f"device {self.device.name!r}: {total} of {wanted} seeded entries did not land "
                f"{when}; first: {', '.join(first)}")

    def remove(self, keys: dict[Key, str]) -> None:
        """Delete planted entries still on the device (a table read and one batch on Linux)."""
        if not keys:
            return
        self.ensure_held()
        if self.device.os == "linux":
            self._remove_linux(keys)
        elif self.delete_supported:
            assert self.agent is not None
            for family, ifx, addr in keys:
                if self.agent.delete(family, ifx, addr).error == "not-exported":
                    # Nothing else in the protocol can remove an entry: say so once, stop trying.
                    self.delete_supported = False
                    self.fingerprint["cleanup"] = "impossible: the agent cannot delete entries"
                    break
        for key in keys:
            self._leftovers.pop(key, None)

    def _remove_linux(self, keys: dict[Key, str]) -> None:
        # `ip neigh del` exits at the first entry that is not there, -force or not (iproute2
        # 6.1), and a case's flush has usually removed some: delete only what the table
        # still shows, and read again in case an entry vanished between read and delete.
        # The first round trusts the case's own last read (its snapshot after the flush):
        # only the harness adds entries, and it forgets that read whenever it does.
        names = {int(i["index"]): i["name"] for i in self.interfaces}
        wanted = {(family, ifx, canonical_address(addr)) for family, ifx, addr in keys if ifx in names}
        # A call that may have changed the table since (even one abandoned half-way, e.g. by
        # Ctrl-C: it may still run on the device) makes that read stale.
        last = self._last_table if self.agent and self.agent.mutations == self._last_table_at else None
        for _ in range(CLEANUP_ROUNDS):
            table, last = (last if last is not None else self.table()), None
            present = sorted(wanted & {e.key for e in table})
            if not present:
                return
            lines = "".join(f"neigh del {addr} dev {names[ifx]}\n" for _, ifx, addr in present)
            result = self.session.run(become.as_admin(self.device, "ip -batch -"), stdin=lines.encode())
            if result.exit_status == 0:
                return  # ip ran every line: all deleted (a batch stops at its first failure)
            problems = [line for line in result.stderr.decode(errors="replace").splitlines()
                        if line.strip() and "No such file or directory" not in line]
            if result.exit_status != 0 and problems:
                raise DeviceError(f"device {self.device.name!r}: cleanup failed: {'; '.join(problems[:3])}")
        raise DeviceError(f"device {self.device.name!r}: cleanup failed: {len(present)} planted entries "
                          f"still on the device after {CLEANUP_ROUNDS} rounds, e.g. "
                          f"{', '.join(a for _, _, a in present[:3])}")

    def _name(self, ifindex: int) -> str:
        return next((str(i["name"]) for i in self.interfaces if int(i["index"]) == ifindex), str(ifindex))
