"""Pointing neighcheck at a real lab (issue 14, part 1): the installed package, devices whose
root may not log in (sudo), devices that print a banner before the agent, a harness without root.

A private lab of this module's own (prefix nckI: namespaces nck-nckI-*, links nckI-*, subnets
198.18.170-173.0/24 and 2001:db8:e1::/64, 2001:db8:e3::/64; the bench's own lab has 221-239),
always taken down again:
- nckI-root: root logs in (the usual lab device); its login shell prints a banner on demand;
- nckI-sudo: `lab.root_login = false`: root may not log in; the lab's account nckadmin may use
  sudo without a password, and the inventory says `become = "sudo"`.
The harness is pointed at them as at a real lab: an inventory without [device.lab] tables.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.device.agent import Agent, make_agent
from harness.device.dialect import PosixDialect
from harness.device.dut import DeviceUnderTest
from harness.doctor import check_device
from harness.errors import AgentError, DeviceError
from harness.inventory import load_inventory
from harness.lab.netns import Lab
from harness.ssh import SshSession
from harness.traffic.seeding import Seeder

REPO = Path(__file__).resolve().parent.parent
NEIGHCHECK = Path(sys.executable).with_name("neighcheck")  # the checkout's (editable) install
TIMEOUT = 120

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("nckI-lab"),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, veth, sshd)")]

BANNER = "Welcome to nckI-root. Authorized use only.\n{ this line is not JSON"
NO_RAW = ["setpriv", "--inh-caps=-all", "--bounding-set=-net_raw"]  # root, less CAP_NET_RAW
ONLY_RAW = ["setpriv", "--inh-caps=-all", "--bounding-set=-all,+net_raw"]  # CAP_NET_RAW alone


@dataclass(frozen=True)
class LabDevice:
    name: str
    tag: str  # in link names: nckI-<tag>-m, nckI-<tag>-t1
    net: int  # management 198.18.<net>.0/24; test link 198.18.<net+1>.0/24, 2001:db8:e<net-169>::/64
    user: str = "root"
    become: bool = False

    @property
    def host(self) -> str:
        return f"198.18.{self.net}.2"


DEVICES = (LabDevice("nckI-root", "r", 170), LabDevice("nckI-sudo", "s", 172, user="nckadmin", become=True))
HARNESS_IFS = ("nckI-r-t1", "nckI-s-t1")


def inventory_text(state: Path, *, lab: bool, change: dict[str, dict] | None = None) -> str:
    """Both devices; lab=False describes them as a real lab (nothing built or removed).
    change: per device name, values that replace user/become (None drops the key)."""
    lines = ["[lab]", f'state_dir = "{state}"']
    for d in DEVICES:
        ssh = {"user": d.user, "become": "sudo" if d.become else None, **(change or {}).get(d.name, {})}
        lines += ["", "[[device]]", f'name = "{d.name}"', 'os = "linux"', "[device.ssh]",
                  f'host = "{d.host}"', f'key_file = "{state}/id_ed25519"',
                  f'known_hosts = "{state}/known_hosts"', "connect_timeout = 3", "command_timeout = 10"]
        lines += [f'{k} = "{v}"' for k, v in ssh.items() if v is not None]
        if ssh["user"] != "nckuser":  # the non-admin account, unless it is the one logging in
            lines += ["[device.unprivileged]", 'user = "nckuser"', f'key_file = "{state}/id_ed25519"']
        if lab:
            lines += ["[device.lab]", f'mgmt_harness_if = "nckI-{d.tag}-m"',
                      f'mgmt_harness_addr = "198.18.{d.net}.1/24"']
            if d.become:
                lines += ["root_login = false"]
        v6 = f"2001:db8:e{d.net - 169:x}::"
        lines += ["[[device.link]]", 'device_if = "eth1"', f'harness_if = "nckI-{d.tag}-t1"',
                  f'device_v4 = "198.18.{d.net + 1}.2/24"', f'harness_v4 = "198.18.{d.net + 1}.1/24"',
                  f'device_v6 = "{v6}2/64"', f'harness_v6 = "{v6}1/64"']
    return "\n".join(lines) + "\n"


class PrivateLab:
    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        self.lab_inventory = self.write("lab.toml", inventory_text(self.state, lab=True))
        self.real = self.write("devices.toml", inventory_text(self.state, lab=False))
        self.lab = Lab(load_inventory(self.lab_inventory))
        self._runs = 0

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def inventory(self, name: str = "devices.toml", **kwargs):
        return load_inventory(self.root / name) if not kwargs else \
            load_inventory(self.write(name, inventory_text(self.state, lab=False, **kwargs)))

    def device_file(self, device: str, name: str) -> Path:
        """A file the lab made for the device, bind-mounted into its mount namespace."""
        return self.state / device / name

    def run(self, argv: list[str], *, cwd: Path | None = None, prefix: list[str] | None = None,
            env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*(prefix or []), *map(str, argv)], cwd=cwd or self.root, capture_output=True,
                              text=True, timeout=TIMEOUT, env=env)

    def out_dir(self) -> Path:
        self._runs += 1
        return self.root / f"reports-{self._runs}"


def results_of(out: Path) -> dict:
    runs = [p for p in out.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(runs) == 1, runs
    return json.loads((runs[0] / "results.json").read_text())


def verdicts(results: dict, device: str | None = None) -> dict[str, str]:
    return {c["name"]: c["verdict"] for c in results["cases"] if device in (None, c["device"])}


def assert_clean_pass(results: dict, devices: tuple[str, ...]) -> None:
    seen = verdicts(results)
    assert {c["device"] for c in results["cases"]} == set(devices)
    bad = {name: v for name, v in seen.items() if v not in ("pass", "observed", "not-applicable")}
    assert not bad, bad
    assert sum(v == "pass" for v in seen.values()) >= 15 * len(devices)


@pytest.fixture(scope="module")
def lab():
    root = Path(tempfile.mkdtemp(prefix="nckI-"))
    private = PrivateLab(root)
    try:
        private.lab.up()
        yield private
    finally:
        try:
            private.lab.down()
        finally:
            shutil.rmtree(root, ignore_errors=True)
            private.lab.lock_file.unlink(missing_ok=True)  # named after this run's state dir


# --- 1. the installed package -------------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel, built from a copy of this tree (nothing written into the checkout) without
    network (--no-build-isolation), installed into a fresh venv outside the checkout. Its
    dependencies come from the project's venv through a .pth line: offline, and fast."""
    root = tmp_path_factory.mktemp("nckI-wheel")
    source = root / "src"
    everywhere = shutil.ignore_patterns("__pycache__", "*.egg-info")

    def ignore(directory, names):
        top = {".git", ".venv", ".lab", "reports", "build", "tests"} if Path(directory) == REPO else set()
        return everywhere(directory, names) | (top & set(names))

    shutil.copytree(REPO, source, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", source],
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("neighcheck-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=TIMEOUT)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "nckI_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    return wheel, venv


def test_the_wheel_carries_the_suite_the_agents_and_the_dependencies(installed):
    wheel, _ = installed
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert {"conformance/__init__.py", "conformance/conftest.py", "conformance/test_flush.py",
            "conformance/steps.py", "harness/device/agents/linux_shim.sh",
            "harness/device/agents/windows/neighcheck_agent.c", "harness/reports/report.css"} <= names
    assert not any(n.startswith("tests/") for n in names)
    for dependency in ("pytest", "pytest-xdist", "scapy", "paramiko"):
        assert f"Requires-Dist: {dependency}" in metadata


def test_the_installed_package_runs_the_suite_from_another_directory(lab, installed):
    """`neighcheck run`, `doctor` and `report verify` of the installed copy, from a directory
    that is not the checkout, against both devices (nckI-sudo through sudo)."""
    _, venv = installed
    elsewhere = lab.root / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = lab.run([venv / "bin" / "python", "-c", "import harness, conformance, paramiko; "
                     "print(harness.__file__); print(conformance.__file__)"], cwd=elsewhere, env=env)
    assert all(line.startswith(str(venv)) for line in where.stdout.split()), where.stdout + where.stderr

    neighcheck = venv / "bin" / "neighcheck"
    doctor = lab.run([neighcheck, "doctor", "--devices", lab.real], cwd=elsewhere, env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "become      sudo (passwordless for nckadmin)" in doctor.stdout

    out = lab.out_dir()
    run = lab.run([neighcheck, "run", "--devices", lab.real, "--out", out], cwd=elsewhere, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "Traceback" not in run.stdout + run.stderr and "warning" not in run.stdout, run.stdout[-3000:]
    results = results_of(out)
    assert_clean_pass(results, ("nckI-root", "nckI-sudo"))
    assert all(c["id"].startswith("conformance/test_flush.py::") for c in results["cases"])
    assert results["git_commit"] is None  # an installed copy is no checkout
    # The non-admin account never uses sudo: it is refused, as RET-ACCESS wants.
    assert verdicts(results, "nckI-sudo")["test_access_denied[nckI-sudo]"] == "pass"
    run_dir = next(p for p in out.iterdir() if not p.is_symlink())
    verify = lab.run([neighcheck, "report", "verify", run_dir], cwd=elsewhere, env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- 2. a device whose root cannot log in: sudo -------------------------------------------------
def test_root_may_not_log_in_on_the_sudo_device(lab):
    device = lab.inventory().device("nckI-sudo")
    login = type(device.ssh.login)("root", device.ssh.login.key_file)
    with pytest.raises(DeviceError, match="authentication failed"):
        SshSession(device.name, device.ssh, login).connect()


def test_the_agent_the_lock_and_cleanup_run_through_sudo(lab):
    inventory = lab.inventory()
    device = inventory.device("nckI-sudo")
    seeder = Seeder(inventory.test_interfaces)
    dut = DeviceUnderTest(device, inventory, entries=4, seeder=seeder, holder="nckI test", lock_wait=5)
    try:
        dut.open()
        assert dut.fingerprint["admin"] is True
        planted = dut.seed()  # seeds by traffic, static entries by the agent's `add`
        keys = {**planted.entries, **planted.static}
        assert planted.static and keys.keys() <= {e.key for e in dut.table()}
        dut.remove(keys)  # `ip -batch` through sudo (as nckadmin it is refused)
        assert not keys.keys() & {e.key for e in dut.table()}
        with SshSession(device.name, device.ssh) as probe:
            owner = probe.run("stat -c %U /run/lock/neighcheck.lock.holder").stdout.decode().strip()
        assert owner == "root"  # the lock command ran as root
    finally:
        dut.close()
        seeder.close()
    # Without become, the same account is not admin: sudo was what made it one.
    plain = lab.inventory("plain.toml", change={"nckI-sudo": {"become": None}})
    check = check_device(plain.device("nckI-sudo"), plain)
    assert "nckadmin is not root/admin on the device (flush needs it)" in check.problems


@pytest.fixture
def sudo_wants_a_password(lab):
    """nckuser may use sudo on nckI-sudo, with its password (which it has none of)."""
    sudoers = lab.device_file("nckI-sudo", "sudoers")
    original = sudoers.read_text()
    with sudoers.open("w") as fh:  # in place: the device sees this inode through a bind mount
        fh.write(original + "nckuser ALL=(ALL:ALL) ALL\n")
    try:
        yield
    finally:
        with sudoers.open("w") as fh:
            fh.write(original)


@pytest.mark.parametrize("case", ["password-wanted", "no-sudo-rights"])
def test_a_sudo_that_wants_a_password_is_one_clear_error(lab, request, case):
    if case == "password-wanted":
        request.getfixturevalue("sudo_wants_a_password")
    inventory = lab.inventory(f"{case}.toml", change={"nckI-sudo": {"user": "nckuser"}})
    device = inventory.device("nckI-sudo")
    check = check_device(device, inventory)
    assert len(check.problems) == 1, check.problems
    assert check.problems[0].startswith("device 'nckI-sudo': account 'nckuser' cannot use sudo without a "
                                        "password ('sudo: a password is required')"), check.problems
    assert "nckuser ALL=(root) NOPASSWD: ALL" in check.problems[0] and 'user = "root"' in check.problems[0]
    if case == "password-wanted":  # what a run shows: every case of the device is that error
        out = lab.out_dir()
        run = lab.run([NEIGHCHECK, "run", "--devices", inventory.path, "--device", "nckI-sudo", "--out", out])
        assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
        reasons = {c["reason"] for c in results_of(out)["cases"]}
        assert reasons == {check.problems[0]}, reasons


# --- 3. a device that talks before the agent ----------------------------------------------------
@pytest.fixture
def banner(lab):
    """nckI-root's login shell prints BANNER on every SSH command (bash reads ~/.bashrc and
    /etc/bash.bashrc for each one; in the device the lab bind-mounts this file over them)."""
    rc = lab.device_file("nckI-root", "empty_rc")
    rc.write_text("".join(f"echo {json.dumps(line)}\n" for line in BANNER.splitlines()))
    try:
        yield
    finally:
        rc.write_text("")


@pytest.mark.parametrize("mode", ["per-call", "serve"])
def test_a_banner_before_every_reply_is_skipped_and_kept_in_the_evidence(lab, banner, mode):
    """Per call the banner comes before every reply; in serve mode (issue 15) once, before the
    resident agent process's first reply."""
    with SshSession("nckI-root", lab.inventory().device("nckI-root").ssh) as session:
        assert session.run("true").stdout.decode().startswith(BANNER)  # the device does talk
    if mode == "per-call":
        doctor = lab.run([NEIGHCHECK, "doctor", "--devices", lab.real, "--device", "nckI-root"])
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        assert "banner" in doctor.stdout and "Welcome to nckI-root" in doctor.stdout
    out = lab.out_dir()
    run = lab.run([NEIGHCHECK, "run", "--devices", lab.real, "--device", "nckI-root", "--out", out,
                   "--agent-mode", mode])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert_clean_pass(results_of(out), ("nckI-root",))
    # (resolved: `latest` links to the run's directory)
    evidence = [json.loads(p.read_text()) for p in {p.resolve() for p in out.glob("*/evidence/nckI-root/*.json")}]
    called = [e for e in evidence if "before" in e]  # the cases that read the table
    kept = [item for e in evidence for item in e.get("device_output_before_replies", [])]
    assert kept and all(BANNER in item["text"] and item["calls"] for item in kept)
    if mode == "per-call":
        assert len(called) > 10 and all("device_output_before_replies" in e for e in called)
    else:
        # Before the serve process's first reply, once; per call still for the `info` that
        # learns serve, and for the non-admin account's calls (RET-ACCESS: two calls per call).
        calls = [call for item in kept for call in item["calls"]]
        assert calls.count("serve") == 1, calls
        assert len(called) > 10 and len([e for e in called if "device_output_before_replies" in e]) <= 2, calls


def test_garbage_after_a_banner_is_still_an_agent_error(lab, banner):
    device = lab.inventory().device("nckI-root")
    with SshSession(device.name, device.ssh) as session:
        assert make_agent(device, session, None).stacks() == {"ipv4": True, "ipv6": True}
        garbage = Agent(device, session, ["sh", "-c", "echo '{oops'; echo done", "x"], PosixDialect())
        with pytest.raises(AgentError, match=r"agent `stacks` printed no JSON object at the end of its "
                                             r"output: .*done'$"):
            garbage.stacks()


# --- 4. a harness without root ------------------------------------------------------------------
def test_doctor_says_for_each_harness_interface_that_raw_sockets_are_refused(lab):
    doctor = lab.run([NEIGHCHECK, "doctor", "--devices", lab.real], prefix=NO_RAW)
    assert doctor.returncode == 1 and doctor.stderr == "", doctor.stdout + doctor.stderr
    for ifname in HARNESS_IFS:
        line = next(l for l in doctor.stdout.splitlines() if f"harness interface {ifname!r}" in l)
        assert "no CAP_NET_RAW" in line and "run as root" in line and "setcap cap_net_raw+ep" in line
    allowed = lab.run([NEIGHCHECK, "doctor", "--devices", lab.real])  # the control: root
    assert allowed.returncode == 0 and "raw-socket  ok on nckI-r-t1" in allowed.stdout, allowed.stdout


def test_a_run_without_cap_net_raw_stops_at_once_with_the_fix(lab):
    out = lab.out_dir()
    t0 = time.monotonic()
    run = lab.run([NEIGHCHECK, "run", "--devices", lab.real, "--out", out], prefix=NO_RAW)
    assert time.monotonic() - t0 < 30
    assert run.returncode == 2 and run.stdout == "", run.stdout + run.stderr
    assert run.stderr.splitlines() == [run.stderr.strip()]  # one line
    assert run.stderr.startswith("neighcheck: cannot send test traffic on the harness interfaces "
                                 "(nckI-r-t1 nckI-s-t1): no CAP_NET_RAW"), run.stderr
    assert "setcap cap_net_raw+ep " + os.path.realpath(sys.executable) in run.stderr
    assert not out.exists()  # nothing started


def test_cap_net_raw_is_the_only_privilege_a_run_needs(lab):
    """Root's other capabilities gone (no CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_DAC_OVERRIDE...)."""
    out = lab.out_dir()
    run = lab.run([NEIGHCHECK, "run", "--devices", lab.real, "--device", "nckI-sudo", "--out", out],
                  prefix=ONLY_RAW)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert_clean_pass(results_of(out), ("nckI-sudo",))
