"""Security under real runs (issue 8): host-key trust, secrets kept out of every artifact, and
test traffic contained to the inventory's test links.

On a private one-device lab (prefix nckF: namespace nck-F-sec, links nckF-s-*), built with
tests/support/runlab.py like the fault tests' lab. tests/test_ssh_lab.py covers host keys at the session level; here
a whole `neighcheck run` meets a wrong, unknown or first-seen host key.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest

from harness.errors import LinkNotAllowed
from harness.lab.private import LabDevice, LabLink
from harness.traffic.responder import Responder
from harness.traffic.seeding import LinkTarget, SeedEntry, Seeder
from tests.support import NEIGHCHECK, needs_root
from tests.support.runlab import LOGGING_AGENT, RunLab, calls, run_lab
from tests.support.waits import wait_for

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("nckF-sec-lab"), needs_root]

DEVICE = "F-sec"
MGMT_IF, TEST_IF = "nckF-s-m", "nckF-s-t1"
SEC_DEVICES = (LabDevice(DEVICE, MGMT_IF, 245, (LabLink("eth1", TEST_IF, 246, "2001:db8:f6::"),)),)
ONE_CASE = ("--", "-k", "test_flush_scope and AF_INET-all")
ETH_P_ALL = 0x0003


@pytest.fixture(scope="module")
def slab():
    with run_lab(SEC_DEVICES) as lab:
        yield lab


class SeedFrames:
    """Counts frames on an interface, either way, whose Ethernet source is a seed MAC
    (02:5e:...): only the harness's seeder and responder send those."""

    def __init__(self, ifname: str):
        self.count = 0
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((ifname, ETH_P_ALL))
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nckF-sniff-{ifname}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._sock.recv(64)
            except (TimeoutError, socket.timeout):
                continue
            if frame[6:8] == b"\x02\x5e":
                self.count += 1

    def __enter__(self) -> "SeedFrames":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


def host_key_line(slab: RunLab) -> str:
    kind, b64 = (slab.state / DEVICE / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    return f"198.18.245.2 {kind} {b64}\n"


def other_key_line(tmp_path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")],
                   check=True, timeout=30)
    kind, b64 = (tmp_path / "other.pub").read_text().split()[:2]
    return f"198.18.245.2 {kind} {b64}\n"


# --- 5. host keys -------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["strict", "trust-on-first-use"])
def test_a_changed_host_key_fails_the_run_before_anything_reaches_the_device(slab, tmp_path, policy):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(other_key_line(tmp_path))
    recorded = known_hosts.read_text()
    log = tmp_path / "calls.log"
    agent = slab.agent_script("logging_agent.sh", LOGGING_AGENT)
    inventory = slab.inventory(f"changed-{policy}.toml", lab=False,
                               ssh={DEVICE: {"known_hosts": str(known_hosts), "host_key_policy": policy}},
                               agent={DEVICE: ["sh", str(agent), str(log), "run"]})

    with SeedFrames(TEST_IF) as test_link:
        result = slab.run(inventory, timeout=90)

    assert result.exit == 1
    cases = result.cases()
    assert len(cases) >= 20
    for case in cases:
        assert case["verdict"] == "error", case
        assert "HOST KEY CHANGED" in case["reason"] and str(known_hosts) in case["reason"], case["reason"]
    assert calls(log) == [], "a command ran on a device whose host key did not match"
    assert test_link.count == 0, "test traffic was sent to a device whose host key did not match"
    assert known_hosts.read_text() == recorded  # never overwritten, not even under TOFU


def test_an_unknown_host_key_is_refused_by_default_and_nothing_is_recorded(slab, tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    inventory = slab.inventory("unknown.toml", lab=False, ssh={DEVICE: {"known_hosts": str(known_hosts)}})

    with SeedFrames(TEST_IF) as test_link:
        result = slab.run(inventory, *ONE_CASE, timeout=60)

    assert result.exit == 1
    [case] = result.cases()
    assert case["verdict"] == "error" and "unknown host key ssh-ed25519 SHA256:" in case["reason"], case
    assert "trust-on-first-use" in case["reason"]  # the message says what to do
    assert test_link.count == 0
    assert known_hosts.read_text() == ""


def test_trust_on_first_use_records_the_real_key_once_and_then_enforces_it(slab, tmp_path):
    known_hosts = tmp_path / "known_hosts"  # does not exist yet
    tofu = slab.inventory("tofu.toml", lab=False, ssh={DEVICE: {"known_hosts": str(known_hosts),
                                                                "host_key_policy": "trust-on-first-use"}})
    first = slab.run(tofu, *ONE_CASE, timeout=60)
    assert first.exit == 0, first.output[-3000:]
    assert known_hosts.read_text() == host_key_line(slab)  # the device's own key, one line

    strict = slab.inventory("strict.toml", lab=False, ssh={DEVICE: {"known_hosts": str(known_hosts)}})
    second = slab.run(strict, *ONE_CASE, timeout=60)
    assert second.exit == 0, second.output[-3000:]
    assert known_hosts.read_text() == host_key_line(slab)  # recorded once, not again


# --- 6. secrets --------------------------------------------------------------------------------
PASSWORD = "nckF-pw-7Qx!9 s3cr3t"
PASSPHRASE = "nckF-pp-Zt4#w2 h1dden"
WRONG_PASSPHRASE = "nckF-pp-wr0ng-9f3K"


def artifacts_containing(run_dir: Path, output: str, secrets: list[str]) -> list[str]:
    """Every place (file of the run, or its console output) where a secret shows."""
    found = [f"console: {s!r}" for s in secrets if s in output]
    for path in run_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(run_dir)}: {s!r}" for s in secrets if s.encode() in data]
    return found


@pytest.fixture
def encrypted_key(slab, tmp_path) -> Path:
    """A copy of the lab's client key, encrypted with PASSPHRASE."""
    key = tmp_path / "id_ed25519_encrypted"
    key.write_bytes((slab.state / "id_ed25519").read_bytes())
    key.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", PASSPHRASE, "-f", str(key)],
                   check=True, capture_output=True, timeout=30)
    unlocked = subprocess.run(["ssh-keygen", "-y", "-P", "", "-f", str(key)], capture_output=True, timeout=30)
    assert unlocked.returncode != 0, "the copy must need its passphrase"
    return key


def test_a_password_and_a_key_passphrase_from_the_environment_never_reach_an_artifact(slab, encrypted_key):
    # The admin login needs the passphrase (the key is encrypted); the non-admin account tries a
    # password, which the lab's sshd refuses: the secret is used, and ends in an error message.
    inventory = slab.inventory(
        "secrets.toml", lab=False,
        ssh={DEVICE: {"key_file": str(encrypted_key), "passphrase_env": "NCKF_PASSPHRASE"}},
        unprivileged={DEVICE: {"user": "nckuser", "password_env": "NCKF_PASSWORD"}})
    env = {"NCKF_PASSWORD": PASSWORD, "NCKF_PASSPHRASE": PASSPHRASE}

    result = slab.run(inventory, "--", "-k", "access_denied or AF_INET-all", env=env, timeout=60)

    verdicts = result.verdicts()
    assert verdicts[f"test_flush_scope[{DEVICE}-AF_INET-all]"] == "pass", result.output[-3000:]
    [denied] = [c for c in result.cases() if c["test"] == "test_access_denied"]
    assert denied["verdict"] == "error" and "password from $NCKF_PASSWORD" in denied["reason"], denied
    assert {p.name for p in result.run_dir.iterdir()} >= {"results.json", "results.jsonl", "junit.xml",
                                                         "report.html", "manifest.json", "evidence"}
    assert artifacts_containing(result.run_dir, result.output, [PASSWORD, PASSPHRASE]) == []


@pytest.mark.parametrize("given", [WRONG_PASSPHRASE, None], ids=["wrong", "unset"])
def test_a_wrong_or_missing_passphrase_errors_without_showing_it(slab, encrypted_key, given, monkeypatch):
    inventory = slab.inventory(
        "wrong-passphrase.toml", lab=False,
        ssh={DEVICE: {"key_file": str(encrypted_key), "passphrase_env": "NCKF_PASSPHRASE"}})
    env = {"NCKF_PASSPHRASE": given} if given else {}
    monkeypatch.delenv("NCKF_PASSPHRASE", raising=False)

    result = slab.run(inventory, *ONE_CASE, env=env, timeout=60)

    assert result.exit == 1
    [case] = result.cases()
    assert case["verdict"] == "error", case
    if given:
        assert f"cannot load key {encrypted_key}" in case["reason"], case["reason"]
    else:
        assert "NCKF_PASSPHRASE (passphrase_env) is not set" in case["reason"], case["reason"]
    assert artifacts_containing(result.run_dir, result.output, [WRONG_PASSPHRASE, PASSPHRASE]) == []


def test_an_inline_secret_in_the_inventory_is_refused_without_echoing_it(slab, tmp_path):
    inventory = tmp_path / "inline.toml"
    text = slab.inventory("inline-base.toml", lab=False).read_text()
    inventory.write_text(text.replace('user = "root"', f'user = "root"\npassword = "{PASSWORD}"', 1))
    proc = subprocess.run([str(NEIGHCHECK), "run", "--devices", str(inventory), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "inline passwords are not allowed" in proc.stderr and "password_env" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("*.json"))


# --- 7. traffic containment ----------------------------------------------------------------------
def test_the_seeder_and_responder_refuse_the_management_link_even_though_the_inventory_names_it(slab):
    inventory = slab.lab.inventory
    device = inventory.device(DEVICE)
    assert device.lab.mgmt_harness_if == MGMT_IF  # named in the inventory, as the management link
    assert MGMT_IF not in inventory.test_interfaces
    target = LinkTarget(harness_if=MGMT_IF, device_mac="02:00:00:00:00:01", device_v4="198.18.245.2",
                        device_v6=None, v6_network=None)
    entry = [SeedEntry(2, "198.19.0.1", "02:5e:00:00:00:01")]
    with SeedFrames(MGMT_IF) as mgmt:
        with Seeder(inventory.test_interfaces) as seeder:
            for name in (MGMT_IF, "lo", "eth0"):
                with pytest.raises(LinkNotAllowed, match="not a test link of the inventory"):
                    seeder.send(LinkTarget(name, target.device_mac, target.device_v4, None, None), entry)
        responder = Responder(inventory.test_interfaces)
        try:
            with pytest.raises(LinkNotAllowed):
                responder.serve(target, entry)
        finally:
            responder.stop()
    assert mgmt.count == 0

    # The same call on the declared test link does send (so the refusal is the allowlist's).
    test_target = LinkTarget(TEST_IF, target.device_mac, "198.18.246.2", None, None)
    with SeedFrames(TEST_IF) as test_link, Seeder(inventory.test_interfaces) as seeder:
        seeder.send(test_target, entry)
        wait_for(lambda: test_link.count, 2, "the frame on the test link", step=0.02)
    assert test_link.count == 1


def test_a_whole_run_sends_test_traffic_only_on_its_test_links(slab):
    with SeedFrames(MGMT_IF) as mgmt, SeedFrames(TEST_IF) as test_link:
        result = slab.run(slab.path, timeout=90)
    assert result.exit == 0, result.output[-3000:]
    assert test_link.count > 1000  # positive control: seeding and answers were seen
    assert mgmt.count == 0, f"{mgmt.count} test frames on the management link"
    assert slab.planted_left(DEVICE) == []
