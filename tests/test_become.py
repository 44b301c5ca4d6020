"""Devices whose root may not log in (issue 14): `[device.ssh] become = "sudo"`.

What the harness sends such a device, and the one error a sudo that is not usable gives. Real
sudo on a lab device whose root cannot log in: tests/test_real_lab.py.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from harness.device import become
from harness.device.agent import make_agent
from harness.device.dialect import PosixDialect
from harness.device.lock import DeviceLock
from harness.errors import DeviceError, UsageError
from harness.inventory import load_inventory
from harness.ssh import CommandResult
from tests.support.inventories import GOOD, edit, lab_edit, write_fixture_files

SUDO_DUT = edit(GOOD, ('user = "root"', 'user = "ops"\nbecome = "sudo"'))


def load(tmp_path: Path, text: str):
    write_fixture_files(tmp_path)
    path = tmp_path / "devices.toml"
    path.write_text(text)
    return load_inventory(path)


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as info:
        load(tmp_path, text)
    return str(info.value)


class _Session:
    """Answers every command with one canned result and remembers what it was asked."""

    device_name = "dut-a"

    def __init__(self, user="ops", exit_status=0, stderr=b""):
        self.login = type("Login", (), {"user": user})()
        self.exit_status, self.stderr = exit_status, stderr
        self.commands: list[str] = []

    def run(self, command, timeout=None, stdin=None):
        self.commands.append(command)
        return CommandResult(self.exit_status, b'{"status": 0}', self.stderr, 0.01)


# --- the inventory -------------------------------------------------------------------------------
def test_become_sudo_loads(tmp_path):
    dut = load(tmp_path, SUDO_DUT).device("dut-a")
    assert (dut.ssh.login.user, dut.ssh.become) == ("ops", "sudo")
    assert load(tmp_path, GOOD).device("dut-a").ssh.become is None


@pytest.mark.parametrize("text, expect", [
    (edit(SUDO_DUT, ('become = "sudo"', 'become = "su"')), ("ssh.become: 'su' is not supported", 'become = "sudo"')),
    (edit(SUDO_DUT, ('become = "sudo"', "become = true")), ("ssh.become: must be a string",)),
    (edit(SUDO_DUT, ('os = "linux"', 'os = "windows"')), ("ssh.become: is for Linux devices, not windows",
                                                        "administrator account")),
    (lab_edit(('[device.lab]', '[device.lab]\nroot_login = false')),
     ("device 'lab-b': ssh.user: root may not log in on this lab device", 'user = "nckadmin"', 'become = "sudo"')),
    (lab_edit(('[device.lab]', '[device.lab]\nroot_login = "no"')), ("lab.root_login: must be true or false",)),
])
def test_bad_privilege_settings_are_one_message(tmp_path, text, expect):
    message = problem(tmp_path, text)
    assert "\n" not in message
    for fragment in expect:
        assert fragment in message, message


def test_a_lab_device_whose_root_may_not_log_in(tmp_path):
    text = lab_edit(('user = "root"', 'user = "nckadmin"\nbecome = "sudo"'),
                    ('[device.lab]', '[device.lab]\nroot_login = false'))
    lab = load(tmp_path, text).device("lab-b")
    assert lab.lab.root_login is False and lab.ssh.become == "sudo"
    assert load(tmp_path, GOOD).device("lab-b").lab.root_login is True


# --- what the device is sent ---------------------------------------------------------------------
def test_every_agent_call_goes_through_sudo_n(tmp_path):
    device = load(tmp_path, edit(SUDO_DUT, ('[device.agent]\ncommand = ["/opt/vendor/agent", "--json"]\n', ""))).device("dut-a")
    session = _Session()
    agent = make_agent(device, session, None)
    agent.flush(2, 0)
    words = shlex.split(session.commands[-1])
    assert words[:5] == ["sudo", "-n", "--", "sh", "-c"] and words[-3:] == ["flush", "2", "0"]


def test_a_vendor_agent_goes_through_sudo_too(tmp_path):
    session = _Session()
    make_agent(load(tmp_path, SUDO_DUT).device("dut-a"), session, None).call("stacks")
    assert session.commands == ["sudo -n -- /opt/vendor/agent --json stacks"]


def test_the_non_admin_account_never_uses_sudo(tmp_path):
    admin, user = _Session(), _Session(user="nckuser")
    agent = make_agent(load(tmp_path, SUDO_DUT).device("dut-a"), admin, None)
    agent.over(user).flush(0, 0)
    assert user.commands == ["/opt/vendor/agent --json flush 0 0"]


def test_without_become_nothing_is_prefixed(tmp_path):
    session = _Session(user="root")
    make_agent(load(tmp_path, GOOD).device("dut-a"), session, None).call("stacks")
    assert session.commands == ["/opt/vendor/agent --json stacks"]
    assert become.as_admin(load(tmp_path, GOOD).device("dut-a"), "ip -batch -") == "ip -batch -"


def test_the_lock_and_cleanup_go_through_sudo(tmp_path):
    device = load(tmp_path, SUDO_DUT).device("dut-a")
    lock = DeviceLock(_Session(), PosixDialect(), "h", 5, become.become_words(device))
    words = shlex.split(lock.command())
    assert words[:5] == ["sudo", "-n", "--", "sh", "-c"] and "flock -w 5 9" in words[5]
    assert become.as_admin(device, "ip -batch -") == "sudo -n -- ip -batch -"


# --- a sudo that is not usable: one error at open ------------------------------------------------
@pytest.mark.parametrize("exit_status, stderr, cause", [
    (1, b"sudo: a password is required\n", "cannot use sudo without a password ('sudo: a password is required')"),
    (127, b"sh: 1: sudo: not found\n", "cannot use sudo: sudo is not installed on the device"),
    (1, b"sudo: account validation failure, is your account locked?\n", "cannot use sudo ('sudo: account validation"),
])
def test_a_sudo_that_is_not_usable_is_one_error_naming_device_account_and_fix(tmp_path, exit_status, stderr, cause):
    session = _Session(exit_status=exit_status, stderr=stderr)
    with pytest.raises(DeviceError) as err:
        become.check(load(tmp_path, SUDO_DUT).device("dut-a"), session)
    message = str(err.value)
    assert session.commands == ["sudo -n -- true"]
    assert message.startswith("device 'dut-a': account 'ops' " + cause), message
    assert "ops ALL=(root) NOPASSWD: ALL" in message and 'user = "root"' in message and "\n" not in message


def test_check_asks_nothing_of_a_device_that_logs_in_as_root(tmp_path):
    session = _Session(user="root", exit_status=1)
    become.check(load(tmp_path, GOOD).device("dut-a"), session)
    assert session.commands == []
