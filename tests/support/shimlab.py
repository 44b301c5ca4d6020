"""Namespaces whose tables the tests fill directly, the kernel-table oracle, and the Linux
shim run the way the harness runs it (tests/test_linux_shim.py, tests/test_mutants_direct.py).

The shim runs inside our own network namespaces (prefix nckA) exactly as on a device:
`sh -c '<shim text>' neighcheck-agent VERB ARGS...`. Tables are filled with `ip neigh
replace` (no traffic), and every verdict is taken against the kernel as `ip -j` reports it, an
oracle that shares no code with the shim's own parsing. The fixtures shim_lab and seeded are
in tests/conftest.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support import SHIM
from tests.support.netns import ip_json, links_by_name, namespaces, run

SHIM_TEXT = SHIM.read_text()

# The protocol's status codes and family numbers, written out here: the oracle does not use
# the harness's own tables.
SUCCESS = 0
UNSUCCESSFUL = 0xC0000001
INVALID_PARAMETER = 0xC000000D
ACCESS_DENIED = 0xC0000022
NOT_SUPPORTED = 0xC00000BB
NOT_FOUND = 0xC0000225
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23

KEPT_BY_FLUSH = frozenset({"permanent", "noarp"})  # the shim's documented OBS-PERMANENT choice
KERNEL_STATES = ("INCOMPLETE", "REACHABLE", "STALE", "DELAY", "PROBE", "FAILED", "NOARP", "PERMANENT")
IP = shutil.which("ip") or "/usr/sbin/ip"  # absolute: some tests put a test double first on PATH
DASH = shutil.which("dash") or "/bin/sh"


# --------------------------------------------------------------------------- the lab

@dataclass(frozen=True)
class Seed:
    """One entry the tests put in a device table."""

    link: str
    address: str
    lladdr: str | None
    state: str
    router: bool = False

    @property
    def family(self) -> int:
        return AF_INET6 if ":" in self.address else AF_INET


def standard_seeds() -> list[Seed]:
    """Per test link and family: stale, reachable, permanent and noarp entries."""
    seeds = []
    for n, (link, v4, v6) in enumerate((("eth1", "198.51.100", "2001:db8:1:"),
                                        ("eth2", "203.0.113", "2001:db8:2:")), start=1):
        for host, state in ((10, "stale"), (11, "reachable"), (12, "permanent"), (13, "noarp")):
            mac = f"02:00:5e:{n:02x}:00:{host:02x}"
            seeds.append(Seed(link, f"{v4}.{host}", mac, state))
            seeds.append(Seed(link, f"{v6}:{host:x}", f"02:00:5e:{n:02x}:06:{host:02x}", state,
                              router=(state == "stale")))
    return seeds


class ShimLab:
    """Three namespaces: `dev` (eth1, eth2; IPv4 and IPv6), `nov6` (eth1; IPv6 disabled) and
    `peer`, which holds the other ends of the veths with IPv6 disabled (no NDP/MLD noise)."""

    def __init__(self, tag: str):
        self.dev, self.nov6, self.peer = f"nckA{tag}d", f"nckA{tag}n", f"nckA{tag}p"
        self.peer_links = {(self.dev, "eth1"): f"nckA{tag}a", (self.dev, "eth2"): f"nckA{tag}b",
                           (self.nov6, "eth1"): f"nckA{tag}c"}
        self.namespaces = (self.peer, self.dev, self.nov6)

    def up(self) -> None:
        self.down()  # a crashed run with the same tag may have left these behind
        try:
            for ns in self.namespaces:
                run("ip", "netns", "add", ns)
            for ns in (self.peer, self.nov6):
                run("ip", "netns", "exec", ns, "sh", "-c",
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && "
                    "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6")
            for (ns, dev_if), peer_if in self.peer_links.items():
                run("ip", "link", "add", peer_if, "netns", self.peer, "type", "veth",
                    "peer", "name", dev_if, "netns", ns)
                run("ip", "-n", self.peer, "link", "set", peer_if, "up")
                run("ip", "-n", ns, "link", "set", dev_if, "up")
            run("ip", "-n", self.dev, "addr", "add", "198.51.100.1/24", "dev", "eth1")
            run("ip", "-n", self.dev, "addr", "add", "203.0.113.1/24", "dev", "eth2")
            run("ip", "-n", self.dev, "addr", "add", "2001:db8:1::1/64", "dev", "eth1", "nodad")
            run("ip", "-n", self.dev, "addr", "add", "2001:db8:2::1/64", "dev", "eth2", "nodad")
            run("ip", "-n", self.nov6, "addr", "add", "192.0.2.1/24", "dev", "eth1")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        existing = namespaces()
        for peer_if in self.peer_links.values():
            if self.peer in existing:
                run("ip", "-n", self.peer, "link", "del", peer_if, check=False)
        for ns in self.namespaces:
            if ns in existing:
                run("ip", "netns", "del", ns, check=False)

    # --- device tables -----------------------------------------------------------------
    def ifindex(self, ns: str, name: str) -> int:
        return links_by_name(ns)[name]

    def missing_ifindex(self, ns: str) -> int:
        return max(links_by_name(ns).values()) + 1000

    def fill(self, ns: str, seeds: list[Seed]) -> None:
        """Puts every seed in place (replace: whatever state it was in before)."""
        lines = []
        for s in seeds:
            ll = f" lladdr {s.lladdr}" if s.lladdr else ""
            router = " router" if s.router else ""
            lines.append(f"neigh replace {s.address}{ll} dev {s.link} nud {s.state}{router}")
        run("ip", "-n", ns, "-batch", "-", input="\n".join(lines) + "\n")
        table = kernel_table(ns)
        links = links_by_name(ns)
        for s in seeds:
            row = table.get((s.family, links[s.link], s.address))
            assert row is not None and row.state == s.state, f"seeding {s} failed: {row}"


# --------------------------------------------------------------------------- the oracle

@dataclass(frozen=True)
class Row:
    lladdr: str | None
    state: str
    router: bool


Key = tuple[int, int, str]  # (family, ifindex, address)


def kernel_table(ns: str, family: int = AF_UNSPEC) -> dict[Key, Row]:
    """The namespace's neighbor table as `ip -j` reports it (the oracle)."""
    links = links_by_name(ns)
    table = {}
    for e in ip_json(ns, "neigh", "show", "nud", "all"):
        fam = AF_INET6 if ":" in e["dst"] else AF_INET
        if family and fam != family:
            continue
        states = [s for s in e.get("state", []) if s in KERNEL_STATES]
        state = states[-1].lower() if states else "incomplete"  # NUD_NONE: no state yet
        table[(fam, links[e["dev"]], e["dst"])] = Row(e.get("lladdr"), state, "router" in e)
    return table


def in_scope(key: Key, family: int, ifindex: int) -> bool:
    return family in (AF_UNSPEC, key[0]) and ifindex in (0, key[1])


def flush_removes(before: dict[Key, Row], family: int, ifindex: int) -> set[Key]:
    return {k for k, row in before.items() if in_scope(k, family, ifindex) and row.state not in KEPT_BY_FLUSH}


def changes(before: dict[Key, Row], after: dict[Key, Row]) -> tuple[set[Key], set[Key]]:
    """(entries gone, entries present in both but changed). New entries are not judged:
    the kernel may add multicast NOARP entries on its own at any time."""
    gone = {k for k in before if k not in after}
    changed = {k for k in before if k in after and after[k] != before[k]}
    return gone, changed


def assert_flush_effect(before: dict[Key, Row], after: dict[Key, Row], family: int, ifindex: int) -> None:
    gone, changed = changes(before, after)
    expected = flush_removes(before, family, ifindex)
    back = {k for k in expected if k in after}
    assert not back, f"in-scope entries still present after the flush: {sorted(back)}"
    assert gone == expected, f"collateral removal: {sorted(gone - expected)}"
    assert not changed, f"entries changed: {sorted(changed)}"


def assert_unchanged(before: dict[Key, Row], after: dict[Key, Row]) -> None:
    gone, changed = changes(before, after)
    assert not gone and not changed, f"gone: {sorted(gone)}; changed: {sorted(changed)}"


# --------------------------------------------------------------------------- running the shim

def shim_argv(ns: str, *args: object, shell: tuple[str, ...] = (DASH,), as_user: list[str] | None = None,
              agent: Path | None = None) -> list[str]:
    """The harness's way (`sh -c TEXT neighcheck-agent ...`), or `sh FILE ...` for an agent file."""
    program = [str(agent)] if agent else ["-c", SHIM_TEXT, "neighcheck-agent"]
    return [IP, "netns", "exec", ns, *(as_user or []), *shell, *program, *map(str, args)]


def shim_run(ns: str, *args: object, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return run(*shim_argv(ns, *args, **kw), check=False, env=env)


def shim(ns: str, *args: object, env: dict[str, str] | None = None, **kw) -> dict:
    """One protocol call: exit 0 and exactly one JSON object on stdout."""
    proc = shim_run(ns, *args, env=env, **kw)
    assert proc.returncode == 0, f"shim {args} exited {proc.returncode}: {proc.stdout} {proc.stderr}"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"shim {args} printed {len(lines)} lines: {proc.stdout[:300]!r}"
    return json.loads(lines[0])


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]  # a caller without rights


def env_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}
