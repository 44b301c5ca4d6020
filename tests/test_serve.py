"""Serve mode (issue 15): one resident agent process per device session, over real SSH.

A private lab of one device (prefix nckS: namespace nck-S-serve, links nckS-*, 198.18.180.0/24
and 198.18.181.0/24, its own sshd and state directory, a host lock of its own) runs the
built-in shim, a vendor agent without serve (the shim run as a file), and scripted agents that
claim serve and then misbehave: hang, die, answer out of step. Every fault must end in a
bounded, named error for the call in flight and a working agent for the next call.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from harness.contract.status import Outcome
from harness.device.agent import make_agent
from harness.errors import AgentError, DeviceError
from harness.inventory import AgentConfig, load_inventory
from harness.lab.private import LabDevice, LabLink, PrivateLab
from harness.ssh import SshSession
from harness.waits import poll_until
from tests.support import REPO, SHIM, needs_root
from tests.support.netns import netns_pids
DEVICE = "S-serve"
NETNS = f"nck-{DEVICE}"

pytestmark = [pytest.mark.lab, pytest.mark.xdist_group("nckS-lab"), needs_root]

SERVE_DEVICE = LabDevice(DEVICE, "nckS-m", 180, (LabLink("eth1", "nckS-t1", 181, "2001:db8:181::"),))

# An agent that claims serve, answers `ping` and `stacks`, and misbehaves as MODE says when
# asked the verb the mode names. The lab device shares the host's filesystem.
FAKE_AGENT = r"""
mode=$1 state=$2
shift 2
reply() { printf '{"id": "%s"%s}\n' "$id" "$1"; }
case $1 in
    info) echo '{"agent": "fake", "serve": true}'; exit 0 ;;
    serve) [ "$mode" != banner ] || printf 'Welcome to %s\n{"id": "not a reply"}\n' "$state" ;;
    *) echo '{"error": "bad-argument"}'; exit 2 ;;
esac
while IFS= read -r line; do
    id=${line%% *} verb=${line#* }
    id=${id#@} verb=${verb%% *}
    case $mode:$verb in
        *:ping) reply ', "pong": true' ;;
        hang:flush) sleep 20 ;;
        die:flush) echo "boom: the fake agent died" >&2; exit 3 ;;
        die-once:table)
            if [ ! -e "$state" ]; then : > "$state"; echo "first table dies" >&2; exit 4; fi
            reply ', "status": 0, "entries": []' ;;
        wrong-id:stacks) id=x$id; reply ', "ipv4": true, "ipv6": false' ;;
        no-id:stacks) echo '{"ipv4": true, "ipv6": false}' ;;
        garbage:stacks) echo 'oops, not json' ;;
        exit2:stacks) reply ', "exit": 2, "error": "bad-argument", "detail": "scripted"' ;;
        *:stacks) reply ', "ipv4": true, "ipv6": false' ;;
        *:flush) reply ', "status": 0, "status_space": "ntstatus", "elapsed_us": 1234' ;;
        *) reply ', "exit": 2, "error": "bad-argument"' ;;
    esac
done
"""


@pytest.fixture(scope="module")
def lab():
    # Not under pytest's tmp_path: sshd in the namespace reads the keys under it.
    with PrivateLab.held(Path(tempfile.mkdtemp(prefix="nckS-")), (SERVE_DEVICE,),
                         lock=Path("/run/lock/nckS-serve-lab.lock"), wait=600,
                         busy="another test session kept the nckS serve lab for 600 s",
                         ssh_defaults={"command_timeout": 10}) as private:
        (private.root / "fake_agent.sh").write_text(FAKE_AGENT)
        yield load_inventory(private.path), private.root


@pytest.fixture
def session(lab):
    inventory, _ = lab
    device = inventory.device(DEVICE)
    with SshSession(device.name, device.ssh) as s:
        yield s


def agent_for(lab, session, command: tuple[str, ...] = (), serve: bool = True):
    inventory, _ = lab
    device = inventory.device(DEVICE)
    if command:
        device = dataclasses.replace(device, agent=AgentConfig(command=command))
    agent = make_agent(device, session, inventory, serve=serve)
    agent.info()
    return agent


def fake(lab, session, mode: str):
    _, root = lab
    state = root / f"state-{mode}-{time.monotonic_ns()}"
    return agent_for(lab, session, ("sh", str(root / "fake_agent.sh"), mode, str(state)))


class ExecCounter:
    """Counts the commands the session runs per call (an exec channel each)."""

    def __init__(self, session: SshSession):
        self.count, self._run = 0, session.run
        session.run = self._counted

    def _counted(self, *args, **kwargs):
        self.count += 1
        return self._run(*args, **kwargs)


def agent_processes() -> int:
    """Processes in the device's namespace other than its sshd listener."""
    names = []
    for pid in netns_pids(NETNS):
        try:
            names.append(Path(f"/proc/{pid}/comm").read_text().strip())
        except OSError:
            pass  # gone meanwhile
    return sum(1 for n in names if n in ("sh", "dash", "sleep"))


# --- the built-in shim -----------------------------------------------------------------------

def test_the_shim_serves_every_verb_from_one_process_after_info(lab, session):
    agent = agent_for(lab, session)
    assert agent.mode == "serve"
    execs = ExecCounter(session)
    stacks, interfaces, table = agent.stacks(), agent.interfaces(), agent.table(0)
    eth1 = next(i["index"] for i in interfaces if i["name"] == "eth1")
    assert agent.add(2, eth1, "198.51.100.77", "02:00:5e:00:51:77").outcome is Outcome.SUCCESS
    assert any(e.address == "198.51.100.77" for e in agent.table(2).entries)
    flush = agent.flush(2, eth1)
    assert flush.outcome is Outcome.SUCCESS and flush.elapsed_us is not None
    deleted = agent.delete(2, eth1, "198.51.100.77")
    assert deleted.outcome is Outcome.SUCCESS
    for _ in range(20):
        agent.ping()
    assert execs.count == 0, "no verb may start a command of its own in serve mode"
    assert agent._serve.starts == 1 and agent._serve.requests == 27
    # The same answers as per call.
    per_call = agent_for(lab, session, serve=False)
    assert per_call.mode == "per-call"
    assert (per_call.stacks(), per_call.interfaces()) == (stacks, interfaces)
    assert {e.key for e in per_call.table(0).entries} >= {e.key for e in table.entries if e.state == "permanent"}
    assert execs.count == 4  # info, stacks, interfaces, table
    agent.close()
    assert poll_until(lambda: agent_processes() == 0, timeout=5), "EOF must end the serve process"


def test_the_shims_serve_loop_answers_each_line_with_its_id(lab):
    """The shim's own serve loop, in the device's namespace: one line per request, ids kept,
    a bad argument answered with its exit and the loop going on, for a table (its reply is
    written as it is made) as for the other verbs; blank lines and EOF end nothing early."""
    requests = ["@1 ping", "", "@2 table 2", "@3 table 99", "@4 table", "@5 flush x 0", "table 23",
                "@6 bogus", "@7 serve", "@a/b ping", "@8 stacks"]
    proc = subprocess.run(["ip", "netns", "exec", NETNS, "sh", "-c", SHIM.read_text(), "neighcheck-agent",
                           "serve"], input="\n".join(requests) + "\n", capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("id") for r in replies] == ["1", "2", "3", "4", "5", None, "6", "7", None, "8"]
    assert [r.get("exit") for r in replies] == [None, None, None, 2, 2, None, 2, 2, 2, None]
    assert replies[1]["status"] == 0 and isinstance(replies[1]["entries"], list)
    assert replies[2] == {"id": "3", "status": 0xC000000D, "status_space": "ntstatus", "entries": []}
    assert replies[6]["error"] == "bad-argument" and "unknown verb" in replies[6]["detail"]
    assert replies[9] == {"id": "8", "ipv4": True, "ipv6": True}


def test_a_vendor_agent_without_serve_is_called_per_call(lab, session):
    """The shim run as a file is a vendor agent here: its info offers no serve (only the text
    the harness runs as its built-in agent does), so every verb is a command of its own."""
    agent = agent_for(lab, session, ("sh", str(SHIM)))
    assert agent.mode == "per-call" and "serve" not in agent.call("info")
    execs = ExecCounter(session)
    assert agent.stacks() == {"ipv4": True, "ipv6": True}
    flush = agent.flush(2, 0)
    assert flush.outcome is Outcome.SUCCESS and flush.elapsed_us is not None  # per call too
    with pytest.raises(AgentError, match="exited 2"):
        agent.call("flush", "x", "0")
    assert execs.count == 3


def test_a_bad_argument_in_serve_mode_is_an_agent_error_like_exit_2(lab, session):
    agent = agent_for(lab, session)
    with pytest.raises(AgentError, match=r"\(serve mode\) exited 2: .*FAMILY must be"):
        agent.call("flush", "x", "0")
    agent.ping()  # the same process goes on
    assert agent._serve.starts == 1


def test_calls_sent_together_cost_one_round_trip_and_stay_in_step(lab, session):
    """Batching (call_many): in serve mode the requests go out at once and the replies are
    matched by id; an agent error among them is raised only after every reply was read."""
    agent = agent_for(lab, session)
    sent = []
    channel = agent._serve
    real = channel.pipeline
    channel.pipeline = lambda requests, *a, **k: sent.append(len(requests)) or real(requests, *a, **k)
    stacks, ping, table = agent.call_many([("stacks",), ("ping",), ("table", 2)])
    assert (stacks, ping, table["status"]) == ({"ipv4": True, "ipv6": True}, {"pong": True}, 0)
    [v4, v6] = agent.tables((2, 23))
    assert {e.family for e in v4.entries} <= {2} and {e.family for e in v6.entries} <= {23}
    with pytest.raises(AgentError, match=r"`flush x 0` \(serve mode\) exited 2"):
        agent.call_many([("ping",), ("flush", "x", "0"), ("ping",)])
    assert agent.call_many([("ping",), ("ping",)]) == [{"pong": True}] * 2  # still in step
    assert sent == [3, 2, 3, 2] and agent.serve_starts == 1


# --- faults ----------------------------------------------------------------------------------

def test_a_call_interrupted_before_its_reply_leaves_the_next_call_in_step(lab, session):
    """Ctrl-C while a reply is outstanding: the next call (the cleanup) must not read the
    abandoned request's late reply as its own; a new process answers it."""
    agent = agent_for(lab, session)
    agent.ping()
    channel = agent._serve
    real = channel._read_line

    def interrupted(*args, **kwargs):
        channel._read_line = real
        raise KeyboardInterrupt

    channel._read_line = interrupted
    with pytest.raises(KeyboardInterrupt):
        agent.stacks()
    agent.ping()  # the stacks reply, had it been read here, would not carry this ping's id
    assert agent.serve_starts == 2


def test_a_hung_agent_costs_one_timeout_and_the_next_call_gets_a_new_process(lab, session):
    agent = fake(lab, session, "hang")
    agent.ping()
    started = time.monotonic()
    with pytest.raises(DeviceError, match=r"agent `flush 2 0` gave no reply within 1 s \(serve mode\)"):
        agent.call("flush", 2, 0, timeout=1)
    assert time.monotonic() - started < 3
    assert session.timed_out, "the device under test must check the device still answers"
    agent.ping()
    assert agent._serve.starts == 2


def test_an_agent_that_dies_mid_call_is_an_error_that_says_why(lab, session):
    agent = fake(lab, session, "die")
    agent.ping()
    with pytest.raises(AgentError, match=r"ended before it answered \(exit 3; stderr: boom: the "
                                         r"fake agent died\); whether it ran is unknown"):
        agent.flush(2, 0)
    agent.ping()
    assert agent._serve.starts == 2


def test_a_read_that_dies_once_is_asked_again_on_a_new_process(lab, session):
    agent = fake(lab, session, "die-once")
    assert agent.table(2).entries == ()
    assert agent._serve.starts == 2


def test_a_batch_that_dies_is_sent_again_only_when_it_only_reads(lab, session):
    reads = fake(lab, session, "die-once")
    assert [t.entries for t in reads.tables((2, 2))] == [(), ()]
    assert reads.serve_starts == 2
    writes = fake(lab, session, "die")
    with pytest.raises(AgentError, match=r"agent `flush 23 0` \(serve mode\): the agent process ended "
                                         r"before it answered .*whether it ran is unknown"):
        writes.statuses([("flush", 23, 0), ("flush", 2, 0)])


@pytest.mark.parametrize("mode, message", [
    ("wrong-id", r"does not belong to the request \(it carries id 'x\d+', the request was @\d+\)"),
    ("no-id", r"does not belong to the request \(it carries no id"),
    ("garbage", r"printed a line that is not one JSON object: 'oops, not json'"),
])
def test_a_reply_out_of_step_is_an_agent_error_and_the_process_is_replaced(lab, session, mode, message):
    agent = fake(lab, session, mode)
    agent.ping()
    with pytest.raises(AgentError, match=message):
        agent.stacks()
    agent.ping()
    assert agent._serve.starts == 2


def test_what_a_new_process_prints_before_its_first_reply_is_kept_apart(lab, session):
    """A login shell's banner (some devices print one on every SSH command) comes before a new
    serve process's first reply: it is no reply (even a JSON-looking line), it is kept for
    the evidence, once per process."""
    agent = fake(lab, session, "banner")
    agent.ping()
    assert agent.stacks() == {"ipv4": True, "ipv6": False}
    [(what, text)] = agent.output_before_replies
    assert what == "serve" and text.startswith("Welcome to ") and '{"id": "not a reply"}' in text
    agent.close()
    agent.ping()  # a new process: its banner again
    assert len(agent.output_before_replies) == 2 and agent.serve_starts == 2


def test_a_serve_reply_with_an_exit_is_an_agent_error(lab, session):
    agent = fake(lab, session, "exit2")
    with pytest.raises(AgentError, match=r"exited 2: .*scripted"):
        agent.stacks()
    assert agent.flush(2, 0).elapsed_us == 1234
    assert agent._serve.starts == 1


# --- a run -----------------------------------------------------------------------------------

def run_one_case(lab, tmp_path: Path, *args: str) -> dict:
    inventory, _ = lab
    out = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--devices", str(inventory.path),
                           "--out", str(out), *args, "--", "-k", "test_flush_scope and AF_INET-all"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    [results] = [p for p in out.glob("*/results.json") if not p.parent.is_symlink()]
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(results.read_text())


@pytest.mark.parametrize("mode", ["serve", "per-call"])
def test_a_run_records_the_agent_mode_and_the_flush_calls_own_time(lab, tmp_path, mode):
    results = run_one_case(lab, tmp_path, "--agent-mode", mode)
    [device] = results["devices"]
    assert device["fingerprint"]["agent_mode"] == mode
    [case] = results["cases"]
    assert case["verdict"] == "pass"
    assert isinstance(case["flush_elapsed_us"], int) and case["flush_elapsed_us"] > 0
    assert case["flush_elapsed_us"] / 1e6 < case["timings"]["flush"], \
        "the call's own time is inside its round trip"
    evidence = json.loads((tmp_path / "reports" / results["run_id"] / case["evidence"]).read_text())
    assert evidence["call"]["elapsed_us"] == case["flush_elapsed_us"]
