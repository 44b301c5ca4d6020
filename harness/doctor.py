"""`neighcheck doctor`: is every device usable? One row per device, the reason when not.

A device with a labgrid place is looked up through the coordinator (its NetworkService gives
the SSH address), never reserved or acquired: doctor only reads from devices."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from harness.contract.clauses import STACK_NAME
from harness.contract.status import describe
from harness.device import become
from harness.device.agent import make_agent
from harness.device.dialect import dialect_for
from harness.device.dut import find_interface
from harness.errors import NeighcheckError
from harness.inventory import Device, Inventory
from harness.ssh import SshSession
from harness.traffic.seeding import link_target, seed_pools
from harness.traffic.capability import raw_socket_problem

IFF_UP = 0x1


@dataclass
class Check:
    device: str
    ok: bool = True
    facts: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        self.ok = False
        self.problems.append(text)


def harness_link_up(name: str) -> bool | None:
    """None: no such interface on this host; else whether it is administratively up."""
    flags = Path("/sys/class/net", name, "flags")
    if not flags.exists():
        return None
    return bool(int(flags.read_text(), 16) & IFF_UP)


def check_device(device: Device, inventory: Inventory, coordinator=None) -> Check:
    check = Check(device.name)
    if device.labgrid is not None:
        from harness.places import Coordinator, coordinator_address, resolve
        coordinator = coordinator or Coordinator(coordinator_address(None))
        try:
            service = coordinator.lookup(device)
            device = resolve(device, service)
        except NeighcheckError as exc:
            check.problem(str(exc))
            return check
        check.facts["labgrid"] = (f"place {device.labgrid.place}: {service.path} "
                                  f"({device.ssh.login.user}@{device.ssh.host}:{device.ssh.port})")
    session = SshSession(device.name, device.ssh)
    try:
        session.connect()
        check.facts["ssh"] = "ok (host key verified, authenticated)"
        check.facts["shell"] = dialect_for(device, session).name  # asked once per session
        if device.ssh.become:
            become.check(device, session)
            check.facts["become"] = f"{device.ssh.become} (passwordless for {device.ssh.login.user})"
        agent = make_agent(device, session, inventory)
        info = agent.info()
        check.facts["agent"] = str(info.get("agent", "no `info` verb"))
        if agent.output_before_replies:
            lines = agent.output_before_replies[-1][1].splitlines()
            check.facts["banner"] = (f"{len(lines)} line(s) printed before agent replies (skipped, kept "
                                     f"in the evidence), first: {lines[0][:60]!r}")
        if info.get("admin") is False:
            check.problem(f"{device.ssh.login.user} is not root/admin on the device (flush needs it)")
        else:
            check.facts["admin"] = "yes" if info.get("admin") else "unknown"
        stacks = agent.stacks()
        check.facts["stacks"] = " ".join(k for k, v in stacks.items() if v) or "none"
        for key, expected in device.capabilities.items():
            if key in stacks and stacks[key] != expected:
                check.facts[f"note-{key}"] = f"inventory says {key}={expected}, device has {stacks[key]}"
        interfaces = agent.interfaces()
        check.facts["interfaces"] = " ".join(f"{i['name']}={i['index']}{_families(i)}" for i in interfaces)
        if not any(isinstance(i.get("families"), list) for i in interfaces):
            codes = ", ".join(f"{k} {describe(v, 'win32')}" for k, v in agent.interface_status.items()
                              if isinstance(v, int) and not isinstance(v, bool))
            check.facts["families"] = ("not reported per interface" + (f" (GetIpInterfaceTable: {codes})" if codes else "")
                                       + "; the device's stacks are assumed on every interface")
        _userland(check, device, session, info)
        _seed_pools(check, device, stacks, interfaces)
        for link in device.links:
            iface = find_interface(device, interfaces, link.device_if)
            if iface is None:
                check.problem(f"test link {link.device_if!r} does not exist on the device")
            elif iface.get("up") is False:
                check.problem(f"test link {link.device_if!r} is down on the device")
            elif isinstance(iface.get("families"), list):
                off = [f for f in STACK_NAME if stacks.get(f) and f not in iface["families"]]
                if off:  # the device has the stack, this interface does not: no seeds there
                    check.facts[f"note-{link.device_if}"] = (f"{' and '.join(off)} off on this test link "
                                                            "(the device's stacks have it)")
            up = harness_link_up(link.harness_if)
            if up is None:
                check.problem(f"harness interface {link.harness_if!r} does not exist on this host")
            elif not up:
                check.problem(f"harness interface {link.harness_if!r} is down (ip link set {link.harness_if} up)")
        if device.os == "linux":
            result = session.run("cat /proc/sys/net/ipv4/neigh/default/gc_thresh3 "
                                 "/proc/sys/net/ipv6/neigh/default/gc_thresh3 2>/dev/null", timeout=10)
            values = [v for v in result.stdout.decode().split() if v.isdigit()][-2:]  # past a banner
            # A network namespace has no gc thresholds of its own: they are the host's.
            check.facts["capacity"] = ("gc_thresh3 ipv4/ipv6 " + "/".join(values) if values
                                       else "host-global gc thresholds (not visible in a namespace)")
    except NeighcheckError as exc:
        check.problem(str(exc))
    finally:
        session.close()
    check_raw_sockets(device, check)
    return check


# What the device's userland lacks, each said in one line (issue 14: busybox-only devices).
IP_FLAVOURS = {
    "busybox": "busybox ip (no iproute2): IPv6 static entries cannot be added (OBS-PERMANENT "
               "observes IPv4 only, through busybox arp); cleanup deletes entry by entry",
}
NO_FLOCK = ("flock is missing on the device: the harness's device lock needs it (util-linux's "
            "flock, or a busybox built with the flock applet)")
NO_IP = "ip is missing on the device: the Linux agent needs iproute2's or busybox's ip"


def _userland(check: Check, device: Device, session: SshSession, info: dict) -> None:
    if device.os == "windows":
        return  # its lock is the agent's `lock` verb: no flock to look for
    result = session.run("command -v flock >/dev/null 2>&1 && echo flock || echo none", timeout=10)
    said = result.stdout.decode(errors="replace").split()  # a login banner may come first
    if not said or said[-1] != "flock":
        check.problem(NO_FLOCK)
    if device.os != "linux" or device.agent.command:
        return  # a vendor agent brings its own tools
    flavour = info.get("ip")
    if flavour == "missing":
        check.problem(NO_IP)
    elif flavour in IP_FLAVOURS:
        check.facts["userland"] = IP_FLAVOURS[flavour]


def _seed_pools(check: Check, device: Device, stacks: dict, interfaces: list[dict]) -> None:
    """Per test link: where its seeds and static entries come from, and how many it holds."""
    for slot, link in enumerate(device.links):
        mac = str((find_interface(device, interfaces, link.device_if) or {}).get("mac") or "00:00:00:00:00:00")
        target = link_target(link, mac, ipv4=stacks.get("ipv4", True), ipv6=stacks.get("ipv6", True),
                             device=device.name)
        try:
            pools = seed_pools(slot, target)
        except NeighcheckError as exc:
            check.problem(str(exc))
            continue
        check.facts[f"seeds {link.device_if}"] = "; ".join(p.describe() for p in pools.values()) or "none"


def _families(iface: dict) -> str:
    """ `[ipv4 ipv6]`: the interface's own families, when the agent reports them."""
    families = iface.get("families")
    return f" [{' '.join(families) or 'none'}]" if isinstance(families, list) else ""


def check_raw_sockets(device: Device, check: Check) -> None:
    """The harness side of each test link: can this process send and receive frames there?"""
    usable = []
    for link in device.links:
        if harness_link_up(link.harness_if) is None:
            continue  # a missing interface is its own problem (above)
        problem = raw_socket_problem(link.harness_if)
        if problem is None:
            usable.append(link.harness_if)
        else:
            check.problem(f"harness interface {link.harness_if!r}: {problem}")
    if usable:
        check.facts["raw-socket"] = f"ok on {' '.join(usable)} (CAP_NET_RAW: seeding and the responder)"


def doctor(inventory: Inventory, names: list[str] | None = None, coordinator: str | None = None) -> int:
    selected = inventory.select(names)
    places = None
    if any(d.labgrid is not None for d in selected):
        from harness.places import Coordinator, coordinator_address
        places = Coordinator(coordinator_address(coordinator))
    checks = [check_device(d, inventory, places) for d in selected]
    for check in checks:
        print(f"{check.device}: {'OK' if check.ok else 'UNUSABLE'}")
        for key, value in check.facts.items():
            print(f"  {key:11} {value}")
        for problem in check.problems:
            print(f"  problem     {problem}")
    bad = [c.device for c in checks if not c.ok]
    if bad:
        print(f"unusable: {', '.join(bad)}")
        return 1
    print(f"all {len(checks)} devices usable")
    return 0
