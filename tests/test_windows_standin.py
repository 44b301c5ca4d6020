"""Every path of the real Windows agent, under Wine, against a scripted iphlpapi stand-in
(issue 13; tests/support/windows_standin).

Wine 8 has no FlushIpNetTable2, CreateIpNetEntry2 or DeleteIpNetEntry2, and its
GetIpNetTable2 knows no IPv6, so the agent's paths that matter on a real Windows host never
ran. Here the agent binary the harness uploads (built from the same source) calls a mingw-built
stand-in that returns scripted codes and rows and records each call's arguments: the tests
show what reaches the API and what the agent makes of each answer. The stand-in is installed
in a test prefix's system32 and chosen by Wine's DLL overrides, never through the agent's
folder; a planted DLL beside the agent must never load.

One prefix (a hard-link clone of the cached template) and one persistent wineserver, in a
namespace of its own (prefix nckA), serve the module; a call costs about 65 ms.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import selectors
import shlex
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.contract.status import Outcome
from harness.device.agent import Agent
from harness.device.agents.windows import build
from harness.device.dialect import PosixDialect
from harness.errors import AgentError
from harness.lab import wine as winelab
from harness.paths import cache_dir
from harness.ssh import CommandResult
from tests.support.windows_standin import (DLL_NAME, EXPORTS, NL_NEIGHBOR_STATE,
                                           POISON_MARKER_SUFFIX, Script, StandinWine,
                                           build_standin, row_address)

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
NETNS = f"nckA-s{os.getpid()}"
ERROR_NOT_FOUND, ERROR_OBJECT_ALREADY_EXISTS, ERROR_SHARING_VIOLATION = 1168, 5010, 32
ERROR_PROC_NOT_FOUND, ERROR_GEN_FAILURE = 127, 31
STATES = {0: "unreachable", 1: "incomplete", 2: "probe", 3: "delay", 4: "stale",
          5: "reachable", 6: "permanent"}
PERMANENT = NL_NEIGHBOR_STATE["NlnsPermanent"]

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace for Wine)"),
    pytest.mark.skipif(shutil.which(build.COMPILER) is None,
                       reason=f"{build.COMPILER} missing (apt-get install -y {build.APT_PACKAGE})"),
    pytest.mark.skipif(shutil.which("wine") is None or shutil.which("wineserver") is None,
                       reason="wine missing (apt-get install -y wine wine64)"),
]


# ---- builds and the prefix ---------------------------------------------------------------

def standin(omit: frozenset[str] | set[str] = frozenset(), poison: bool = False) -> Path:
    return build_standin(cache_dir() / "windows-standin", omit, poison)


def hooked_agent(name: str, *defines: str) -> Path:
    """A build of the agent with test hooks (never uploaded to a device)."""
    return build.build_agent(cache_dir() / "windows-agent-test" / name, defines)


@pytest.fixture(scope="module")
def agent_exe() -> Path:
    return build.build_agent(cache_dir() / "windows-agent")


@pytest.fixture(scope="module")
def full() -> Path:
    return standin()


def _delete_netns(name: str) -> None:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10).stdout
    if not re.search(rf"^{re.escape(name)}\b", listed, re.M):
        return
    pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                          timeout=10).stdout.split()
    for pid in pids:
        winelab._kill_pid(int(pid))
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def _delete_orphaned_netns() -> None:
    """Namespaces of earlier runs whose pytest died without its teardown (kill -9)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            timeout=10).stdout
    for match in re.finditer(r"^nckA-s(\d+)\b", listed, re.M):
        if not Path(f"/proc/{match.group(1)}").exists():
            _delete_netns(match.group(0))


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> StandinWine:
    """A prefix of our own (the stand-in replaces its system32 iphlpapi.dll), its wineserver
    in a namespace with only lo: Wine's services there see no host interface."""
    template = cache_dir() / "wine-template"
    winelab.prepare_prefix(template)
    base = tmp_path_factory.mktemp("nckA-standin")
    prefix = base / "prefix"
    winelab.clone_prefix(template, prefix)
    assert (prefix / "dosdevices" / "z:").exists(), "the stand-in's paths need Wine's Z: drive"
    _delete_orphaned_netns()
    _delete_netns(NETNS)
    subprocess.run(["ip", "netns", "add", NETNS], check=True, timeout=10)
    server = None
    try:
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True, timeout=10)
        server = winelab.start_wineserver(NETNS, prefix)
        yield StandinWine(NETNS, prefix, base / "work")
    finally:
        if server is not None:
            winelab.stop_wineserver(server, prefix)
        _delete_netns(NETNS)
        shutil.rmtree(base, ignore_errors=True)


class StandinSession:
    """The harness's Agent over the stand-in instead of SSH: what the harness makes of a reply
    (status space, outcome, table entries) is checked through its own parsing."""

    device_name = "standin"

    def __init__(self, wine: StandinWine, dll: Path, script: Script):
        self.wine, self.dll, self.script = wine, dll, script
        self.last = None

    def run(self, command: str, *, timeout: float | None = None,
            stdin: bytes | None = None) -> CommandResult:
        exe, *args = shlex.split(command)
        self.last = self.wine.run(self.dll, Path(exe), *args, script=self.script)
        return CommandResult(self.last.returncode, self.last.stdout, b"", 0.0)


def harness_agent(wine: StandinWine, exe: Path, dll: Path, script: Script) -> Agent:
    session = StandinSession(wine, dll, script)
    return Agent(SimpleNamespace(name="standin"), session, [str(exe)], PosixDialect())


# ---- flush -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", [AF_UNSPEC, AF_INET, AF_INET6, 10, 0xFFFF])
@pytest.mark.parametrize("ifindex", [0, 7, 0xFFFFFFFF])
def test_flush_arguments_reach_the_api_unchanged(wine, agent_exe, full, family, ifindex):
    run = wine.run(full, agent_exe, "flush", family, ifindex)
    assert run.returncode == 0
    assert run.reply == {"status": 0, "status_space": "win32"}
    assert run.elapsed_us is not None, "the call's own time (issue 15)"
    calls = run.calls("FlushIpNetTable2")
    assert [(c["family"], c["ifindex"]) for c in calls] == [(family, ifindex)]


@pytest.mark.parametrize("code, outcome", [
    (0, Outcome.SUCCESS), (87, Outcome.INVALID_PARAMETER), (50, Outcome.NOT_SUPPORTED),
    (5, Outcome.ACCESS_DENIED), (ERROR_GEN_FAILURE, Outcome.OTHER), (1168, Outcome.OTHER),
    (0xC000000D, Outcome.OTHER),  # an NTSTATUS from a user-mode function is no Win32 code
])
def test_each_flush_code_is_kept_raw_and_normalised(wine, agent_exe, full, code, outcome):
    agent = harness_agent(wine, agent_exe, full, Script().returns("FlushIpNetTable2", code))
    reply = agent.flush(AF_INET6, 5)
    assert (reply.raw, reply.space, reply.error) == (code, "win32", None)
    assert reply.outcome is outcome


# ---- table -------------------------------------------------------------------------------

def _all_states_script() -> tuple[Script, list[tuple]]:
    """A row in every NL_NEIGHBOR_STATE for both families, plus the odd ones."""
    script, rows = Script(), []
    for state, name in STATES.items():
        v4 = (AF_INET, 5, f"198.51.100.{10 + state}", f"02:00:00:00:04:{state:02x}", state,
              False, False, name)
        v6 = (AF_INET6, 6, f"2001:db8::{10 + state:x}", f"02:00:00:00:06:{state:02x}", state,
              False, False, name)
        rows += [v4, v6]
    rows += [
        # IsUnreachable with a usable-looking State: unreachable all the same.
        (AF_INET, 5, "198.51.100.40", "02:00:00:00:04:40", 4, False, True, "unreachable"),
        (AF_INET6, 6, "fe80::1", "02:00:00:00:06:40", 5, True, True, "unreachable"),
        # A router, no link-layer address yet, a full-length IPv6 address.
        (AF_INET6, 6, "2001:db8:1:2:3:4:5:6", None, 1, True, False, "incomplete"),
    ]
    for family, ifindex, address, lladdr, state, router, unreachable, _ in rows:
        script.neighbor(family, ifindex, address, lladdr, state, router, unreachable)
    return script, rows


def test_table_rows_in_every_state_for_both_families(wine, agent_exe, full):
    script, rows = _all_states_script()
    run = wine.run(full, agent_exe, "table", AF_UNSPEC, script=script)
    assert run.reply["status"] == 0 and run.reply["status_space"] == "win32"
    assert "api_status" not in run.reply
    got = [(e["family"], e["ifindex"], e["address"], e["lladdr"], e["state"], e["router"])
           for e in run.reply["entries"]]
    want = [(family, ifindex, str(ipaddress.ip_address(address)), lladdr, name, router)
            for family, ifindex, address, lladdr, _, router, _, name in rows]
    assert got == want
    # The table the API handed out is freed once, after the reply.
    [get] = run.calls("GetIpNetTable2")
    assert get["family"] == AF_UNSPEC
    assert [c["table"] for c in run.calls("FreeMibTable")] == [get["table"]]

    # ...and the harness accepts every entry (an unknown state would be an agent error).
    agent = harness_agent(wine, agent_exe, full, script)
    table = agent.table(AF_UNSPEC)
    assert table.status.outcome is Outcome.SUCCESS
    assert [n.state for n in table.entries] == [row[-1] for row in rows]


def test_a_state_the_agent_does_not_know_is_shown_raw_and_refused_by_the_harness(
        wine, agent_exe, full):
    script = Script().neighbor(AF_INET, 5, "198.51.100.9", "02:00:00:00:00:09", 9)
    run = wine.run(full, agent_exe, "table", AF_INET, script=script)
    [entry] = run.reply["entries"]
    assert (entry["state"], entry["state_raw"]) == ("unknown", 9)
    with pytest.raises(AgentError, match="malformed table entry"):
        harness_agent(wine, agent_exe, full, script).table(AF_INET)


@pytest.mark.parametrize("family", [AF_UNSPEC, AF_INET, AF_INET6, 0xFFFF])
def test_table_family_reaches_the_api_unchanged(wine, agent_exe, full, family):
    run = wine.run(full, agent_exe, "table", family)
    assert [c["family"] for c in run.calls("GetIpNetTable2")] == [family]
    assert run.reply == {"status": 0, "status_space": "win32", "entries": []}


@pytest.mark.parametrize("table_on_error", [False, True], ids=["no-table", "empty-table"])
def test_error_not_found_is_an_empty_table(wine, agent_exe, full, table_on_error):
    script = Script().returns("GetIpNetTable2", ERROR_NOT_FOUND)
    if table_on_error:
        script.table_on_error("GetIpNetTable2")
    run = wine.run(full, agent_exe, "table", AF_INET6, script=script)
    assert run.reply == {"status": 0, "status_space": "win32", "api_status": ERROR_NOT_FOUND,
                         "entries": []}
    [get] = run.calls("GetIpNetTable2")
    freed = [c["table"] for c in run.calls("FreeMibTable")]
    assert freed == ([get["table"]] if table_on_error else [])
    table = harness_agent(wine, agent_exe, full, script).table(AF_INET6)
    assert table.status.outcome is Outcome.SUCCESS and table.entries == ()


def test_a_failed_table_read_keeps_its_code_and_touches_no_table(wine, agent_exe, full):
    # A pointer left behind by a failed call is never read or freed.
    script = Script().returns("GetIpNetTable2", 87).table_on_error("GetIpNetTable2")
    script.neighbor(AF_INET, 5, "198.51.100.9", "02:00:00:00:00:09", 4)
    run = wine.run(full, agent_exe, "table", 10, script=script)
    assert run.reply == {"status": 87, "status_space": "win32", "entries": []}
    assert run.calls("FreeMibTable") == []


# ---- add and delete ------------------------------------------------------------------------

def _assert_row(call: dict, family: int, ifindex: int, address: str, lladdr: str | None):
    """The fields CreateIpNetEntry2/DeleteIpNetEntry2 require, and nothing else set."""
    assert call["si_family"] == family
    assert row_address(call) == ipaddress.ip_address(address)
    assert call["ifindex"] == ifindex
    assert call["luid"] == 0  # the index names the interface
    if lladdr is None:
        assert (call["lladdr"], call["lladdr_len"]) == ("", 0)
    else:
        assert call["lladdr"] == lladdr.replace(":", "") and call["lladdr_len"] == 6
    assert call["state"] == PERMANENT  # a static entry
    assert (call["router"], call["unreachable"]) == (0, 0)
    # Port, flow info and scope id zero: the SOCKADDR_INET holds the family and address only.
    raw = bytes.fromhex(call["sockaddr"])
    family_bytes = family.to_bytes(2, "little")
    packed = ipaddress.ip_address(address).packed
    if len(packed) == 4:
        expected = family_bytes + bytes(2) + packed + bytes(len(raw) - 8)
    else:
        expected = family_bytes + bytes(6) + packed + bytes(len(raw) - 24)
    assert raw == expected, call["sockaddr"]


@pytest.mark.parametrize("family, address, lladdr", [
    (AF_INET, "198.51.100.50", "02:00:00:00:00:32"),
    (AF_INET6, "2001:db8::50", "02:00:00:00:00:33"),
])
def test_add_fills_the_fields_the_reference_requires(wine, agent_exe, full, family, address,
                                                     lladdr):
    run = wine.run(full, agent_exe, "add", family, 9, address, lladdr.replace(":", "-"))
    assert run.reply == {"status": 0, "status_space": "win32"}
    [call] = run.calls("CreateIpNetEntry2")
    _assert_row(call, family, 9, address, lladdr)
    assert run.calls("SetIpNetEntry2") == run.calls("DeleteIpNetEntry2") == []


@pytest.mark.parametrize("code", [87, 5, 50, ERROR_NOT_FOUND])
def test_add_keeps_the_api_code(wine, agent_exe, full, code):
    script = Script().returns("CreateIpNetEntry2", code)
    reply = harness_agent(wine, agent_exe, full, script).add(AF_INET, 9, "198.51.100.51",
                                                            "02:00:00:00:00:33")
    assert (reply.raw, reply.space) == (code, "win32")


def test_add_replaces_an_existing_entry_with_setipnetentry2(wine, agent_exe, full):
    script = Script().returns("CreateIpNetEntry2", ERROR_OBJECT_ALREADY_EXISTS)
    run = wine.run(full, agent_exe, "add", AF_INET6, 9, "2001:db8::52", "02:00:00:00:00:34",
                   script=script)
    assert run.reply == {"status": 0, "status_space": "win32",
                         "api_status": ERROR_OBJECT_ALREADY_EXISTS, "replaced": True}
    [create] = run.calls("CreateIpNetEntry2")
    [set_call] = run.calls("SetIpNetEntry2")
    _assert_row(set_call, AF_INET6, 9, "2001:db8::52", "02:00:00:00:00:34")
    assert {k: v for k, v in set_call.items() if k not in ("fn", "call", "ret")} == \
        {k: v for k, v in create.items() if k not in ("fn", "call", "ret")}


def test_a_failed_replace_reports_the_failing_code(wine, agent_exe, full):
    script = (Script().returns("CreateIpNetEntry2", ERROR_OBJECT_ALREADY_EXISTS)
              .returns("SetIpNetEntry2", 5))
    run = wine.run(full, agent_exe, "add", AF_INET, 9, "198.51.100.52", "02:00:00:00:00:34",
                   script=script)
    assert run.reply["status"] == 5 and run.reply["replaced"] is False
    assert run.reply["api_status"] == ERROR_OBJECT_ALREADY_EXISTS
    assert "SetIpNetEntry2 returned 5" in run.reply["detail"]


def test_without_setipnetentry2_add_replaces_by_delete_and_create(wine, agent_exe):
    dll = standin(omit={"SetIpNetEntry2"})
    script = Script().returns("CreateIpNetEntry2", ERROR_OBJECT_ALREADY_EXISTS, 0)
    run = wine.run(dll, agent_exe, "add", AF_INET, 9, "198.51.100.53", "02:00:00:00:00:35",
                   script=script)
    assert run.reply == {"status": 0, "status_space": "win32",
                         "api_status": ERROR_OBJECT_ALREADY_EXISTS, "replaced": True}
    assert [c["fn"] for c in run.log if c["fn"] != "DllMain"] == \
        ["CreateIpNetEntry2", "DeleteIpNetEntry2", "CreateIpNetEntry2"]
    for call in run.log[1:]:
        _assert_row(call, AF_INET, 9, "198.51.100.53", "02:00:00:00:00:35")

    # Neither way to replace: the add's own code, said plainly.
    dll = standin(omit={"SetIpNetEntry2", "DeleteIpNetEntry2"})
    run = wine.run(dll, agent_exe, "add", AF_INET, 9, "198.51.100.53", "02:00:00:00:00:35",
                   script=script)
    assert run.reply["status"] == ERROR_OBJECT_ALREADY_EXISTS and run.reply["replaced"] is False
    assert "neither SetIpNetEntry2 nor DeleteIpNetEntry2" in run.reply["detail"]


@pytest.mark.parametrize("family, addresses", [
    (AF_INET, ["198.51.100.60"]),
    (AF_INET, ["198.51.100.60", "198.51.100.61", "198.51.100.62"]),
    (AF_INET6, ["2001:db8::60", "2001:DB8:0::61", "fe80::62"]),
])
def test_delete_calls_the_api_once_per_address(wine, agent_exe, full, family, addresses):
    run = wine.run(full, agent_exe, "delete", family, 4, *addresses)
    calls = run.calls("DeleteIpNetEntry2")
    assert len(calls) == len(addresses)
    for call, address in zip(calls, addresses):
        _assert_row(call, family, 4, address, None)
    assert run.reply == {"status": 0, "status_space": "win32",
                         "results": [{"address": a, "status": 0} for a in addresses]}


@pytest.mark.parametrize("codes, status", [
    ((0, ERROR_NOT_FOUND, 0), 0),             # not there is as good as deleted
    ((0, ERROR_NOT_FOUND, 5), 5),             # else the first other code
    ((87, 0, 5), 87),
    ((ERROR_NOT_FOUND,) * 3, 0),
])
def test_delete_reports_each_address(wine, agent_exe, full, codes, status):
    addresses = ["198.51.100.70", "198.51.100.71", "198.51.100.72"]
    script = Script().returns("DeleteIpNetEntry2", *codes)
    run = wine.run(full, agent_exe, "delete", AF_INET, 4, *addresses, script=script)
    assert run.reply["status"] == status and run.reply["status_space"] == "win32"
    assert run.reply["results"] == [{"address": a, "status": c}
                                    for a, c in zip(addresses, codes)]


def test_delete_checks_every_address_before_the_first_call(wine, agent_exe, full):
    run = wine.run(full, agent_exe, "delete", AF_INET, 4, "198.51.100.80", "198.51.100.300")
    assert run.returncode == 2 and run.reply["error"] == "bad-argument"
    assert "198.51.100.300" in run.reply["detail"]
    assert run.calls("DeleteIpNetEntry2") == []


# ---- missing exports -----------------------------------------------------------------------

@pytest.mark.parametrize("function, argv", [
    ("FlushIpNetTable2", ("flush", AF_INET, 0)),
    ("GetIpNetTable2", ("table", AF_INET6)),
    ("CreateIpNetEntry2", ("add", AF_INET, 3, "198.51.100.90", "02:00:00:00:00:5a")),
    ("DeleteIpNetEntry2", ("delete", AF_INET6, 3, "2001:db8::90", "2001:db8::91")),
    ("GetIfTable2", ("interfaces",)),
])
def test_a_missing_export_is_reported_for_each_function(wine, agent_exe, function, argv):
    run = wine.run(standin(omit={function}), agent_exe, *argv)
    assert run.returncode == 0
    assert run.reply["status"] is None and run.reply["error"] == "not-exported"
    assert run.reply["detail"] == f"iphlpapi.dll has no {function}"
    if argv[0] != "interfaces":
        assert run.reply["status_space"] == "win32"
    assert run.loaded_from == ["C:\\windows\\system32\\iphlpapi.dll"]  # the stand-in answered
    assert [c for c in run.log if c["fn"] != "DllMain"] == []


def test_without_getipinterfacetable_interfaces_have_no_families(wine, agent_exe):
    script = Script().interface(5, "eth1", "02:00:00:00:00:05").ip_interface(AF_INET, 5)
    run = wine.run(standin(omit={"GetIpInterfaceTable"}), agent_exe, "interfaces",
                   script=script)
    [interface] = run.reply["interfaces"]
    assert interface["index"] == 5 and "families" not in interface
    assert run.reply["ip_interface_status"] == {"ipv4": ERROR_PROC_NOT_FOUND,
                                                "ipv6": ERROR_PROC_NOT_FOUND}


def test_without_freemibtable_the_reply_is_whole(wine, agent_exe):
    script = Script().neighbor(AF_INET, 5, "198.51.100.9", "02:00:00:00:00:09", 4)
    run = wine.run(standin(omit={"FreeMibTable"}), agent_exe, "table", AF_INET, script=script)
    assert run.returncode == 0 and [e["address"] for e in run.reply["entries"]] == ["198.51.100.9"]


# ---- interfaces: families per interface ------------------------------------------------------

def _interfaces_script(v4_code: int = 0, v6_code: int = 0) -> Script:
    script = (Script().interface(1, "lo", None).interface(5, "eth1", "02:00:00:00:00:05")
              .interface(6, "eth2", "02:00:00:00:00:06").interface(7, "eth3", None, up=False)
              .interface(8, "eth1-filter", "02:00:00:00:00:05", filter_module=True))
    for family, index in ((AF_INET, 1), (AF_INET, 5), (AF_INET, 6),
                          (AF_INET6, 1), (AF_INET6, 5), (AF_INET6, 7)):
        script.ip_interface(family, index)
    # The agent asks for AF_INET, then AF_INET6.
    return script.returns("GetIpInterfaceTable", v4_code, v6_code)


def test_interfaces_report_the_families_bound_to_each(wine, agent_exe, full):
    run = wine.run(full, agent_exe, "interfaces", script=_interfaces_script())
    got = {i["name"]: (i["index"], i["mac"], i["up"], i.get("families"))
           for i in run.reply["interfaces"]}
    assert got == {"lo": (1, None, True, ["ipv4", "ipv6"]),
                   "eth1": (5, "02:00:00:00:00:05", True, ["ipv4", "ipv6"]),
                   "eth2": (6, "02:00:00:00:00:06", True, ["ipv4"]),
                   "eth3": (7, None, False, ["ipv6"])}  # the filter module row is left out
    assert [c["family"] for c in run.calls("GetIpInterfaceTable")] == [AF_INET, AF_INET6]
    tables = [c["table"] for c in run.calls("GetIfTable2") + run.calls("GetIpInterfaceTable")]
    assert sorted(c["table"] for c in run.calls("FreeMibTable")) == sorted(tables)


@pytest.mark.parametrize("v4, v6, want", [
    (0, ERROR_NOT_FOUND, {1: ["ipv4"], 5: ["ipv4"], 6: ["ipv4"], 7: []}),
    (0, 50, {1: ["ipv4"], 5: ["ipv4"], 6: ["ipv4"], 7: []}),  # no IPv6 stack
    (50, 0, {1: ["ipv6"], 5: ["ipv6"], 6: [], 7: ["ipv6"]}),
    (50, 50, None),  # Wine 8: neither table; the harness falls back to `stacks`
    (0, ERROR_GEN_FAILURE, None),  # one family unknown: no claim about either
])
def test_interface_families_when_a_family_table_fails(wine, agent_exe, full, v4, v6, want):
    run = wine.run(full, agent_exe, "interfaces", script=_interfaces_script(v4, v6))
    got = {i["index"]: i.get("families") for i in run.reply["interfaces"]}
    assert got == (want or {1: None, 5: None, 6: None, 7: None})
    assert run.reply["ip_interface_status"] == {"ipv4": v4, "ipv6": v6}


# ---- where iphlpapi.dll comes from -----------------------------------------------------------

def _plant(tmp_path: Path, exe: Path) -> tuple[Path, Path]:
    """A copy of the agent in a folder that also holds a poison iphlpapi.dll."""
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy2(exe, folder / exe.name)
    shutil.copy2(standin(poison=True), folder / DLL_NAME)
    return folder / exe.name, folder / (DLL_NAME + POISON_MARKER_SUFFIX)


@pytest.mark.parametrize("argv", [("flush", AF_INET, 0), ("table", AF_INET), ("interfaces",)])
def test_a_dll_planted_beside_the_agent_is_never_loaded(wine, agent_exe, full, tmp_path, argv):
    exe, marker = _plant(tmp_path, agent_exe)
    run = wine.run(full, exe, *argv, script=Script().returns("FlushIpNetTable2", 50))
    assert not marker.exists(), "the planted iphlpapi.dll beside the agent was loaded"
    assert run.loaded_from == ["C:\\windows\\system32\\iphlpapi.dll"]
    assert run.log[1]["fn"] in ("FlushIpNetTable2", "GetIpNetTable2", "GetIfTable2")
    if argv[0] == "flush":
        assert run.reply["status"] == 50


def test_without_iphlpapi_in_system32_nothing_else_is_loaded(wine, agent_exe, tmp_path):
    """No fallback to the default search when System32 has no iphlpapi.dll: the planted one
    stays unloaded and the reply says why the functions are missing."""
    exe, marker = _plant(tmp_path, agent_exe)
    run = wine.run(None, exe, "flush", AF_INET, 0)
    assert not marker.exists() and run.log == []
    assert run.reply["error"] == "not-exported" and run.reply["status"] is None
    assert re.fullmatch(r"iphlpapi\.dll could not be loaded from System32 \(error \d+\), so "
                        r"there is no FlushIpNetTable2", run.reply["detail"]), run.reply


def test_the_planted_dll_check_catches_the_default_search_order(wine, full, tmp_path):
    """The check above can fail: with the default search (the agent's folder first, as a
    plain LoadLibrary does on Windows) the planted DLL is what answers."""
    unsafe = hooked_agent("unsafe-dll-search", "NCK_TEST_UNSAFE_DLL_SEARCH")
    exe, marker = _plant(tmp_path, unsafe)
    run = wine.run(full, exe, "flush", AF_INET, 0)
    assert marker.exists()
    assert [p.endswith("\\upload\\iphlpapi.dll") for p in run.loaded_from] == [True]


# ---- info: elevation or Network Configuration Operators ------------------------------------

def test_info_reports_elevation_and_the_group(wine, agent_exe, full):
    info = wine.run(full, agent_exe, "info").reply
    # Wine's token is always an elevated administrator's and has no NCO membership.
    assert (info["admin"], info["elevated"], info["network_config_operator"]) == \
        (True, True, False)


@pytest.mark.parametrize("defines, want", [
    # Not elevated and not in the group: no admin rights.
    (("NCK_TEST_NOT_ELEVATED",), (False, False, False)),
    # Not elevated, but in the group checked (here Everyone, which every token has): admin.
    (("NCK_TEST_NOT_ELEVATED", 'NCO_SID=L"S-1-1-0"'), (True, False, True)),
], ids=["neither", "group-only"])
def test_admin_follows_elevation_or_the_group(wine, full, defines, want):
    name = "-".join(d.split("=")[0].lower() for d in defines)
    info = wine.run(full, hooked_agent(name, *defines), "info").reply
    assert (info["admin"], info["elevated"], info["network_config_operator"]) == want


# ---- lock ------------------------------------------------------------------------------------

def _read_line(proc: subprocess.Popen, timeout: float = 20.0) -> dict:
    """The lock's first line (bounded: a select on the pipe, never a blind read)."""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise AssertionError(f"no line from the lock within {timeout:g} s")
    line = proc.stdout.readline().decode()
    assert line.endswith("\n"), line
    return json.loads(line)


@contextmanager
def lock_held(wine: StandinWine, dll: Path, exe: Path, wait: float, holder: str):
    """A `lock` process and its first line; on leaving, its stdin is closed and it must exit
    0 with nothing more printed (killed, if it does not go)."""
    proc = wine.popen(dll, exe, "lock", wait, holder)
    try:
        yield proc, _read_line(proc)
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
        assert proc.stdout.read() == b"", "nothing may follow the lock's one line"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture
def lock_files(wine):
    data = wine.prefix / "drive_c" / "ProgramData"
    holder = data / "neighcheck.lock.holder"
    holder.unlink(missing_ok=True)
    yield data / "neighcheck.lock", holder


def test_lock_is_held_until_stdin_closes(wine, agent_exe, full, lock_files):
    _, holder_file = lock_files
    holder = "run 1 on ci-7 (pid 42) \u00e9"
    with lock_held(wine, full, agent_exe, 5, holder) as (_, first):
        assert first == {"status": 0, "locked": True}
        assert holder_file.read_bytes() == holder.encode()
        started = time.monotonic()
        busy = wine.run(full, agent_exe, "lock", "0.3", "run 2").reply
        assert time.monotonic() - started >= 0.3
        assert busy == {"status": ERROR_SHARING_VIOLATION, "status_space": "win32",
                        "locked": False, "holder": holder}
    # Released: the next run takes it at once (its stdin is already at EOF, so it lets go).
    assert wine.run(full, agent_exe, "lock", 0, "run 3").reply == {"status": 0, "locked": True}


def test_a_waiting_lock_gets_it_when_the_holder_lets_go(wine, agent_exe, full, lock_files):
    with lock_held(wine, full, agent_exe, 5, "run 1") as (_, first):
        assert first["locked"] is True
        second = wine.popen(full, agent_exe, "lock", 10, "run 2")
        time.sleep(0.5)
        assert second.poll() is None, "the second lock must wait, not give up"
    try:
        assert _read_line(second) == {"status": 0, "locked": True}
    finally:
        second.stdin.close()
        assert second.wait(timeout=20) == 0


def test_a_killed_holder_leaves_no_lock_behind(wine, agent_exe, full, lock_files):
    first = wine.popen(full, agent_exe, "lock", 5, "run 1")
    try:
        assert _read_line(first)["locked"] is True
    finally:
        # `ip netns exec` and the wine launcher exec: the pid we hold is the Windows process.
        first.kill()
        first.wait(timeout=20)
    assert wine.run(full, agent_exe, "lock", 5, "run 2").reply == {"status": 0, "locked": True}


def test_lock_reads_a_holder_written_by_powershell(wine, agent_exe, full, lock_files):
    """Windows PowerShell's Set-Content writes the ANSI code page, or UTF-16 with a BOM, and
    ends the line with CRLF."""
    _, holder_file = lock_files
    with lock_held(wine, full, agent_exe, 5, "run 1") as (_, first):
        assert first["locked"] is True
        for data in ("\ufeffps run \u00e9\r\n".encode("utf-16-le"), b"ps run \xe9\r\n"):
            holder_file.write_bytes(data)
            reply = wine.run(full, agent_exe, "lock", 0, "run 2").reply
            assert (reply["locked"], reply["holder"]) == (False, "ps run \u00e9")


@pytest.mark.parametrize("argv", [
    ("lock",), ("lock", "5"), ("lock", "x", "h"), ("lock", "-1", "h"), ("lock", "86401", "h"),
    ("lock", "1.2.3", "h"), ("delete", "2", "1"),
], ids=lambda argv: " ".join(argv))
def test_bad_lock_and_delete_arguments_exit_2(wine, agent_exe, full, argv):
    run = wine.run(full, agent_exe, *argv)
    assert run.returncode == 2 and run.reply["error"] == "bad-argument" and run.reply["detail"]


# ---- serve (issue 15) --------------------------------------------------------------------

class Serving:
    """`neighcheck_agent.exe serve` under the stand-in: request lines in, reply lines out,
    every read bounded."""

    def __init__(self, wine: StandinWine, dll: Path, exe: Path, script: Script):
        wine.prepare(dll, script)
        self.wine = wine
        self.proc = wine.popen(dll, exe, "serve")

    def ask(self, line: str) -> dict:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return _read_line(self.proc)

    def end(self) -> int:
        """EOF on stdin: the agent must exit, having printed nothing more."""
        self.proc.stdin.close()
        code = self.proc.wait(timeout=20)
        assert self.proc.stdout.read() == b"", "nothing may follow the last reply"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=20)


def test_serve_answers_each_request_on_one_line_with_its_id(wine, agent_exe, full):
    script = (Script().returns("FlushIpNetTable2", 87, 0)
              .neighbor(AF_INET, 5, "198.51.100.7", "02:00:5e:00:00:07", 4))
    serving = Serving(wine, full, agent_exe, script)
    try:
        assert serving.ask("@1 ping") == {"id": "1", "pong": True}
        info = serving.ask("@2 info")
        assert (info["id"], info["serve"], info["agent"].split("/")[0]) == \
            ("2", True, "neighcheck-windows-agent")
        flush = serving.ask("@3 flush 23 7")
        elapsed = flush.pop("elapsed_us")
        assert type(elapsed) is int and 0 <= elapsed < 20_000_000
        assert flush == {"id": "3", "status": 87, "status_space": "win32"}
        table = serving.ask("@t.4-x table 2")
        assert (table["id"], table["status"], [e["address"] for e in table["entries"]]) == \
            ("t.4-x", 0, ["198.51.100.7"])
        assert type(table["elapsed_us"]) is int
        # What a run of its own would exit 2 for: an error reply, and the agent goes on.
        bad = serving.ask("@5 flush 2")
        assert (bad["id"], bad["exit"], bad["error"]) == ("5", 2, "bad-argument")
        for verb in ("lock 1 me", "serve"):  # both would read the request stream
            refused = serving.ask(f"@6 {verb}")
            assert (refused["exit"], refused["error"]) == (2, "bad-argument"), refused
            assert "inside serve" in refused["detail"]
        empty = serving.ask("@7")  # an id and no verb
        assert (empty["id"], empty["exit"], empty["error"]) == ("7", 2, "bad-argument")
        assert serving.ask("ping") == {"pong": True}  # no id asked, none given
        badid = serving.ask("@a/b ping")
        assert "id" not in badid and badid["exit"] == 2 and "request id" in badid["detail"]
        # A blank line is no request: the reply that follows is the next request's.
        flush = serving.ask("\n@8 flush 2 0")
        assert (flush["id"], flush["status"]) == ("8", 0)
        assert serving.end() == 0
    finally:
        serving.kill()
    calls = [(c["family"], c["ifindex"]) for c in wine.read_log() if c["fn"] == "FlushIpNetTable2"]
    assert calls[0] == (AF_INET6, 7), "the serve loop must hand the arguments over unchanged"
