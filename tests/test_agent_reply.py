"""Devices that talk before the agent (issue 14): a login shell's banner or motd on the exec
channel is skipped and kept; garbage is still an AgentError. Real devices that print a banner:
tests/test_real_lab.py. Here, replies as a device would send them, through a stand-in session."""

from __future__ import annotations

import io
import socket
import time

import pytest

from harness.device.agent import Agent
from harness.device.dialect import PosixDialect
from harness.device.lock import MAX_BANNER_LINES, DeviceLock
from harness.contract.protocol import split_reply
from harness.errors import AgentError
from harness.ssh import CommandResult

LATER = time.monotonic() + 3600  # a lock deadline that does not matter here
BANNER = "Welcome to edge-01. Authorized use only.\nLast login: {yesterday}\n"


class _Device:
    name = "dut"


class _Session:
    """Answers every command with one canned stdout."""

    device_name = "dut"

    def __init__(self, stdout: str, exit_status: int = 0):
        self.stdout, self.exit_status = stdout.encode(), exit_status

    def run(self, command, timeout=None, stdin=None):
        return CommandResult(self.exit_status, self.stdout, b"", 0.01)


def agent_replying(stdout: str, exit_status: int = 0) -> Agent:
    return Agent(_Device(), _Session(stdout, exit_status), ["agent"], PosixDialect())


@pytest.mark.parametrize("stdout, before, reply", [
    ('{"status": 0}\n', "", {"status": 0}),
    (BANNER + '{"status": 0}\n', BANNER.strip(), {"status": 0}),
    # JSON-looking banner lines: the reply is the value that ends the output
    ('{"motd": 1}\n{"status": 0}', '{"motd": 1}', {"status": 0}),
    ("motd {\n" + '{\n "status": 0,\n "entries": [\n{"a": 1}\n]\n}\n', "motd {", {"status": 0, "entries": [{"a": 1}]}),
])
def test_the_reply_is_the_json_that_ends_the_output(stdout, before, reply):
    assert split_reply(stdout) == (before, reply)


@pytest.mark.parametrize("stdout", ["", "Welcome\n", '{"status": 0}\nlogout\n', '{"status": 0}{"status": 1}',
                                    'Welcome\n{"status": 0', "not json at all {"])
def test_output_that_does_not_end_in_one_json_value_has_no_reply(stdout):
    assert split_reply(stdout) is None


def test_agent_skips_a_banner_and_keeps_it_for_the_evidence():
    agent = agent_replying(BANNER + '{"ipv4": true, "ipv6": false}\n')
    assert agent.stacks() == {"ipv4": True, "ipv6": False}
    assert agent.stacks() == {"ipv4": True, "ipv6": False}
    assert agent.output_before_replies == [("stacks", BANNER.strip())] * 2


def test_the_non_admin_accounts_agent_records_into_the_same_list():
    agent = agent_replying('{"status": 0}')
    other = agent.over(_Session(BANNER + '{"status": 0}'))
    other.call("flush", 0, 0)
    assert agent.output_before_replies == [("flush 0 0", BANNER.strip())]


@pytest.mark.parametrize("stdout, message", [
    ("Welcome\nSegmentation fault\n", "printed no JSON object at the end of its output: 'Welcome\\nSegmentation fault'"),
    (BANNER + "garbage {", "printed no JSON object at the end of its output"),
    (BANNER + "[1, 2]", "printed JSON that is not an object"),
    ("", "printed nothing"),
])
def test_garbage_is_still_an_agent_error(stdout, message):
    agent = agent_replying(stdout)
    with pytest.raises(AgentError, match="agent `table 0`") as err:
        agent.call("table", 0)
    assert message in str(err.value)
    assert agent.output_before_replies == []


def test_a_failing_agent_after_a_banner_is_an_agent_error_naming_its_exit():
    with pytest.raises(AgentError, match="exited 2"):
        agent_replying(BANNER + '{"error": "bad-argument"}', exit_status=2).call("flush", 99, 0)


def test_the_lock_skips_banner_lines_before_locked():
    assert DeviceLock._until_locked(io.BytesIO((BANNER + "locked\n").encode()), LATER) == "locked"


def test_the_lock_reports_the_holder_when_busy_after_a_banner():
    stream = io.BytesIO((BANNER + "harness-2 pid 7 run r1\n").encode())
    assert DeviceLock._until_locked(stream, LATER) == "harness-2 pid 7 run r1"


def test_a_device_that_never_prints_locked_cannot_keep_the_lock_reading():
    endless = io.BytesIO(b"spam\n" * (MAX_BANNER_LINES * 3))
    assert DeviceLock._until_locked(endless, LATER) == "spam"
    assert endless.tell() == MAX_BANNER_LINES * 5  # it stopped reading at the bound


def test_a_device_that_trickles_banner_lines_cannot_keep_the_lock_reading_past_its_deadline():
    with pytest.raises(socket.timeout):
        DeviceLock._until_locked(io.BytesIO(b"spam\n" * 10), time.monotonic() - 1)


def test_a_verb_without_arguments_is_named_exactly():
    with pytest.raises(AgentError, match=r"^device 'dut': agent `stacks` printed no JSON object"):
        agent_replying(BANNER + "oops").stacks()
