"""A device under test: its session, agent, lock, links, seeding and cleanup, in one place.

Data flows one way: inventory -> session -> agent -> (links resolved on the device) ->
seeding -> the cases. A DeviceUnderTest is opened once per device per run (per xdist worker)
and closed whatever happens; closing removes everything the harness planted on the device.
"""

from __future__ import annotations

import shlex
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from harness.contract.clauses import AF_INET, AF_INET6, MAX_ENTRIES, STACK_NAME, STACK_OF
from harness.contract.judging import Planted as JudgedPlanted
from harness.contract.judging import index
from harness.contract.status import Outcome, describe
from harness.device import become
from harness.device.agent import Agent, MultiDeleteRefused, gone, make_agent
from harness.device.dialect import Dialect, dialect_for
from harness.device.lock import DeviceLock, device_lock
from harness.contract.protocol import Key, Neighbor, canonical_address
from harness.errors import DeviceError, NeighcheckError, SeedingError, UsageError
from harness.inventory import Device, Inventory, TestLink
from harness.ssh import SshSession
from harness.traffic.responder import Responder
from harness.traffic.seeding import (LinkTarget, SeedEntry, Seeder, address_plan, link_target, missing_seeds,
                                     check_plan, seed_pools, static_plan)
from harness.waits import poll_until

VERIFY_TIMEOUT = 5.0
CLEANUP_ROUNDS = 3  # bounded read-and-delete rounds when removing planted entries (Linux)
RESEND_ROUNDS = 2  # bounded re-sends of seeds that did not land (loss on the link)
# Cleanup where `ip` is busybox's: stdin lines "FAMILYFLAG ADDRESS INTERFACE"; its flush
# prints what it removed on stdout (dropped), errors on stderr.
BUSYBOX_DELETE = ('while read -r f a d; do ip "$f" neigh flush to "$a" dev "$d" nud all >/dev/null '
                  '|| exit 1; done')


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

    @property
    def capacity(self) -> int:
        """The largest plan its seed pools hold (per family)."""
        return min((p.capacity for p in seed_pools(self.slot, self.target).values()), default=MAX_ENTRIES)

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


def find_interface(device: Device, interfaces: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The device interface called `name`. Windows compares adapter names without case (also
    localized, non-ASCII ones), as Windows itself does; Linux names are exact."""
    for iface in interfaces:
        if iface.get("name") == name:
            return iface
    if device.os == "windows":
        folded = name.casefold()
        for iface in interfaces:
            if str(iface.get("name")).casefold() == folded:
                return iface
    return None


class DeviceUnderTest:
    def __init__(self, device: Device, inventory: Inventory, *, entries: int, seeder: Seeder,
                 holder: str, lock_wait: float = 30.0, scale_entries: int = 0, serve: bool = True):
        self.device = device
        self.inventory = inventory
        self.entries_per_family = entries
        self.scale_entries = scale_entries
        self.seeder = seeder
        self.holder = holder
        self.lock_wait = lock_wait
        self.serve = serve  # serve mode where the agent offers it (--agent-mode)
        self.session = SshSession(device.name, device.ssh)
        self.dialect: Dialect | None = None  # the shell's, asked once the session is up
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
        self._statics_refused: set[int] = set()  # families whose static entries the agent cannot add
        self.multi_delete = True  # the agent takes several addresses per `delete`
        self.cleanup_calls = 0  # agent calls spent removing planted entries

    # --- open / close --------------------------------------------------------------------
    def open(self) -> "DeviceUnderTest":
        self.session.connect()
        become.check(self.device, self.session)  # before the lock, which needs root too
        self.dialect = dialect_for(self.device, self.session)
        # The agent first: on Windows the built-in agent's `lock` verb holds the device lock.
        # (Making it changes nothing on the device but, at most, an upload of a new build.)
        self.agent = make_agent(self.device, self.session, self.inventory, serve=self.serve)
        self.lock = device_lock(self.device, self.session, self.inventory, self.holder,
                                self.lock_wait, agent=self.agent)
        self.lock.acquire()
        self.fingerprint = {"os": self.device.os, "shell": self.dialect.name, **self.agent.info()}
        self.fingerprint["agent_mode"] = self.agent.mode
        self.stacks = self.agent.stacks()
        self.read_families = self._readable_families()
        self.interfaces = self.agent.interfaces()
        self.links = [self._resolve(link, slot) for slot, link in enumerate(self.device.links)]
        self.responder = Responder(self.inventory.test_interfaces)
        for link in self.links:  # the largest plan: the smaller ones are its first entries
            largest = min(max(self.entries_per_family, self.scale_entries), link.capacity)
            self.responder.serve(link.target, link.plan(largest))
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

    def too_small_for(self, count: int) -> str | None:
        """Why some test link cannot hold `count` seeds per family (its pool), or None."""
        for link in self.links:
            try:
                check_plan(link.slot, count, link.target)
            except UsageError as exc:
                return str(exc)
        return None

    def readable(self, family: int) -> bool:
        return 0 in self.read_families or family in self.read_families

    def _resolve(self, link: TestLink, slot: int) -> LinkUnderTest:
        iface = find_interface(self.device, self.interfaces, link.device_if)
        if iface is None:
            names = ", ".join(str(i.get("name")) for i in self.interfaces)
            raise DeviceError(f"device {self.device.name!r}: test link interface {link.device_if!r} "
                              f"does not exist on the device (it has: {names})")
        mac = iface.get("mac")
        if not isinstance(mac, str):
            raise DeviceError(f"device {self.device.name!r}: interface {link.device_if!r} has no MAC")
        unplanted: dict[int, str] = {}
        usable = {}
        reported = iface.get("families")  # protocol13.md item 1; absent: the device's stacks
        for family, address in ((AF_INET, link.device_v4), (AF_INET6, link.device_v6)):
            stack = STACK_OF[family]
            if not self.stacks.get(stack):
                continue  # no such stack: nothing is expected (RET-NOSTACK-* judge the family)
            if reported is not None and stack not in reported:
                continue  # not on this interface (e.g. IPv6 unbound from the adapter): nothing expected
            if reported is None and self.device.capabilities.get(stack) is False:
                continue  # the agent cannot tell per interface, and the inventory says there is none
            where = f"{STACK_NAME[stack]} entries cannot be planted on {link.device_if}"
            if not self.readable(family):
                unplanted[family] = f"{where}: the agent cannot read the {STACK_NAME[stack]} table"
            elif address is None:
                unplanted[family] = f"{where}: the inventory gives no device_{'v4' if family == AF_INET else 'v6'} for the link"
            else:
                usable[family] = address
        target = link_target(link, mac, ipv4=AF_INET in usable, ipv6=AF_INET6 in usable, device=self.device.name)
        ifindex = int(iface["index"])
        seeds = address_plan(slot, self.entries_per_family, target)
        statics = {(e.family, ifindex, e.address): e.lladdr for e in static_plan(slot, target)}
        return LinkUnderTest(link, slot, ifindex, target, seeds, statics, unplanted)

    @property
    def link_families(self) -> dict[int, frozenset[int]]:
        """The families each test link's device interface has (and the device has a stack
        for), by ifindex: seeded, or expected but not plantable (`unplanted`)."""
        return {link.ifindex: link.families | frozenset(link.unplanted) for link in self.links}

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
        if self.agent is not None:
            self.agent.close()
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
                assert self.dialect is not None
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
        """The device's agent over a second session as the inventory's non-admin account, made
        by the one factory: on Windows that account uploads and runs its own copy (a relative
        upload_dir is in its own profile; the admin's profile is not readable to it)."""
        account = self.device.unprivileged
        if account is None:
            raise DeviceError(f"device {self.device.name!r}: no [device.unprivileged] account")
        session = SshSession(self.device.name, self.device.ssh, account)
        session.connect()
        try:
            agent = make_agent(self.device, session, self.inventory, privileged=False)
            if self.agent is not None:
                agent.output_before_replies = self.agent.output_before_replies  # one record per device
            yield agent
        finally:
            session.close()

    def link_by_name(self, device_if: str) -> LinkUnderTest:
        return next(link for link in self.links if link.config.device_if == device_if)

    def missing_ifindex(self) -> int:
        """An interface index that does not exist on the device."""
        return max(int(i["index"]) for i in self.interfaces) + 1000

    def table(self) -> tuple[Neighbor, ...]:
        """The device's whole readable table (one agent call where AF_UNSPEC reads work; one
        round trip for the families' reads in serve mode where it does not)."""
        assert self.agent is not None
        entries: list[Neighbor] = []
        for family, part in zip(self.read_families, self.agent.tables(self.read_families)):
            if part.status.outcome is not Outcome.SUCCESS:
                raise DeviceError(f"device {self.device.name!r}: `table {family}` returned "
                                  f"{describe(part.status.raw, part.status.space)}")
            entries += part.entries
        self._last_table = tuple(entries)
        self._last_table_at = self.agent.mutations
        return self._last_table

    def seed(self, count: int | None = None) -> Planted:
        """Make sure the standing static entries are there (planted once, re-added only when a
        flush took them); then plant every link's seeds by traffic (`count` per family per
        link; default --entries) and wait until the device shows all of them. The statics go
        first so that the seeds' verification read, the case's "before", shows them too: a
        read of the whole table again after them cost as much as the verification itself."""
        planted = Planted()
        t0 = time.perf_counter()
        # (a family the agent refused is not asked again; the other still is)
        if any(key[0] not in self._statics_refused for link in self.links for key in link.statics):
            current = self._last_table if self._last_table_is_current() else None
            self._plant_statics(index(current if current is not None else self.table()))
        self._last_table = None  # entries are about to appear: no earlier read is current
        plans = {link.ifindex: (link.plan(count) if count else link.seeds) for link in self.links}
        wanted: dict[Key, str] = {}
        t1 = time.perf_counter()
        for link in self.links:
            keys = {link.key(s): s.lladdr for s in plans[link.ifindex]}
            wanted.update(keys)
            self._leftovers.update(keys)  # before sending: a send that fails may have planted some
            self.seeder.send(link.target, plans[link.ifindex])
        t2 = time.perf_counter()
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
        table = last["table"]
        planted.entries = wanted
        planted.static = {k: v for link in self.links for k, v in link.statics.items() if k in table}
        planted.before = tuple(table.values())
        planted.timings = {"statics": t1 - t0, "seed": t2 - t1, "verify": time.perf_counter() - t2}
        return planted

    def _last_table_is_current(self) -> bool:
        """No agent call since the latest table read could have changed the table."""
        return self._last_table is not None and self.agent is not None and \
            self.agent.mutations == self._last_table_at

    def _plant_statics(self, table: dict[Key, Neighbor]) -> bool:
        """Add the static entries a flush took (or the first case's); True when any call ran.
        The calls go out together (one round trip in serve mode). An agent that cannot add
        them (for a family: busybox adds no IPv6 entry) is recorded (fingerprint) and not asked
        for that family again."""
        assert self.agent is not None
        calls: list[tuple] = []
        for link in self.links:
            for (family, ifindex, address), lladdr in link.statics.items():
                if family in self._statics_refused:
                    continue
                now = table.get((family, ifindex, address))
                if now is not None and now.lladdr == lladdr and now.state == "permanent":
                    continue
                self._leftovers[(family, ifindex, address)] = lladdr
                if now is not None:  # a stale copy (another lladdr or state): replace it
                    calls.append(("delete", family, ifindex, address))
                calls.append(("add", family, ifindex, address, lladdr))
        for call, reply in zip(calls, self.agent.statuses(calls)):
            if call[0] == "add" and reply.outcome is not Outcome.SUCCESS:
                _, family, ifindex, address, _ = call
                why = f"{reply.error}: {reply.detail}" if reply.error else describe(reply.raw, reply.space)
                self.fingerprint.setdefault("static_entries",
                                            f"not planted: `add {family} {ifindex} {address}` returned {why}")
                self._statics_refused.add(family)
                self._leftovers.pop((family, ifindex, address), None)
        return bool(calls)

    def _shortfall(self, missing: dict[int, list], wanted: int, when: str) -> str:
        total = sum(len(m) for m in missing.values())
        first = [f"{e.address} on {self._name(i)} ({why})" for i, m in missing.items() for e, why in m][:5]
        return (f"device {self.device.name!r}: {total} of {wanted} seeded entries did not land "
                f"{when}; first: {', '.join(first)}")

    def remove(self, keys: dict[Key, str]) -> None:
        """Delete planted entries still on the device, only those the latest table read still
        shows when that read is current. Linux: one `ip -batch`. Elsewhere the agent's
        `delete` with several addresses per call: one call per family and interface (split
        where a command line would grow too long); one call per address for an agent without
        that extension. Every status but success or not-found is a cleanup failure."""
        if not keys:
            return
        self.ensure_held()
        assert self.agent is not None and self.dialect is not None
        if self.device.os == "linux":
            # One `ip -batch` over SSH: measured 5-15x faster than the agent's `delete` (one
            # shim call per family and interface, each reading the table itself; README).
            self._remove_linux(keys)
            for key in keys:
                self._leftovers.pop(key, None)
            return
        # The case's own last read (its snapshot after the flush) is trusted while current:
        # only the harness adds entries, and it forgets that read whenever it does. A call that
        # may have changed the table since (even one abandoned half-way, e.g. by Ctrl-C: it may
        # still run on the device) makes it stale.
        last = self._last_table if self._last_table_is_current() else None
        present = {e.key for e in last} if last is not None else None
        groups: dict[tuple[int, int], list[str]] = {}
        for family, ifindex, address in keys:
            if present is None or (family, ifindex, address) in present:
                groups.setdefault((family, ifindex), []).append(address)
        failed: list[str] = []
        done: set[Key] = {k for k in keys if present is not None and k not in present}
        for (family, ifindex), addresses in sorted(groups.items()):
            for chunk in self._delete_chunks(family, ifindex, sorted(addresses)):
                if not self.delete_supported:
                    break
                for address, reply in self._delete(family, ifindex, chunk).items():
                    if gone(reply):
                        done.add((family, ifindex, address))
                    elif reply.error != "not-exported":
                        failed.append(f"{address} on {self._name(ifindex)}: "
                                      f"{reply.error or describe(reply.raw, reply.space)}")
        for key in keys:
            if key in done or not self.delete_supported:
                self._leftovers.pop(key, None)
        if failed:
            raise DeviceError(f"device {self.device.name!r}: cleanup failed for {len(failed)} planted "
                              f"entries, e.g. {'; '.join(failed[:3])}")

    def _remove_linux(self, keys: dict[Key, str]) -> None:
        # `ip neigh del` exits at the first entry that is not there, -force or not (iproute2
        # 6.1), and a case's flush has usually removed some: delete only what the table
        # still shows, and read again in case an entry vanished between read and delete.
        # The first round trusts the case's own last read (see remove).
        names = {int(i["index"]): i["name"] for i in self.interfaces}
        wanted = {(family, ifx, canonical_address(addr)) for family, ifx, addr in keys if ifx in names}
        last = self._last_table if self._last_table_is_current() else None
        for _ in range(CLEANUP_ROUNDS):
            table, last = (last if last is not None else self.table()), None
            present = sorted(wanted & {e.key for e in table})
            if not present:
                return
            self.cleanup_calls += 1
            result = self._delete_linux(present, names)
            self._last_table = None  # not an agent call: the mutation count does not show it
            if result.exit_status == 0:
                return  # ip ran every line: all deleted (a batch stops at its first failure)
            problems = [line for line in result.stderr.decode(errors="replace").splitlines()
                        if line.strip() and "No such file or directory" not in line]
            if problems:
                raise DeviceError(f"device {self.device.name!r}: cleanup failed: {'; '.join(problems[:3])}")
        raise DeviceError(f"device {self.device.name!r}: cleanup failed: {len(present)} planted entries "
                          f"still on the device after {CLEANUP_ROUNDS} rounds, e.g. "
                          f"{', '.join(a for _, _, a in present[:3])}")

    def _delete_linux(self, present: list[Key], names: dict[int, str]):
        """One command deletes them all: `ip -batch` (stops at its first failure), or where
        `ip` is busybox's (no -batch, no `neigh del`) a loop that flushes each exact address,
        stopping the same way."""
        if self.fingerprint.get("ip") == "busybox":
            lines = "".join(f"{'-4' if fam == AF_INET else '-6'} {addr} {names[ifx]}\n"
                            for fam, ifx, addr in present)
            return self.session.run(become.as_admin(self.device, f"sh -c {shlex.quote(BUSYBOX_DELETE)}"),
                                    stdin=lines.encode())
        lines = "".join(f"neigh del {addr} dev {names[ifx]}\n" for _, ifx, addr in present)
        return self.session.run(become.as_admin(self.device, "ip -batch -"), stdin=lines.encode())

    def _delete_chunks(self, family: int, ifindex: int, addresses: list[str]) -> list[list[str]]:
        """The addresses split so that each `delete` command line fits the device's shell."""
        assert self.agent is not None and self.dialect is not None
        budget = self.dialect.line_budget - len(self.agent.command_line("delete", family, ifindex))
        chunks: list[list[str]] = [[]]
        used = 0
        for address in addresses:
            need = self.dialect.word_length(address)
            if chunks[-1] and used + need > budget:
                chunks.append([])
                used = 0
            chunks[-1].append(address)
            used += need
        return [c for c in chunks if c]

    def _delete(self, family: int, ifindex: int, addresses: list[str]) -> dict[str, Any]:
        """address -> StatusReply; one call, or one per address for an agent without the
        multi-address extension; stops trying when the agent cannot delete at all."""
        assert self.agent is not None
        replies: dict[str, Any] = {}
        if self.multi_delete:
            self.cleanup_calls += 1
            try:
                replies = self.agent.delete_many(family, ifindex, addresses)
            except MultiDeleteRefused:
                self.multi_delete = False  # say so once; one call per address from now on
                self.fingerprint["cleanup"] = "one agent call per entry (no multi-address delete)"
        if not replies:
            for address in addresses:
                self.cleanup_calls += 1
                replies[address] = reply = self.agent.delete(family, ifindex, address)
                if reply.error == "not-exported":
                    break
        if any(r.error == "not-exported" for r in replies.values()):
            # Nothing else in the protocol can remove an entry: say so once, stop trying.
            self.delete_supported = False
            self.fingerprint["cleanup"] = "impossible: the agent cannot delete entries"
        return replies

    def _name(self, ifindex: int) -> str:
        return next((str(i["name"]) for i in self.interfaces if int(i["index"]) == ifindex), str(ifindex))
