"""The Windows driver: the device's shell (probed once per session; cmd.exe, PowerShell, or a
Windows shell behind a POSIX launcher), quoting for each with hostile words, upload paths
(absolute and relative, per account) over an SFTP server that answers as Windows OpenSSH's
does, adapter names, and cleanup in a few calls.

The lab tests run the same commands for real on the win-wine lab device, whose commands go
through Wine's cmd.exe as Windows OpenSSH runs them (`cmd.exe /c "<command>"`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shlex
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import paramiko
import pytest

from harness.contract.clauses import AF_INET, AF_INET6
from harness.device import windows
from harness.device.agent import Agent, make_agent
from harness.device.dialect import (CMD_LINE_BUDGET, SHELL_PROBE, CmdDialect, LaunchedDialect, PosixDialect,
                                    PowerShellDialect, classify_shell, cmd_quote, dialect_for, ps_quote)
from harness.device.dut import DeviceUnderTest
from harness.device.lock import device_lock
from harness.contract.protocol import Neighbor, StatusReply
from harness.device.windows import REMOTE_NAME, local_agent, sftp_dir, upload_dir, windows_path
from harness.errors import DeviceError, UsageError
from harness.inventory import load_inventory
from harness.ssh import CommandResult, SshSession

needs_wine = pytest.mark.skipif(shutil.which("wine") is None or shutil.which("x86_64-w64-mingw32-gcc") is None,
                                reason="needs wine and mingw-w64 (make test installs them)")

# Words that mean something to some shell; every one must reach the program unchanged.
HOSTILE = ["a b", "(x)", "a;b", "$(id)", "`id`", "it's", "a,b=c", "#x", "@x", "tab\there",
           "Подключение по локальной сети", "é", "2001:db8::1", r"C:\dir\x", "-c", "/c", ""]


# --- quoting ------------------------------------------------------------------------------------
def test_cmd_quote_leaves_plain_words_and_quotes_blanks():
    assert cmd_quote("flush") == "flush"
    assert cmd_quote(r"C:\Users\lab\neighcheck\neighcheck_agent.exe") == r"C:\Users\lab\neighcheck\neighcheck_agent.exe"
    assert cmd_quote(r"C:\Program Files\agent.exe") == r'"C:\Program Files\agent.exe"'
    assert cmd_quote("") == '""'


@pytest.mark.parametrize("word", ['a&b', 'x|y', '%PATH%', 'say"hi', 'a^b', 'a>b', 'a\nb', '!x!', 'dir x\\'])
def test_cmd_quote_refuses_what_cmd_exe_would_interpret(word):
    with pytest.raises(UsageError, match="cmd.exe"):
        cmd_quote(word)


def ps_unquote(line: str) -> list[str]:
    """An independent reading of a PowerShell argument list as about_Quoting_Rules says: a
    single-quoted string is literal, any of ' ‘ ’ ‚ ‛ quotes, and two quote characters in a row
    are one literal quote. Unquoted bare words may only be digits; anything else fails."""
    quotes = "'\u2018\u2019\u201a\u201b"
    words, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
        elif line[i] in quotes:
            i, word = i + 1, ""
            while True:
                if line[i] in quotes:
                    if i + 1 < len(line) and line[i + 1] in quotes:
                        word, i = word + line[i], i + 2
                        continue
                    i += 1
                    break
                word, i = word + line[i], i + 1
            words.append(word)
        else:
            end = line.find(" ", i) if " " in line[i:] else len(line)
            bare = line[i:end]
            assert bare.isdigit(), f"unquoted {bare!r} would be interpreted by PowerShell"
            words.append(bare)
            i = end
    return words


def test_powershell_quoting_round_trips_hostile_words_and_keeps_the_exit_code():
    words = [r"C:\Program Files\nck\agent.exe", "flush", "23", *HOSTILE, "it\u2019s", "‘q’", "$env:X", "a&b|c"]
    line = PowerShellDialect().quote(words)
    assert line.startswith("& ") and line.endswith("; exit $LASTEXITCODE")
    assert ps_unquote(line[2:-len("; exit $LASTEXITCODE")]) == words


@pytest.mark.parametrize("word", ['say"hi', "a\nb", "dir x\\"])
def test_powershell_quote_refuses_what_a_native_program_would_not_get_back(word):
    with pytest.raises(UsageError, match="PowerShell"):
        ps_quote(word)


def test_launched_dialect_hands_the_cmd_line_to_the_launcher_as_one_word():
    dialect = LaunchedDialect(CmdDialect(), ("wine", "nck-sshexec"))
    line = dialect.quote([r"Z:\lab\agent.exe", "table", "0", "a b"])
    assert shlex.split(line) == ["wine", "nck-sshexec", r'Z:\lab\agent.exe table 0 "a b"']
    assert shlex.split(dialect.liveness) == ["wine", "nck-sshexec", "rem"]
    assert dialect.word_length("a b") == len('"a b"') + 1  # what counts is the cmd.exe line


# --- the shell probe ------------------------------------------------------------------------------
PROBE_OUTPUT = {"cmd.exe": "neighcheck-shell Windows_NT $PSVersionTable.PSEdition\r\n",
                "PowerShell": "neighcheck-shell\r\n%OS%\r\nDesktop\r\n",
                "pwsh": "neighcheck-shell\n%OS%\nCore\n",
                "PowerShell 4": "neighcheck-shell\r\n%OS%\r\n",
                "sh": "neighcheck-shell %OS% .PSEdition\n"}


@pytest.mark.parametrize("shell, output", PROBE_OUTPUT.items())
def test_classify_shell(shell, output):
    assert classify_shell(output) == {"pwsh": "PowerShell", "PowerShell 4": "PowerShell"}.get(shell, shell)


def test_classify_shell_unknown():
    assert classify_shell("") is None
    assert classify_shell("'echo' is not recognized") is None
    assert classify_shell("neighcheck-shell %OS% $PSVersionTable.PSEdition\n") is None  # nothing expanded


class FakeSession:
    """An SSH session whose device answers the shell probe like `shell` and agent verbs from
    `replies` (verb -> JSON object); it records every command."""

    def __init__(self, shell: str = "cmd.exe", replies: dict | None = None, user: str = "admin", sftp=None):
        self.device_name, self.shell, self.replies = "win-a", shell, replies or {}
        self.commands: list[str] = []
        self.login = SimpleNamespace(user=user)
        self._sftp, self.timed_out = sftp, False

    def run(self, command: str, *, timeout=None, stdin=None) -> CommandResult:
        self.commands.append(command)
        if SHELL_PROBE in command or shlex.quote(SHELL_PROBE) in command:
            return CommandResult(0, PROBE_OUTPUT[self.shell].encode(), b"", 0.0)
        for verb, reply in self.replies.items():
            if f" {verb}" in command or f" '{verb}'" in command:
                return CommandResult(0, json.dumps(reply(command) if callable(reply) else reply).encode(), b"", 0.0)
        return CommandResult(1, b"", b"unknown command", 0.0)

    def sftp(self):
        return self._sftp()

    @property
    def probes(self) -> int:
        return sum(SHELL_PROBE in c or shlex.quote(SHELL_PROBE) in c for c in self.commands)


def windows_inventory(tmp_path: Path, *, upload_dir: str | None = None, launcher: list[str] | None = None,
                      device_if: str = "Ethernet 2", command: list[str] | None = None):
    (tmp_path / "id_test").write_text("not a real key\n")
    (tmp_path / "known_hosts").write_text("")
    agent = ""
    if upload_dir or launcher or command:
        agent = "[device.agent]\n"
        agent += f"upload_dir = {json.dumps(upload_dir)}\n" if upload_dir else ""
        agent += f"launcher = {json.dumps(launcher)}\n" if launcher else ""
        agent += f"command = {json.dumps(command)}\n" if command else ""
    path = tmp_path / "devices.toml"
    path.write_text(f"""
[[device]]
name = "win-a"
os = "windows"
[device.ssh]
host = "192.0.2.10"
user = "admin"
key_file = "id_test"
known_hosts = "known_hosts"
[device.unprivileged]
user = "nckuser"
key_file = "id_test"
{agent}
[[device.link]]
device_if = {json.dumps(device_if)}
harness_if = "nckW-u-t1"
device_v4 = "198.51.100.2/24"
harness_v4 = "198.51.100.1/24"
device_v6 = "2001:db8:77::2/64"
harness_v6 = "2001:db8:77::1/64"
""")
    inventory = load_inventory(path)
    return inventory, inventory.devices[0]


@pytest.fixture
def fake_agent_exe(tmp_path, monkeypatch):
    exe = tmp_path / "built" / REMOTE_NAME
    exe.parent.mkdir()
    exe.write_bytes(b"MZ fake agent " + bytes(range(256)))
    monkeypatch.setattr(windows, "local_agent", lambda: exe)
    return exe


@pytest.mark.parametrize("shell", ["cmd.exe", "PowerShell"])
def test_agent_lock_and_doctor_take_the_dialect_from_one_probe_per_session(tmp_path, monkeypatch, shell):
    inventory, device = windows_inventory(tmp_path, command=[r"C:\vendor\agent.exe"])
    replies = {"info": {"agent": "vendor/1", "admin": True}, "stacks": {"ipv4": True, "ipv6": True},
               "interfaces": {"interfaces": [{"index": 7, "name": "Ethernet 2", "mac": "02:00:00:00:00:07",
                                              "up": True, "families": ["ipv4"]}]}}
    session = FakeSession(shell, replies)
    agent = make_agent(device, session, inventory)
    monkeypatch.setattr(windows, "agent_prefix", lambda *a: [r"C:\Users\admin\neighcheck\neighcheck_agent.exe"])
    lock = device_lock(device, session, inventory, "me", 5, agent=agent)
    if shell == "cmd.exe":
        assert agent.command_line("flush", 2, 0) == r"C:\vendor\agent.exe flush 2 0"
        assert lock.command() == r"C:\Users\admin\neighcheck\neighcheck_agent.exe lock 5 me"
    else:
        assert agent.command_line("flush", 2, 0) == r"& 'C:\vendor\agent.exe' 'flush' 2 0; exit $LASTEXITCODE"
        assert lock.command().startswith(r"& 'C:\Users\admin\neighcheck\neighcheck_agent.exe' 'lock' 5")
    assert dialect_for(device, session).name == shell
    assert session.probes == 1  # asked once for this session, whoever asks

    from harness import doctor
    doctor_session = FakeSession(shell, replies)
    doctor_session.connect = doctor_session.close = lambda: None
    monkeypatch.setattr(doctor, "SshSession", lambda *a, **k: doctor_session)
    check = doctor.check_device(device, inventory)
    assert check.facts["shell"] == shell
    assert check.facts["interfaces"] == "Ethernet 2=7 [ipv4]"
    assert check.facts["note-Ethernet 2"].startswith("ipv6 off on this test link")
    assert doctor_session.probes == 1


def test_a_windows_device_whose_ssh_runs_sh_is_refused_clearly(tmp_path):
    inventory, device = windows_inventory(tmp_path)
    with pytest.raises(DeviceError, match=r"POSIX shell .*cmd.exe or PowerShell.*launcher"):
        dialect_for(device, FakeSession("sh"))


def test_the_launcher_probe_goes_through_the_launcher(tmp_path):
    inventory, device = windows_inventory(tmp_path, launcher=["wine", "nck-sshexec"])
    session = FakeSession("cmd.exe")
    dialect = dialect_for(device, session)
    assert isinstance(dialect, LaunchedDialect) and dialect.windows
    assert shlex.split(session.commands[0]) == ["wine", "nck-sshexec", SHELL_PROBE]
    broken = FakeSession("sh")
    with pytest.raises(DeviceError, match=r"launcher `wine nck-sshexec` did not run a Windows shell"):
        dialect_for(device, broken)


def test_linux_needs_no_probe():
    device = SimpleNamespace(os="linux")
    assert isinstance(dialect_for(device, None), PosixDialect)


# --- upload paths, over an SFTP server that answers as Windows OpenSSH's -----------------------------
class WindowsSftp(paramiko.SFTPServerInterface):
    """Windows OpenSSH's SFTP view: drives as /C:/..., a session starting in the user's profile
    (/C:/Users/<user>), realpath answering in the /C:/ form. Backed by a directory per drive."""

    def __init__(self, server, root: Path, user: str):
        super().__init__(server)
        self.root, self.home = root, f"/C:/Users/{user}"

    def _absolute(self, path: str) -> str:
        path = path.replace("\\", "/")
        return posixpath.normpath(path if path.startswith("/") else posixpath.join(self.home, path))

    def _local(self, path: str) -> Path:
        absolute = self._absolute(path)
        assert absolute[:4] in ("/C:/", "/C:") or absolute == "/", f"not a drive path: {absolute}"
        return self.root / absolute.lstrip("/").replace(":", "", 1)

    def canonicalize(self, path):
        return self._absolute(path)

    def _attrs(self, local: Path):
        return paramiko.SFTPAttributes.from_stat(local.stat())

    def stat(self, path):
        local = self._local(path)
        return self._attrs(local) if local.exists() else paramiko.SFTP_NO_SUCH_FILE

    lstat = stat

    def open(self, path, flags, attr):
        local = self._local(path)
        if flags & (os.O_WRONLY | os.O_RDWR):
            if not local.parent.is_dir():
                return paramiko.SFTP_NO_SUCH_FILE
            mode = "wb"
        elif not local.is_file():
            return paramiko.SFTP_NO_SUCH_FILE
        else:
            mode = "rb"
        handle = paramiko.SFTPHandle(flags)
        handle.readfile = handle.writefile = local.open(mode)
        handle.filename = str(local)
        return handle

    def mkdir(self, path, attr):
        self._local(path).mkdir()
        return paramiko.SFTP_OK

    def remove(self, path):
        local = self._local(path)
        if not local.exists():
            return paramiko.SFTP_NO_SUCH_FILE
        local.unlink()
        return paramiko.SFTP_OK

    def rename(self, old, new):
        self._local(old).rename(self._local(new))
        return paramiko.SFTP_OK


class _SftpOnly(paramiko.ServerInterface):
    def get_allowed_auths(self, username):
        return "none"

    def check_auth_none(self, username):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED


@pytest.fixture(scope="module")
def host_key():
    return paramiko.RSAKey.generate(1024)


@pytest.fixture
def windows_sftp(tmp_path, host_key):
    """sftp_for(user) -> a callable giving SFTP clients of that user's session."""
    root = tmp_path / "drives"
    (root / "C" / "Users" / "admin").mkdir(parents=True)
    (root / "C" / "Users" / "nckuser").mkdir(parents=True)
    transports = []

    def sftp_for(user: str):
        a, b = socket.socketpair()
        server = paramiko.Transport(a)
        server.add_server_key(host_key)
        server.set_subsystem_handler("sftp", paramiko.SFTPServer, WindowsSftp, root, user)
        threading.Thread(target=server.start_server, kwargs={"server": _SftpOnly()}, daemon=True).start()
        client = paramiko.Transport(b)
        client.start_client(timeout=10)
        client.auth_none(user)
        transports.extend((server, client))
        return lambda: paramiko.SFTPClient.from_transport(client)

    yield root, sftp_for
    for transport in transports:
        transport.close()


def test_sftp_paths():
    assert sftp_dir(r"C:\neighcheck") == "/C:/neighcheck"
    assert sftp_dir("c:/tools/nck/") == "/C:/tools/nck"
    assert sftp_dir("D:\\") == "/D:/"
    assert sftp_dir(r"tools\neighcheck") == "tools/neighcheck"
    assert sftp_dir("/srv/lab/upload") == "/srv/lab/upload"
    with pytest.raises(UsageError, match="drive letter"):
        sftp_dir("tools:x")
    assert windows_path("/C:/Users/nckuser/neighcheck/neighcheck_agent.exe") == \
        r"C:\Users\nckuser\neighcheck\neighcheck_agent.exe"
    assert windows_path("/srv/lab/upload/a.exe", wine=True) == r"Z:\srv\lab\upload\a.exe"


@pytest.mark.parametrize("configured, stored, runs", [
    (None, "C/Users/{user}/neighcheck", r"C:\Users\{user}\neighcheck"),          # the default: the profile
    (r"tools\nck", "C/Users/{user}/tools/nck", r"C:\Users\{user}\tools\nck"),  # relative: in the profile
    (r"C:\neighcheck", "C/neighcheck", r"C:\neighcheck"),                        # absolute: /C:/ form
])
def test_upload_dir_absolute_or_relative_to_the_accounts_profile(tmp_path, windows_sftp, fake_agent_exe,
                                                                 configured, stored, runs):
    root, sftp_for = windows_sftp
    inventory, device = windows_inventory(tmp_path, upload_dir=configured)
    session = FakeSession("cmd.exe", user="admin", sftp=sftp_for("admin"))
    agent = make_agent(device, session, inventory)
    remote = root / stored.format(user="admin") / REMOTE_NAME
    assert remote.read_bytes() == fake_agent_exe.read_bytes()
    assert agent.prefix == [runs.format(user="admin") + "\\" + REMOTE_NAME]
    assert agent.builtin


def test_the_non_admin_account_runs_its_own_copy_from_its_own_profile(tmp_path, windows_sftp, fake_agent_exe,
                                                                       monkeypatch):
    """RET-ACCESS: the admin's profile is not readable to the non-admin account, so its agent
    is uploaded over its own session into its own profile, by the one factory."""
    root, sftp_for = windows_sftp
    inventory, device = windows_inventory(tmp_path)
    admin = FakeSession("cmd.exe", user="admin", sftp=sftp_for("admin"))
    sessions = {"nckuser": FakeSession("cmd.exe", user="nckuser", sftp=sftp_for("nckuser"),
                                       replies={"info": {"admin": False}})}

    class Session(FakeSession):
        def __new__(cls, name, config, login=None):
            session = sessions[login.user]
            session.connect = session.close = lambda: None
            return session

    dut = DeviceUnderTest(device, inventory, entries=1, seeder=None, holder="me")
    monkeypatch.setattr("harness.device.dut.SshSession", Session)
    dut.agent = make_agent(device, admin, inventory)
    with dut.unprivileged_agent() as agent:
        assert agent.session is sessions["nckuser"]
        assert agent.prefix == [rf"C:\Users\nckuser\neighcheck\{REMOTE_NAME}"]
        assert agent.info() == {"admin": False}
    assert (root / "C/Users/nckuser/neighcheck" / REMOTE_NAME).read_bytes() == fake_agent_exe.read_bytes()
    assert (root / "C/Users/admin/neighcheck" / REMOTE_NAME).is_file()


# --- adapters and families ------------------------------------------------------------------------
def opened_dut(inventory, device, interfaces, stacks=None) -> DeviceUnderTest:
    """A DeviceUnderTest as open() leaves it, without a device: its links resolved."""
    dut = DeviceUnderTest(device, inventory, entries=2, seeder=None, holder="me")
    dut.stacks = stacks or {"ipv4": True, "ipv6": True}
    dut.interfaces = interfaces
    dut.links = [dut._resolve(link, slot) for slot, link in enumerate(device.links)]
    return dut


def test_localized_adapter_names_match_without_case(tmp_path):
    name = "Подключение по локальной сети 2"
    inventory, device = windows_inventory(tmp_path, device_if=name.upper())
    dut = opened_dut(inventory, device, [{"index": 3, "name": "Ethernet", "mac": "02:00:00:00:00:03"},
                                         {"index": 9, "name": name, "mac": "02:00:00:00:00:09"}])
    assert dut.links[0].ifindex == 9


def test_an_adapter_that_is_not_there_names_the_ones_that_are(tmp_path):
    inventory, device = windows_inventory(tmp_path, device_if="Ethernet 5")
    with pytest.raises(DeviceError, match=r"'Ethernet 5' does not exist on the device \(it has: Ethernet, Wi-Fi\)"):
        opened_dut(inventory, device, [{"index": 3, "name": "Ethernet", "mac": "02:00:00:00:00:03"},
                                       {"index": 4, "name": "Wi-Fi", "mac": "02:00:00:00:00:04"}])


@pytest.mark.parametrize("families, seeded", [(None, {AF_INET, AF_INET6}), (["ipv4"], {AF_INET}),
                                              (["ipv6"], {AF_INET6}), ([], set())])
def test_seeds_only_for_the_families_the_interface_has(tmp_path, families, seeded):
    inventory, device = windows_inventory(tmp_path)
    iface = {"index": 5, "name": "Ethernet 2", "mac": "02:00:00:00:00:05"}
    if families is not None:
        iface["families"] = families
    dut = opened_dut(inventory, device, [iface])
    link = dut.links[0]
    assert {s.family for s in link.seeds} == seeded == link.families
    assert not link.unplanted  # a family the interface lacks is not expected there at all
    assert dut.link_families == {5: seeded}


def test_a_device_without_an_ipv6_stack_gets_no_ipv6_whatever_the_interface_says(tmp_path):
    inventory, device = windows_inventory(tmp_path)
    dut = opened_dut(inventory, device, [{"index": 5, "name": "Ethernet 2", "mac": "02:00:00:00:00:05",
                                          "families": ["ipv4", "ipv6"]}], stacks={"ipv4": True, "ipv6": False})
    assert dut.links[0].families == {AF_INET} and dut.link_families == {5: {AF_INET}}


# --- cleanup in a few calls ---------------------------------------------------------------------------
class DeleteAgent(Agent):
    """The Windows agent's `delete` as a test double: several addresses per call (unless
    `multi` is False: then it refuses more than one, as an agent without the extension)."""

    def __init__(self, device, dialect, *, multi=True, status=lambda address: 0, space="win32"):
        super().__init__(device, None, [r"C:\Users\admin\neighcheck\neighcheck_agent.exe"], dialect)
        self.multi, self.status, self.space, self.lines, self.deleted = multi, status, space, [], []

    def call(self, verb, *args, timeout=None):
        assert verb == "delete"
        line = self.command_line(verb, *args)
        self.lines.append(line)
        self.calls += 1
        self.mutations += 1
        addresses = [str(a) for a in args[2:]]
        if len(addresses) > 1 and not self.multi:
            return {"error": "bad-argument", "detail": "delete takes 3 argument(s)"}
        results = [{"address": a, "status": self.status(a)} for a in addresses]
        self.deleted += [a for a in addresses if self.status(a) == 0]
        first = next((r["status"] for r in results if r["status"] not in (0, 1168, 0xC0000225)), 0)
        reply = {"status": first if len(addresses) > 1 else results[0]["status"], "status_space": self.space}
        return {**reply, "results": results} if self.multi else reply


def cleanup_dut(tmp_path, **agent_kw):
    inventory, device = windows_inventory(tmp_path)
    dut = opened_dut(inventory, device, [{"index": 5, "name": "Ethernet 2", "mac": "02:00:00:00:00:05"},
                                         {"index": 6, "name": "Ethernet 3", "mac": "02:00:00:00:00:06"}])
    dut.dialect = CmdDialect()
    dut.agent = DeleteAgent(device, dut.dialect, **agent_kw)
    return dut


def planted_keys(per_family: int, ifindexes=(5, 6)) -> dict:
    keys = {}
    for ifx in ifindexes:
        for i in range(per_family):
            keys[(AF_INET, ifx, f"10.{ifx}.{i // 256}.{i % 256}")] = "02:5e"
            keys[(AF_INET6, ifx, f"2001:db8:{ifx}:0:5e00::{i + 1:x}")] = "02:5e"
    return keys


# 1024 per family: each IPv4 group's addresses make ~12 KB of command line (2 calls), each
# IPv6 group's ~24 KB (3 calls), against cmd.exe's 8 KB.
@pytest.mark.parametrize("per_family, calls", [(32, 4), (1024, 10)])
def test_cleanup_is_one_call_per_family_and_interface_split_to_fit_cmd_exe(tmp_path, per_family, calls):
    dut = cleanup_dut(tmp_path)
    keys = planted_keys(per_family)
    dut._leftovers.update(keys)
    dut.remove(keys)
    assert dut.agent.calls == calls == dut.cleanup_calls  # one per entry before: 128 and 4096
    assert max(len(line) for line in dut.agent.lines) <= CMD_LINE_BUDGET
    assert sorted(dut.agent.deleted) == sorted(k[2] for k in keys)
    assert not dut._leftovers


def test_cleanup_deletes_only_what_the_current_read_shows(tmp_path):
    dut = cleanup_dut(tmp_path)
    keys = planted_keys(4)
    still_there = sorted(keys)[:3]
    dut._last_table = tuple(Neighbor(a, f, i, "02:5e:00:00:00:01", "stale") for f, i, a in still_there)
    dut._last_table_at = dut.agent.mutations
    dut.remove(keys)
    assert sorted(dut.agent.deleted) == sorted(a for _, _, a in still_there)
    dut.agent.mutations += 1  # a call since: that read no longer tells what is there
    dut.remove(keys)
    assert len(dut.agent.deleted) == 3 + len(keys)


def test_cleanup_falls_back_to_one_call_per_entry_for_an_agent_without_the_extension(tmp_path):
    dut = cleanup_dut(tmp_path, multi=False)
    keys = planted_keys(3)
    dut.remove(keys)
    assert dut.agent.calls == 1 + len(keys)  # the refused multi-address call, then one each
    assert sorted(dut.agent.deleted) == sorted(k[2] for k in keys)
    assert "one agent call per entry" in dut.fingerprint["cleanup"]
    dut.agent.calls = 0
    dut.remove(keys)
    assert dut.agent.calls == len(keys)  # refused once: not asked again


@pytest.mark.parametrize("space, not_found", [("win32", 1168), ("ntstatus", 0xC0000225)])
def test_cleanup_not_found_is_success_and_anything_else_a_reported_failure(tmp_path, space, not_found):
    bad = "2001:db8:5:0:5e00::2"
    dut = cleanup_dut(tmp_path, space=space,
                      status=lambda a: 5 if a == bad else not_found if a.endswith("::1") else 0)
    keys = planted_keys(2)
    dut._leftovers.update(keys)
    with pytest.raises(DeviceError) as info:
        dut.remove(keys)
    message = str(info.value)
    assert f"cleanup failed for 1 planted entries, e.g. {bad} on Ethernet 2: 0x00000005 (5)" in message
    assert "ERROR_ACCESS_DENIED" in message if space == "win32" else "unknown code" in message
    assert list(dut._leftovers) == [(AF_INET6, 5, bad)]  # kept: close() tries it again


def test_cleanup_stops_once_the_agent_cannot_delete_at_all(tmp_path):
    dut = cleanup_dut(tmp_path)
    dut.agent.call = lambda verb, *args, **kw: (setattr(dut.agent, "calls", dut.agent.calls + 1) or
                                                {"status": None, "error": "not-exported", "detail": "Wine"})
    keys = planted_keys(8)
    dut._leftovers.update(keys)
    dut.remove(keys)
    dut.remove(keys)
    assert dut.agent.calls == 1 and not dut._leftovers
    assert dut.fingerprint["cleanup"] == "impossible: the agent cannot delete entries"


def test_delete_many_reads_the_per_address_results():
    device = SimpleNamespace(name="win-a")
    agent = Agent(device, None, ["agent"], CmdDialect())
    agent.call = lambda verb, *args, **kw: {"status": 5, "status_space": "win32", "results": [
        {"address": "2001:DB8::1", "status": 0}, {"address": "10.0.0.1", "status": 5}]}
    replies = agent.delete_many(AF_INET6, 5, ["2001:db8::1", "10.0.0.1"])
    assert replies == {"2001:db8::1": StatusReply(0, "win32"), "10.0.0.1": StatusReply(5, "win32")}
    agent.call = lambda verb, *args, **kw: {"status": 0, "status_space": "win32",
                                            "results": [{"address": "10.9.9.9", "status": 0}]}
    with pytest.raises(DeviceError, match="not asked to delete"):
        agent.delete_many(AF_INET, 5, ["10.0.0.1"])


# --- on the win-wine lab device: Wine's cmd.exe, for real -------------------------------------------
ARGV_ECHO_C = r"""
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
/* argv_echo EXIT WORD...: prints the words it got as a JSON array (UTF-8), exits EXIT. */
int wmain(int argc, wchar_t **argv) {
    char buf[4096];
    printf("[");
    for (int i = 2; i < argc; i++) {
        int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, buf, sizeof buf, NULL, NULL);
        printf("%s\"", i > 2 ? ", " : "");
        for (int j = 0; j < n - 1; j++) {
            unsigned char c = (unsigned char)buf[j];
            if (c == '"' || c == '\\') printf("\\%c", c);
            else if (c < 0x20) printf("\\u%04x", c);
            else putchar(c);
        }
        printf("\"");
    }
    printf("]\n");
    return argc > 1 ? _wtoi(argv[1]) : 0;
}
"""


@pytest.fixture(scope="module")
def wine_device(default_lab):
    """win-wine, a session to it, and an argv-echoing program in its upload directory."""
    device = default_lab.device("win-wine")
    exe = Path(upload_dir(device, default_lab)) / "nckW_argv_echo.exe"
    source = exe.with_suffix(".c")
    exe.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(ARGV_ECHO_C)
    subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-municode", "-o", str(exe), str(source)],
                   check=True, capture_output=True, timeout=120)
    with SshSession(device.name, device.ssh) as session:
        yield device, session, windows_path(str(exe), wine=True)


@needs_wine
@pytest.mark.lab
def test_hostile_words_and_exit_codes_survive_wines_cmd_exe(wine_device):
    device, session, echo = wine_device
    dialect = dialect_for(device, session)
    assert dialect.name.startswith("cmd.exe") and isinstance(dialect, LaunchedDialect)
    for code in (0, 3, 87):
        result = session.run(dialect.quote([echo, str(code), *HOSTILE]))
        assert result.exit_status == code, result
        assert json.loads(result.stdout) == HOSTILE
    assert session.run(dialect.liveness).exit_status == 0


@needs_wine
@pytest.mark.lab
def test_the_agent_is_uploaded_once_and_again_only_when_the_remote_copy_changed(default_lab):
    device = default_lab.device("win-wine")
    remote = upload_dir(device, default_lab) + "/" + REMOTE_NAME
    local = local_agent().read_bytes()
    remote_path = Path(remote)  # the Wine lab device shares this host's file system
    remote_path.unlink(missing_ok=True)
    with SshSession(device.name, device.ssh) as session:
        agent = make_agent(device, session, default_lab)
        assert hashlib.sha256(remote_path.read_bytes()).digest() == hashlib.sha256(local).digest()
        first = remote_path.stat().st_mtime_ns

        make_agent(device, session, default_lab)  # unchanged: nothing is uploaded
        assert remote_path.stat().st_mtime_ns == first

        remote_path.write_bytes(local[:-1] + bytes([local[-1] ^ 0xFF]))  # tampered after upload
        agent = make_agent(device, session, default_lab)
        assert remote_path.read_bytes() == local  # replaced, never run stale
        assert agent.info()["agent"].startswith("neighcheck-windows-agent/")
        # Built for cmd.exe, handed to Wine's cmd.exe by the launcher (one POSIX word).
        words = shlex.split(agent.command_line("flush", 2, 3))
        assert words[:2] == ["wine", "nck-sshexec"] and words[2].endswith(f"{REMOTE_NAME} flush 2 3")
        assert words[2].startswith("Z:\\")


@needs_wine
@pytest.mark.lab
def test_the_windows_lock_is_exclusive_names_its_holder_and_goes_with_the_channel(default_lab):
    """protocol13.md item 3 on win-wine, through Wine's cmd.exe: a second holder waits and
    then fails naming the first; a dropped channel releases the lock."""
    device = default_lab.device("win-wine")
    with SshSession(device.name, device.ssh) as one, SshSession(device.name, device.ssh) as two:
        first = device_lock(device, one, default_lab, "nckW first holder", 5)
        first.acquire()
        try:
            assert first.held
            second = device_lock(device, two, default_lab, "nckW second holder", 1)
            started = time.monotonic()
            with pytest.raises(DeviceError, match=r"in use by another run \(nckW first holder\)"):
                second.acquire()
            assert time.monotonic() - started >= 0.9  # it waited before giving up
        finally:
            one.close()  # the connection drops: the agent holding the lock sees EOF
        second = device_lock(device, two, default_lab, "nckW second holder", 10)
        second.acquire()
        assert second.held
        second.release()
