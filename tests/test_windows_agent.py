"""The native Windows agent (harness/device/agents/windows) built with mingw-w64 and run under Wine
inside a network namespace of our own (prefix nckW), against Wine's own iphlpapi.

Wine 8's iphlpapi has no FlushIpNetTable2, CreateIpNetEntry2 or DeleteIpNetEntry2, so those
verbs must answer `not-exported`; GetIpNetTable2(AF_INET) reads the namespace's kernel ARP
table, which `table 2` must reproduce. One WINEPREFIX (a hard-link clone of a cached template)
and one persistent wineserver serve the whole module. The paths Wine cannot reach run against
a scripted stand-in in tests/test_windows_standin.py; the last test here runs the agent's
`lock` over SSH on the embedded lab's Wine device.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.lab import wine as winelab
from harness.paths import cache_dir
from harness.device.agents.windows import build
from harness.device.agent import make_agent
from harness.errors import DeviceError, UsageError
from harness.ssh import SshSession
from tests.support.netns import netns_pids, remove_netns
from tests.support.windows_standin import untimed

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
INVALID_FAMILIES = (1, 6, 10, 24, 0xFFFF)
NETNS = f"nckW-t{os.getpid()}"
LINK_A, LINK_B = "nckW-a", "nckW-b"  # a veth pair living only inside NETNS
# An iphlpapi export that Wine 8 declares but does not implement (calling it raises
# EXCEPTION_WINE_STUB): a test build points `flush` at it.
WINE_STUB_EXPORT = "AllocateAndGetArpEntTableFromStack"
CALL_TIMEOUT_S = 20.0

needs_mingw = pytest.mark.skipif(shutil.which(build.COMPILER) is None,
                                 reason=f"{build.COMPILER} missing (apt-get install -y "
                                        f"{build.APT_PACKAGE})")
needs_wine = pytest.mark.skipif(shutil.which("wine") is None or shutil.which("wineserver") is None,
                                reason="wine missing (apt-get install -y wine wine64)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def lab_test(func):
    """Needs root, namespaces, mingw-w64 and Wine."""
    for mark in (pytest.mark.lab, needs_root, needs_mingw, needs_wine):
        func = mark(func)
    return func


def ip(*args: str, netns: str | None = NETNS, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc.stdout


# ---- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def agent_exe() -> Path:
    return build.build_agent(cache_dir() / "windows-agent")


@pytest.fixture(scope="session")
def wine_prefix(tmp_path_factory) -> Path:
    """A session's own prefix: a hard-link clone of a template prepared once per machine."""
    template = cache_dir() / "wine-template"
    winelab.prepare_prefix(template)
    prefix = tmp_path_factory.mktemp("nckW-wine") / "prefix"
    winelab.clone_prefix(template, prefix)
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


@dataclass
class WineNetns:
    name: str
    prefix: Path
    server_pid: int
    ifindex: dict[str, int]

    def run(self, exe: Path, *args: str | int) -> subprocess.CompletedProcess:
        return winelab.run_in_netns(self.name, self.prefix, exe, *args, timeout=CALL_TIMEOUT_S)

    def call(self, exe: Path, *args: str | int, exit_code: int = 0) -> dict:
        """Run the agent; check the exit code and that stdout is exactly one JSON object."""
        proc = self.run(exe, *args)
        out = proc.stdout.decode()
        assert proc.returncode == exit_code, (args, proc.returncode, out, proc.stderr[-500:])
        assert out.endswith("\n") and out.count("\n") == 1, f"not one line: {out!r}"
        assert out.isascii(), out
        reply = json.loads(out)
        assert isinstance(reply, dict), out
        untimed(reply)  # elapsed_us checked and set aside: the tests compare the rest
        return reply


def _delete_netns(netns: str) -> None:
    """Kill what runs in it (by pid), then delete it (our veth pair goes with it)."""
    remove_netns(netns)


def _delete_orphaned_netns() -> None:
    """Namespaces of earlier runs whose pytest process died without its teardown (kill -9)."""
    for line in ip("netns", "list", netns=None).splitlines():
        match = re.match(r"nckW-t(\d+)\b", line)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            _delete_netns(match.group(0))


@pytest.fixture(scope="module")
def wine_netns(wine_prefix) -> WineNetns:
    _delete_orphaned_netns()
    _delete_netns(NETNS)  # a leftover of a crashed run that had our pid
    ip("netns", "add", NETNS, netns=None)
    server_pid = None
    try:
        ip("link", "add", LINK_A, "type", "veth", "peer", "name", LINK_B)
        for link in ("lo", LINK_A, LINK_B):
            ip("link", "set", link, "up")
        ip("addr", "add", "198.51.100.1/24", "dev", LINK_A)
        ip("addr", "add", "203.0.113.1/24", "dev", LINK_B)
        ifindex = {link["ifname"]: link["ifindex"] for link in json.loads(ip("-j", "link"))}
        server_pid = winelab.start_wineserver(NETNS, wine_prefix)
        yield WineNetns(NETNS, wine_prefix, server_pid, ifindex)
    finally:
        if server_pid is not None:
            winelab.stop_wineserver(server_pid, wine_prefix)
        _delete_netns(NETNS)


# ---- build --------------------------------------------------------------------------------

@needs_mingw
def test_build_is_cached_and_rebuilt_when_flags_change(tmp_path):
    exe = build.build_agent(tmp_path)
    assert exe.read_bytes()[:2] == b"MZ", "not a PE executable"
    mtime = exe.stat().st_mtime_ns
    assert build.build_agent(tmp_path) == exe and exe.stat().st_mtime_ns == mtime
    # Different flags (a test define) make a different digest, so the .exe is rebuilt.
    build.build_agent(tmp_path, defines=['FLUSH_EXPORT="FlushIpNetTable"'])
    assert exe.stat().st_mtime_ns != mtime


def test_missing_compiler_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.setattr(build.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match=build.APT_PACKAGE):
        build.build_agent(tmp_path)


@lab_test
# ---- the agent under Wine -------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ("info",), ("interfaces",), ("stacks",), ("--version",),
    ("table", AF_INET), ("table", AF_INET6), ("table", AF_UNSPEC),
    ("flush", AF_INET, 0), ("add", AF_INET, 0, "198.51.100.50", "02:00:00:00:00:32"),
    ("add-static", AF_INET6, 0, "2001:db8::50", "02-00-00-00-00-32"),
    ("delete", AF_INET, 0, "198.51.100.50"), ("delete", AF_INET, 0, "198.51.100.50", "::1"),
    ("lock", 0, "one-shot"),  # stdin is /dev/null: it takes the lock and lets go at once
], ids=lambda argv: " ".join(map(str, argv)))
def test_every_verb_prints_one_json_object(wine_netns, agent_exe, argv):
    reply = wine_netns.call(agent_exe, *argv)
    assert reply.get("error") in (None, "not-exported"), reply


@lab_test
def test_version_is_embedded_and_matches_info(wine_netns, agent_exe):
    version = wine_netns.call(agent_exe, "--version")
    assert re.fullmatch(r"neighcheck-windows-agent/\d+\.\d+\.\d+", version["agent"]), version
    info = wine_netns.call(agent_exe, "info")
    assert info["agent"] == version["agent"]
    assert info["os"] == "windows"
    assert isinstance(info["admin"], bool)
    assert isinstance(info["elevated"], bool) and isinstance(info["network_config_operator"], bool)
    assert info["admin"] == (info["elevated"] or info["network_config_operator"])
    assert isinstance(info["hostname"], str) and info["hostname"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["build"]), info
    assert isinstance(info["wine"], str), "under Wine, info must name the Wine version"


@lab_test
def test_interfaces_are_the_namespace_links(wine_netns, agent_exe):
    reply = wine_netns.call(agent_exe, "interfaces")
    by_name = {item["name"]: item for item in reply["interfaces"]}
    links = {link["ifname"]: link for link in json.loads(ip("-j", "link"))}
    assert set(by_name) == set(links), "Wine must see exactly the namespace's links"
    for name in (LINK_A, LINK_B):
        assert by_name[name]["index"] == links[name]["ifindex"]
        assert by_name[name]["mac"] == links[name]["address"]
        assert by_name[name]["up"] is True
    # Wine 8's GetIpInterfaceTable fails for both families: no per-interface families (the
    # harness then uses `stacks`), and the codes say why.
    statuses = reply["ip_interface_status"]
    if statuses["ipv4"] != 0 and statuses["ipv6"] != 0:
        assert all("families" not in item for item in reply["interfaces"])


@lab_test
def test_stacks(wine_netns, agent_exe):
    reply = wine_netns.call(agent_exe, "stacks")
    assert reply["ipv4"] is True
    assert isinstance(reply["ipv6"], bool)


@lab_test
@pytest.mark.parametrize("family", [AF_UNSPEC, AF_INET, AF_INET6, *INVALID_FAMILIES])
def test_flush_is_not_exported_and_changes_nothing(wine_netns, agent_exe, family):
    before = wine_netns.call(agent_exe, "table", AF_INET)
    reply = wine_netns.call(agent_exe, "flush", family, wine_netns.ifindex[LINK_A])
    assert reply["status"] is None
    assert reply["error"] == "not-exported"
    assert "FlushIpNetTable2" in reply["detail"]
    assert wine_netns.call(agent_exe, "table", AF_INET) == before


@lab_test
@pytest.mark.parametrize("verb, args, function", [
    ("add", ("198.51.100.60", "02:00:00:00:00:3c"), "CreateIpNetEntry2"),
    ("delete", ("198.51.100.60",), "DeleteIpNetEntry2"),
])
def test_add_and_delete_are_not_exported(wine_netns, agent_exe, verb, args, function):
    reply = wine_netns.call(agent_exe, verb, AF_INET, wine_netns.ifindex[LINK_A], *args)
    assert reply == {"status": None, "status_space": "win32", "error": "not-exported",
                     "detail": f"iphlpapi.dll has no {function}"}


@lab_test
@pytest.mark.parametrize("family", INVALID_FAMILIES)
def test_table_passes_an_invalid_family_to_getipnettable2(wine_netns, agent_exe, family):
    reply = wine_netns.call(agent_exe, "table", family)
    # GetIpNetTable2's own error code, not an agent-side rejection.
    assert "error" not in reply, reply
    assert isinstance(reply["status"], int) and reply["status"] != 0, reply
    assert reply["entries"] == []


@lab_test
@pytest.mark.parametrize("argv", [
    (), ("nope",), ("table",), ("table", "2", "0"), ("table", "65536"), ("table", "-1"),
    ("table", "2x"), ("table", "0x"), ("table", ""), ("flush", "2"),
    ("flush", "2", "4294967296"), ("flush", "two", "0"),
    ("add", "2", "1", "not-an-address", "02:00:00:00:00:01"),
    ("add", "2", "1", "198.51.100.1", "zz:00"), ("add", "2", "1", "198.51.100.1", "02:00:"),
    ("add", "2", "1", "198.51.100.1"), ("delete", "2", "1", "198.51.100.300"),
    ("info", "extra"),
], ids=lambda argv: " ".join(argv) or "(none)")
def test_bad_arguments_exit_2_with_json(wine_netns, agent_exe, argv):
    reply = wine_netns.call(agent_exe, *argv, exit_code=2)
    assert reply["error"] == "bad-argument"
    assert reply["detail"]


@lab_test
@pytest.mark.parametrize("argv", [("table", "0xFFFF"), ("flush", "65535", "4294967295")])
def test_family_and_index_edges_are_accepted(wine_netns, agent_exe, argv):
    reply = wine_netns.call(agent_exe, *argv)
    assert reply.get("error") != "bad-argument"


@lab_test
def test_a_stub_export_is_reported_not_a_crash(wine_netns, tmp_path):
    stub_agent = build.build_agent(tmp_path, defines=[f'FLUSH_EXPORT="{WINE_STUB_EXPORT}"'])
    reply = wine_netns.call(stub_agent, "flush", AF_INET, 0)
    if reply.get("status") is not None:
        pytest.skip(f"{WINE_STUB_EXPORT} is implemented in this Wine, no stub to call")
    assert reply["error"] == "not-exported" and reply["status_space"] == "win32"
    assert "stub" in reply["detail"] and WINE_STUB_EXPORT in reply["detail"]


def _kernel_ipv4_neighbors(ifindex: dict[str, int]) -> set[tuple[str, int, str | None]]:
    return {(n["dst"], ifindex[n["dev"]], n.get("lladdr"))
            for n in json.loads(ip("-j", "-4", "neigh"))}


@lab_test
def test_table_2_is_the_namespace_arp_table(wine_netns, agent_exe):
    seeded = {  # address -> (link, lladdr, nud); states that stay put without traffic
        "198.51.100.7": (LINK_A, "02:00:00:00:00:07", "permanent"),
        "198.51.100.8": (LINK_A, "02:00:00:00:00:08", "stale"),
        "198.51.100.9": (LINK_A, "02:00:00:00:00:09", "reachable"),
        "203.0.113.7": (LINK_B, "02:00:00:00:01:07", "permanent"),
        "203.0.113.8": (LINK_B, "02:00:00:00:01:08", "stale"),
    }
    for address, (link, lladdr, nud) in seeded.items():
        ip("neigh", "replace", address, "lladdr", lladdr, "dev", link, "nud", nud)
    try:
        reply = wine_netns.call(agent_exe, "table", AF_INET)
        kernel = _kernel_ipv4_neighbors(wine_netns.ifindex)
    finally:
        for address, (link, _, _) in seeded.items():
            ip("neigh", "del", address, "dev", link, check=False)

    assert reply["status"] == 0 and reply["status_space"] == "win32"
    entries = reply["entries"]
    assert all(e["family"] == AF_INET for e in entries)
    # Wine adds the multicast entries Windows always shows (224.0.0.22, 239.255.255.250 on
    # every interface, no link-layer address); the kernel has no such entries.
    unicast = [e for e in entries if not ipaddress.ip_address(e["address"]).is_multicast]
    assert {(e["address"], e["ifindex"], e["lladdr"]) for e in unicast} == kernel
    assert {(a, wine_netns.ifindex[link], lladdr) for a, (link, lladdr, _) in seeded.items()} <= kernel
    states = {e["address"]: e["state"] for e in unicast}
    for address, (_, _, nud) in seeded.items():
        assert (states[address] == "permanent") == (nud == "permanent"), (address, states[address])


@lab_test
def test_agent_command_needs_no_environment(wine_netns, agent_exe):
    """agent_command is what a device runs over SSH: it must work from an empty environment."""
    argv = ["ip", "netns", "exec", wine_netns.name,
            *winelab.agent_command(wine_netns.prefix, agent_exe), "table", str(AF_INET)]
    proc = subprocess.run(argv, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                          capture_output=True, timeout=CALL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(proc.stdout)["status"] == 0


@lab_test
def test_services_run_inside_the_namespace(wine_netns):
    """The processes that answer network queries must live in our namespace, or `table`
    would describe another namespace's kernel table."""
    pids = netns_pids(wine_netns.name)
    assert wine_netns.server_pid in pids
    names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids
             if Path(f"/proc/{pid}/comm").exists()}
    assert "winedevice.exe" in names, names


@lab_test
def test_second_server_for_the_prefix_is_refused(wine_netns):
    with pytest.raises(DeviceError, match="already running"):
        winelab.start_wineserver(wine_netns.name, wine_netns.prefix)



@lab_test
def test_lock_verb_over_ssh_on_the_wine_lab_device(default_lab):
    """The `lock` verb where the harness uses it: over SSH, held while the channel is open.
    Closing the channel must reach the agent as the end of its stdin (sshd, then Wine)."""
    device = default_lab.device("win-wine")
    with SshSession(device.name, device.ssh) as one, SshSession(device.name, device.ssh) as two:
        agent = make_agent(device, one, default_lab)
        channel = one.open_channel()
        channel.settimeout(CALL_TIMEOUT_S)
        channel.exec_command(agent.command_line("lock", 10, "lock test (holder)"))
        try:
            assert json.loads(channel.makefile("rb").readline()) == {"status": 0, "locked": True}
            busy = agent.over(two).call("lock", "0.2", "second")
            assert busy == {"status": 32, "status_space": "win32", "locked": False,
                            "holder": "lock test (holder)"}
        finally:
            channel.close()
        # Released with the channel; the wait bounds how long that may take.
        assert agent.over(two).call("lock", 10, "third") == {"status": 0, "locked": True}


@lab_test
def test_serve_reports_a_stub_with_its_id_and_then_ends(wine_netns, tmp_path):
    """Serve mode (issue 15): a fault inside a DLL call ends the process, as per call; its
    report is still the request's one reply, with the id, and nothing follows it."""
    stub_agent = build.build_agent(tmp_path, defines=[f'FLUSH_EXPORT="{WINE_STUB_EXPORT}"'])
    proc = subprocess.run(["ip", "netns", "exec", wine_netns.name,
                           *winelab.wine_argv(stub_agent, "serve")],
                          env=winelab.wine_env(wine_netns.prefix), capture_output=True,
                          timeout=CALL_TIMEOUT_S, input=b"@1 ping\n@2 flush 2 0\n@3 ping\n")
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[0] == {"id": "1", "pong": True}
    if lines[1].get("status") is not None:
        pytest.skip(f"{WINE_STUB_EXPORT} is implemented in this Wine, no stub to call")
    assert (lines[1]["id"], lines[1]["error"], len(lines), proc.returncode) == \
        ("2", "not-exported", 2, 0), proc.stdout
