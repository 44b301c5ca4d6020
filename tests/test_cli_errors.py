"""The `neighcheck` command against bad inventories and bad arguments.

Two routes:
- the installed console script in a subprocess, for representative cases: the exit code is 2,
  stderr is one line naming what to fix, there is no traceback, and nothing reaches the device
  (its ssh.host is a local listening socket that must see no connection; a control case shows
  that a good inventory does reach it);
- `harness.cli.main([...])` in-process for the rest, with everything that could reach a device
  or the lab replaced by a tripwire.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main

NEIGHCHECK = Path(sys.executable).with_name("neighcheck")
SUBPROCESS_TIMEOUT = 30.0

# A device whose "sshd" is a listening socket of the test (never accepted: a connection shows
# as a pending one). No lab device: a run that got through would never build a lab.
GOOD = '''
[lab]
state_dir = "labstate"

[[device]]
name = "dut-a"
os = "linux"
[device.ssh]
host = "127.0.0.1"
port = {port}
user = "root"
key_file = "id_test"
known_hosts = "known_hosts"
connect_timeout = 0.5
command_timeout = 2
[[device.link]]
device_if = "eth1"
harness_if = "nckI-t1"
device_v4 = "198.51.100.2/24"
'''


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test bug: {old!r} is not in the inventory"
    return text.replace(old, new, 1)


def make_inventory(directory: Path, port: int, text: str | bytes | None = None, name: str = "devices.toml") -> Path:
    (directory / "id_test").write_text("not a real key: only its existence is checked\n")
    (directory / "known_hosts").write_text("")
    path = directory / name
    body = text if text is not None else GOOD
    path.write_bytes(body if isinstance(body, bytes) else body.replace("{port}", str(port)).encode())
    return path


class Listener:
    """A stand-in sshd that records whether anyone connected."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


# --- the subprocess route ------------------------------------------------------------------------
@dataclass
class CliCase:
    id: str
    argv: list[str]  # {inv} is the inventory path, {dir} the working directory
    inventory: str | bytes | None  # None: the good inventory; text with {port}; bytes as is
    expect: tuple[str, ...]
    secret: str | None = None


CLI_CASES = [
    CliCase("toml-syntax", ["doctor", "--devices", "{inv}"], "[[device]]\nname = \n",
            ("devices.toml: not valid TOML", "line 2")),
    CliCase("not-utf8", ["run", "--devices", "{inv}"], b"name = \"\xff\"\n", ("not UTF-8 text", "byte 0xff")),
    CliCase("port-as-string", ["run", "--devices", "{inv}"], edit(GOOD, "port = {port}", 'port = "{port}"'),
            ("device 'dut-a': ssh.port: must be an integer", "without quotes")),
    CliCase("ifname-injection", ["doctor", "--devices", "{inv}"], edit(GOOD, '"eth1"', '"eth1;reboot"'),
            ("device 'dut-a': link[0].device_if: 'eth1;reboot' is not allowed",)),
    CliCase("inline-password", ["doctor", "--devices", "{inv}"],
            edit(GOOD, 'user = "root"', 'user = "root"\npassword = "hunter2"'),
            ("device 'dut-a': ssh.password: inline passwords are not allowed", "password_env"), secret="hunter2"),
    CliCase("v6-in-device-v4", ["run", "--devices", "{inv}"], edit(GOOD, '"198.51.100.2/24"', '"2001:db8::2/64"'),
            ("link[0].device_v4", "expected IPv4", "put it in device_v6")),
    CliCase("missing-file", ["doctor", "--devices", "{dir}/absent.toml"], None,
            ("absent.toml: inventory file not found", "--devices FILE")),
    CliCase("directory", ["run", "--devices", "{dir}"], None, ("is a directory, not an inventory file",)),
    CliCase("unknown-device", ["doctor", "--devices", "{inv}", "--device", "nosuch"], None,
            ("no device named 'nosuch'", "devices: dut-a")),
    CliCase("out-traversal", ["run", "--devices", "{inv}", "--out", "../x"], None, ("--out '../x'", "'..' is not allowed")),
    CliCase("entries-zero", ["run", "--devices", "{inv}", "--entries", "0"], None, ("--entries 0: use 1..16384",)),
    CliCase("workers-word", ["run", "--devices", "{inv}", "-n", "x"], None, ("-n 'x'", "a number of workers or 'auto'")),
    CliCase("unknown-subcommand", ["frob"], None, ("invalid choice: 'frob'", "see neighcheck --help")),
    CliCase("unknown-option", ["doctor", "--devices", "{inv}", "--frob"], None,
            ("unrecognized arguments: --frob", "see neighcheck doctor --help")),
]


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """Every subprocess case at once (they are independent), then the listener's verdict."""
    listener = Listener()
    procs = {}
    try:
        for case in CLI_CASES:
            workdir = tmp_path_factory.mktemp(f"nckI-{case.id}")
            inv = make_inventory(workdir, listener.port, case.inventory)
            argv = [a.format(inv=inv, dir=workdir) for a in case.argv]
            procs[case.id] = (workdir, subprocess.Popen(
                [str(NEIGHCHECK), *argv], cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}))
        results = {}
        for case_id, (workdir, proc) in procs.items():
            try:
                out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
                err += "\n(timed out)"
            results[case_id] = (workdir, proc.returncode, out, err)
        yield results, listener.connections()
    finally:
        for _, proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.close()


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_cli_rejects_with_one_line_and_exit_2(cli_runs, case):
    results, _ = cli_runs
    workdir, code, out, err = results[case.id]
    assert "Traceback" not in err and "Traceback" not in out
    assert code == 2, f"exit {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("neighcheck: ")
    for fragment in case.expect:
        assert fragment in lines[0], f"{fragment!r} missing from: {lines[0]}"
    if case.secret:
        assert case.secret not in err + out
    assert out == ""
    assert not (workdir / "reports").exists(), "a rejected run must not create its report directory"


def test_no_rejected_command_contacted_the_device(cli_runs):
    _, connections = cli_runs
    assert connections == 0


def test_control_a_good_inventory_does_reach_the_device(tmp_path):
    """The listener is a real tripwire: doctor with the good inventory connects to it."""
    listener = Listener()
    try:
        inv = make_inventory(tmp_path, listener.port)
        proc = subprocess.run([str(NEIGHCHECK), "doctor", "--devices", str(inv)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
        assert proc.returncode == 1 and "dut-a: UNUSABLE" in proc.stdout, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        assert listener.connections() == 1
    finally:
        listener.close()


# --- never a traceback, also on a busy host ----------------------------------------------------------
# A port that accepts TCP but never sends an SSH banner: paramiko's transport thread logs the
# failed handshake with a traceback, and with no handler on its logger Python printed that to
# stderr, racing two equal timers (the thread's banner timeout, start_client's wait) and the
# process's exit: 5 of 10 doctor runs here one by one, 12 of 20 four at a time with two CPU hogs
# (7 of 10 in the issue). harness/ssh.py gives paramiko's logger a handler (nothing reaches
# stderr whoever wins), and names the problem itself whichever timer fires first.
HOG = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass"
HOG_SECONDS = 60  # a bound even if the test dies; killed by pid as soon as it is done
UNDER_LOAD_RUNS = 8  # the old code stays silent in all 8 with p = 0.4**8 (0.07%)
WITHOUT_HANDLER = ("import logging, sys, harness.ssh\n"
                   "logging.getLogger('paramiko').handlers.clear()  # the code before the fix\n"
                   "from harness.cli import main\nsys.exit(main(sys.argv[1:]))")


@contextmanager
def two_cpu_hogs():
    hogs = [subprocess.Popen([sys.executable, "-c", HOG, str(HOG_SECONDS)]) for _ in range(2)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()


def doctors_against_a_silent_port(workdir: Path, listener: Listener, via: list[str],
                                  count: int) -> list[tuple[int, str, str]]:
    """`count` doctor runs at once (more load, and quicker than one by one on 2 cores)."""
    inv = make_inventory(workdir, listener.port)
    procs = [subprocess.Popen([*via, "doctor", "--devices", str(inv)], cwd=workdir, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(count)]
    try:
        outputs = [proc.communicate(timeout=SUBPROCESS_TIMEOUT) for proc in procs]
        return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs)]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        listener.connections()  # accept and close: the backlog never fills


def test_a_port_without_ssh_banner_is_one_line_never_a_traceback_under_load(tmp_path):
    listener = Listener()
    expected = (f"  problem     device 'dut-a' (root@127.0.0.1:{listener.port}): no SSH banner within 0.5 s: "
                f"port {listener.port} accepts connections but does not speak SSH")
    try:
        with two_cpu_hogs():
            runs = [run for _ in range(UNDER_LOAD_RUNS // 4)
                    for run in doctors_against_a_silent_port(tmp_path, listener, [str(NEIGHCHECK)], 4)]
        for code, out, err in runs:
            assert code == 1 and err == "", err
            problems = [line for line in out.splitlines() if line.startswith("  problem")]
            assert len(problems) == 1 and problems[0].startswith(expected), out
    finally:
        listener.close()


def test_control_without_the_handler_paramikos_traceback_does_reach_stderr(tmp_path):
    """The check above can fail: the same runs with paramiko's logger as it was print its log
    (and often its traceback) to stderr: 12 of 20 runs here. Stops at the first round of 4
    that does; 20 silent runs in a row would be p = 1e-8."""
    listener = Listener()
    try:
        with two_cpu_hogs():
            for _ in range(5):
                errs = [err for _, _, err in doctors_against_a_silent_port(
                    tmp_path, listener, [sys.executable, "-c", WITHOUT_HANDLER], 4)]
                if any(errs):
                    break
        assert any("Error reading SSH protocol banner" in err for err in errs), errs
    finally:
        listener.close()


# --- the in-process route ------------------------------------------------------------------------
@pytest.fixture
def tripwires(monkeypatch):
    """Anything that would reach a device, the lab or the suite fails the test loudly."""
    import pytest as pytest_module
    from harness import ssh
    from harness.lab import netns as lab

    def tripped(*_args, **_kwargs):
        raise AssertionError("a rejected command went on to contact a device or start the suite")

    monkeypatch.setattr(ssh.SshSession, "connect", tripped)
    monkeypatch.setattr(lab.Lab, "up", tripped)
    monkeypatch.setattr(lab.Lab, "down", tripped)
    monkeypatch.setattr(pytest_module, "main", tripped)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --devices and --out are relative to it
    make_inventory(tmp_path, 9)  # port 9 (discard): never used, the tripwires fire first
    return tmp_path


ARG_CASES = [
    ("entries-zero", ["run", "--entries", "0"], "--entries 0: use 1..16384"),
    ("entries-huge", ["run", "--entries", "99999"], "--entries 99999: use 1..16384"),
    ("entries-word", ["run", "--entries", "x"], "argument --entries: invalid int value: 'x' (see neighcheck run --help)"),
    ("entries-no-value", ["run", "--entries"], "argument --entries: expected one argument"),
    ("workers-negative", ["run", "-n", "-1"], "-n -1: use 0..64 workers"),
    ("workers-word", ["run", "-n", "x"], "-n 'x': give a number of workers or 'auto'"),
    ("workers-huge", ["run", "-n", "1000"], "-n 1000: use 0..64 workers"),
    ("out-traversal", ["run", "--out", "../x"], "--out '../x': '..' is not allowed"),
    ("out-nested-traversal", ["run", "--out", "reports/../../x"], "'..' is not allowed"),
    ("out-is-a-file", ["run", "--out", "devices.toml"], "--out 'devices.toml' exists and is not a directory"),
    ("errata-missing", ["run", "--errata", "nope.toml"], "--errata nope.toml: file not found"),
    ("stray-word", ["run", "conformance/test_flush.py"], "unexpected argument 'conformance/test_flush.py'; pytest options go after --"),
    ("run-unknown-device", ["run", "--device", "nosuch"], "no device named 'nosuch' (devices: dut-a)"),
    ("doctor-unknown-device", ["doctor", "--device", "dut-a", "--device", "$(id)"], "no device named '$(id)'"),
    ("lab-unknown-action", ["lab", "frob"], "argument action: invalid choice: 'frob' (choose from 'up', 'down', 'status')"),
    ("no-subcommand", [], "the following arguments are required: command (see neighcheck --help)"),
    ("unknown-subcommand", ["frob"], "invalid choice: 'frob'"),
    ("unknown-option-run", ["run", "--frob"], "unrecognized arguments: --frob (see neighcheck run --help)"),
    ("unknown-top-option", ["--frob", "doctor"], "unrecognized arguments: --frob (see neighcheck doctor --help)"),
    ("devices-empty-string", ["doctor", "--devices", ""], ".: is a directory, not an inventory file"),
    ("devices-device-node", ["doctor", "--devices", "/dev/zero"], "/dev/zero: is not a regular file"),
]


@pytest.mark.parametrize("argv, expected", [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_bad_arguments(workdir, tripwires, capsys, argv, expected):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("neighcheck: "), err
    assert expected in err, err
    assert out == ""
    assert not (workdir / "reports").exists()


INVENTORY_CASES = [
    ("lab-up-bad-state-dir", ["lab", "up"], ('state_dir = "labstate"', 'state_dir = "/etc"'),
     "lab.state_dir: /etc already holds files that are not the lab's"),
    ("lab-down-home-state-dir", ["lab", "down"], ('state_dir = "labstate"', 'state_dir = "~"'),
     "lab.state_dir:"),
    ("doctor-port-0", ["doctor"], ("port = {port}", "port = 0"), "device 'dut-a': ssh.port: 0 is out of range"),
    ("doctor-port-70000", ["doctor"], ("port = {port}", "port = 70000"), "ssh.port: 70000 is out of range"),
    ("run-timeout-zero", ["run"], ("connect_timeout = 0.5", "connect_timeout = 0"), "ssh.connect_timeout: 0 is out of range"),
    ("run-policy-unknown", ["run"], ("port = {port}", 'port = {port}\nhost_key_policy = "yes"'),
     "ssh.host_key_policy: 'yes' is not a policy"),
    ("doctor-known-hosts-missing", ["doctor"], ('known_hosts = "known_hosts"', 'known_hosts = "gone"'),
     "ssh.known_hosts:"),
    ("doctor-key-missing", ["doctor"], ('key_file = "id_test"', 'key_file = "gone"'), "ssh.key_file:"),
    ("doctor-agent-command-empty", ["doctor"], ("[[device.link]]", "[device.agent]\ncommand = []\n[[device.link]]"),
     "agent.command: is empty"),
    ("run-password-env-invalid", ["run"], ('user = "root"', 'user = "root"\npassword_env = "MY-PASS"'),
     "ssh.password_env: this value is not allowed"),
    ("run-typo-key", ["run"], ('user = "root"', 'usr = "root"'), "ssh.usr: unknown key. did you mean 'user'?"),
]


@pytest.mark.parametrize("argv, change, expected", [c[1:] for c in INVENTORY_CASES], ids=[c[0] for c in INVENTORY_CASES])
def test_bad_inventory_through_each_command(workdir, tripwires, capsys, argv, change, expected):
    make_inventory(workdir, 9, edit(GOOD, *change))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"neighcheck: {workdir.resolve() / 'devices.toml'}: "), err
    assert expected in err, err


def test_help_and_version_return_instead_of_exiting(capsys):
    assert main(["--version"]) == 0
    assert main(["run", "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "neighcheck" in out and "--entries" in out

