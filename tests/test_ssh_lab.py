"""SSH sessions against real lab devices: reuse, timeouts, host-key trust, reconnects."""

from __future__ import annotations

import dataclasses
import time

import paramiko
import pytest

from harness.errors import DeviceError
from harness.ssh import SshSession

pytestmark = pytest.mark.lab


def session_for(inventory, name="linux-a", **ssh_changes):
    device = inventory.device(name)
    config = dataclasses.replace(device.ssh, **ssh_changes) if ssh_changes else device.ssh
    return SshSession(device.name, config)


def test_one_connection_is_reused_for_every_command(default_lab):
    with session_for(default_lab) as s:
        peers = {s.run("echo $SSH_CONNECTION").stdout for _ in range(20)}
        assert s.connects == 1
        assert len(peers) == 1  # same client port every time: one TCP connection


def test_exit_status_stdout_and_stderr_are_separate(default_lab):
    with session_for(default_lab) as s:
        r = s.run("echo out; echo err >&2; exit 3")
    assert (r.exit_status, r.stdout, r.stderr) == (3, b"out\n", b"err\n")


def test_stdin_reaches_the_command(default_lab):
    with session_for(default_lab) as s:
        assert s.run("cat", stdin=b"x" * 100000).stdout == b"x" * 100000


def test_a_hanging_command_hits_its_timeout_and_the_session_survives(default_lab):
    with session_for(default_lab) as s:
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match="timed out after 0.5 s"):
            s.run("sleep 30", timeout=0.5)
        assert time.monotonic() - t0 < 3
        assert s.run("echo alive").stdout == b"alive\n"


def test_unknown_host_key_is_refused(default_lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    s = session_for(default_lab, known_hosts=empty)
    with pytest.raises(DeviceError, match="unknown host key") as err:
        s.connect()
    assert "ssh-keyscan" in str(err.value) and "trust-on-first-use" in str(err.value)
    assert empty.read_text() == ""  # nothing recorded under the strict policy


def test_trust_on_first_use_records_the_key_and_then_checks_it(default_lab, tmp_path):
    kh = tmp_path / "known_hosts"
    with session_for(default_lab, known_hosts=kh, host_key_policy="trust-on-first-use") as s:
        s.run("true")
    recorded = kh.read_text()
    assert recorded.startswith("198.18.200.2 ssh-ed25519 ")
    # The recorded key is now enforced even under the strict policy.
    with session_for(default_lab, known_hosts=kh) as s:
        assert s.run("echo ok").stdout == b"ok\n"


def test_changed_host_key_is_refused(default_lab, tmp_path):
    other = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    if other is None:
        import subprocess
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
        kind, b64 = (tmp_path / "k.pub").read_text().split()[:2]
    else:
        kind, b64 = other.get_name(), other.get_base64()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"198.18.200.2 {kind} {b64}\n")
    for policy in ("strict", "trust-on-first-use"):  # TOFU never overrides a recorded key
        with pytest.raises(DeviceError, match="HOST KEY CHANGED"):
            session_for(default_lab, known_hosts=kh, host_key_policy=policy).connect()
    assert kh.read_text() == f"198.18.200.2 {kind} {b64}\n"


def test_wrong_key_fails_authentication(default_lab, tmp_path):
    import subprocess
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    device = default_lab.device("linux-a")
    login = dataclasses.replace(device.ssh.login, key_file=tmp_path / "k")
    with pytest.raises(DeviceError, match="authentication failed"):
        SshSession(device.name, device.ssh, login).connect()


def test_unreachable_device_fails_within_the_connect_timeout(default_lab):
    s = session_for(default_lab, host="198.18.200.99", connect_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="unreachable"):
        s.connect()
    assert time.monotonic() - t0 < 5


def test_reconnects_once_after_sshd_restarts(default_lab):
    from harness.lab.netns import Lab
    lab = Lab(default_lab)
    device = default_lab.device("linux-a")
    with session_for(default_lab) as s:
        before = s.run("echo $SSH_CONNECTION").stdout
        lab.restart_sshd(device)  # kills the listener and every session, starts a new sshd
        after = s.run("echo $SSH_CONNECTION").stdout
        assert s.connects == 2
        assert before != after


def test_a_command_that_never_stops_printing_still_times_out(default_lab):
    with session_for(default_lab) as s:
        t0 = time.monotonic()
        with pytest.raises(DeviceError, match="timed out after 1 s|printed more than"):
            s.run("yes neighcheck", timeout=1)
        assert time.monotonic() - t0 < 5
        assert s.run("echo alive").stdout == b"alive\n"
