"""The on-device lock: its commands per dialect, and how DeviceLock reads their answers.

The POSIX lock runs for real in tests/test_faults.py; the Windows one (the agent's `lock`
verb through Wine's cmd.exe) in tests/test_windows_driver.py.
"""

from __future__ import annotations

import io
import json
import shlex
from types import SimpleNamespace

import pytest

from harness.device.dialect import CmdDialect, LaunchedDialect, PosixDialect, PowerShellDialect
from harness.device.lock import DeviceLock
from harness.errors import DeviceError

AGENT = [r"C:\Users\lab\neighcheck\neighcheck_agent.exe"]


class _Session:
    device_name = "dut"

    def __init__(self, channel=None):
        self.channel = channel

    def open_channel(self):
        return self.channel


class _Channel:
    """What DeviceLock needs of a paramiko channel: the lock command's output and exit."""

    def __init__(self, output: str, status: int = 0):
        self.output, self.status, self.closed, self.eof_received, self.command = output, status, False, False, None

    def settimeout(self, _):
        pass

    def exec_command(self, command):
        self.command = command

    def makefile(self, _mode):
        return io.BytesIO(self.output.encode())

    def recv_exit_status(self):
        return self.status

    @property
    def status_event(self):
        return SimpleNamespace(wait=lambda timeout: True)

    def close(self):
        self.closed = True

    def get_transport(self):
        return self

    def is_active(self):
        return not self.closed


def test_windows_lock_is_the_agents_lock_verb_with_a_safe_holder():
    lock = DeviceLock(_Session(), CmdDialect(), 'host1 pid 7 run it\'s-"mine" & del *', 12.5, agent_words=AGENT)
    assert lock.command() == (r"C:\Users\lab\neighcheck\neighcheck_agent.exe lock 13 "
                              '"host1 pid 7 run it_s-_mine_ _ del _"')


def test_powershell_lock_calls_the_agent_and_keeps_its_exit_code():
    lock = DeviceLock(_Session(), PowerShellDialect(), "host1 pid 7", 5,
                      agent_words=[r"C:\Program Files\nck\agent.exe"])
    assert lock.command() == r"& 'C:\Program Files\nck\agent.exe' 'lock' 5 'host1 pid 7'; exit $LASTEXITCODE"


def test_launched_lock_is_one_posix_word_for_the_launcher():
    lock = DeviceLock(_Session(), LaunchedDialect(CmdDialect(), ("wine", "nck-sshexec")), "h 1", 3,
                      agent_words=[r"Z:\lab\agent.exe"])
    assert shlex.split(lock.command()) == ["wine", "nck-sshexec", r'Z:\lab\agent.exe lock 3 "h 1"']


def test_windows_lock_needs_the_agent():
    with pytest.raises(DeviceError, match="lock"):
        DeviceLock(_Session(), CmdDialect(), "h", 5).command()


def test_posix_lock_quotes_the_holder_for_sh():
    lock = DeviceLock(_Session(), PosixDialect(), "h; rm -rf / #", 5)
    words = shlex.split(lock.command())
    assert words[:2] == ["sh", "-c"] and len(words) == 3
    inner = shlex.split(words[2].split("printf '%s\\n' ", 1)[1].split(" > ", 1)[0])
    assert inner == ["h; rm -rf / #"]
    assert "flock -w 5 9" in words[2]


@pytest.mark.parametrize("line", ["locked\n", '{"status": 0, "locked": true}\r\n',
                                  'Authorized use only.\r\n{"note": 1}\r\n{"status": 0, "locked": true}\r\n'])
def test_held_on_locked_or_the_agents_json(line):
    channel = _Channel(line)
    lock = DeviceLock(_Session(channel), CmdDialect(), "me", 1, agent_words=AGENT)
    lock.acquire()
    assert lock.held and not channel.closed
    lock.release()
    assert channel.closed and not lock.held


def test_busy_names_the_holder_from_the_agents_json():
    busy = json.dumps({"status": 32, "status_space": "win32", "locked": False,
                       "holder": "build7 pid 42 run 20260101T000000Z\r\n"})
    channel = _Channel("a login banner\n" + busy + "\n")
    with pytest.raises(DeviceError) as info:
        DeviceLock(_Session(channel), CmdDialect(), "me", 2, agent_words=AGENT).acquire()
    message = str(info.value)
    assert "in use by another run (build7 pid 42 run 20260101T000000Z)" in message
    assert r"%ProgramData%\neighcheck.lock" in message and "\n" not in message
    assert channel.closed


def test_busy_names_the_holder_from_flock():
    with pytest.raises(DeviceError, match=r"in use by another run \(other pid 1\); waited 2 s for /run/lock"):
        DeviceLock(_Session(_Channel("other pid 1\n", status=75)), PosixDialect(), "me", 2).acquire()


def test_an_agent_without_the_lock_verb_is_a_clear_error():
    reply = '{"error": "bad-argument", "detail": "unknown verb: lock"}\n'
    with pytest.raises(DeviceError, match=r"cannot take .*exit 2: .*unknown verb: lock.*the `lock` verb"):
        DeviceLock(_Session(_Channel(reply, status=2)), CmdDialect(), "me", 2, agent_words=AGENT).acquire()
