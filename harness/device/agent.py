"""The harness side of the agent protocol (DESIGN.md §2a), and the one factory that picks a
device's agent.

The harness runs `AGENT VERB ARGS...` on the device over the device's SSH session and reads
exactly one JSON object back. Which AGENT depends on the device (`make_agent`):
- a vendor's own program: the inventory's `agent.command`;
- Linux, built in: the POSIX sh shim (agents/linux_shim.sh), sent as the text of a `sh -c`
  command, so nothing is installed on the device;
- Windows, built in: the native agent, uploaded first (harness/device/windows.py).
The words are quoted for the device's shell by its dialect (harness/device/dialect.py), and
run through sudo where the device's root may not log in (harness/device/become.py).

Everything an agent prints is untrusted: a reply that is not one JSON object of the expected
shape is an AgentError (a harness `error` verdict), never a pass or a fail. Text before the
object (a device whose login shell prints a banner on every SSH command) is not part of the
reply: it is kept in `output_before_replies` for the evidence (protocol.split_reply).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from harness.contract.clauses import AF_UNSPEC
from harness.contract.status import Outcome
from harness.device.become import become_words
from harness.device.dialect import Dialect, dialect_for
from harness.contract.protocol import Neighbor, StatusReply, TableReply, parse_neighbor, split_reply
from harness.errors import AgentError
from harness.inventory import Device, Inventory
from harness.ssh import SshSession

READ_ONLY_VERBS = frozenset({"info", "interfaces", "stacks", "table"})


@cache
def linux_shim_text() -> str:
    return resources.files("harness.device").joinpath("agents/linux_shim.sh").read_text()


def make_agent(device: Device, session: SshSession, inventory: Inventory | None) -> "Agent":
    """The device's agent over `session`: the one place that decides which agent and dialect.
    (`inventory` places a lab device's Windows agent; Linux and vendor agents need none.)"""
    dialect = dialect_for(device)
    become = become_words(device)
    if device.agent.command:
        return Agent(device, session, list(device.agent.command), dialect, become)
    if device.os == "windows":
        from harness.device.windows import agent_prefix  # builds with mingw: only when needed
        return Agent(device, session, agent_prefix(device, session, inventory), dialect)
    return Agent(device, session, ["sh", "-c", linux_shim_text(), "neighcheck-agent"], dialect, become)


class Agent:
    """Calls one device's agent over its SSH session."""

    def __init__(self, device: Device, session: SshSession, prefix: list[str], dialect: Dialect,
                 become: tuple[str, ...] = ()):
        self.device = device
        self.session = session
        self.prefix = prefix
        self.dialect = dialect
        self.become = become  # e.g. ("sudo", "-n", "--"): put before every call
        # (call, text) for each reply the device printed something before (a login banner).
        self.output_before_replies: list[tuple[str, str]] = []
        self.calls = 0
        self.mutations = 0  # calls that may have changed the table (tells when a read is stale)

    def over(self, session: SshSession) -> "Agent":
        """The same agent called over another session (the non-admin account's), without sudo:
        RET-ACCESS judges what that account gets on its own."""
        agent = Agent(self.device, session, self.prefix, self.dialect)
        agent.output_before_replies = self.output_before_replies  # one record per device
        return agent

    def command_line(self, verb: str, *args: str | int) -> str:
        return self.dialect.quote([*self.become, *self.prefix, verb, *map(str, args)])

    def call(self, verb: str, *args: str | int, timeout: float | None = None) -> dict[str, Any]:
        command = self.command_line(verb, *args)
        if verb not in READ_ONLY_VERBS:
            self.mutations += 1  # counted before it runs: an abandoned call may still have run
        result = self.session.run(command, timeout=timeout)
        self.calls += 1
        call = " ".join(map(str, (verb, *args)))
        where = f"device {self.device.name!r}: agent `{call}`"
        err = result.stderr.decode(errors="replace").strip()
        if result.exit_status != 0:
            raise AgentError(f"{where} exited {result.exit_status}: "
                             f"{(err or result.stdout.decode(errors='replace')).strip()[:300]}")
        text = result.stdout.decode(errors="replace").strip()
        found = split_reply(text)
        if found is None:
            raise AgentError(f"{where} printed no JSON object at the end of its output: "
                             f"{text[-200:]!r}" if text else f"{where} printed nothing")
        before, reply = found
        if not isinstance(reply, dict):
            raise AgentError(f"{where} printed JSON that is not an object: {text[-200:]!r}")
        if before:
            self.output_before_replies.append((call, before))
        return reply

    # --- verbs -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The `info` extension; an agent without it gets an empty fingerprint, not an error."""
        try:
            reply = self.call("info")
        except AgentError:
            return {}
        return {k: v for k, v in reply.items() if isinstance(v, (str, int, float, bool))}

    def interfaces(self) -> list[dict[str, Any]]:
        reply = self.call("interfaces")
        items = reply.get("interfaces")
        if not isinstance(items, list):
            raise AgentError(f"device {self.device.name!r}: `interfaces` reply has no interfaces list")
        out = []
        for item in items:
            if not (isinstance(item, dict) and _is_int(item.get("index")) and isinstance(item.get("name"), str)):
                raise AgentError(f"device {self.device.name!r}: malformed interface {item!r}")
            out.append(item)
        return out

    def stacks(self) -> dict[str, bool]:
        reply = self.call("stacks")
        if not all(isinstance(reply.get(k), bool) for k in ("ipv4", "ipv6")):
            raise AgentError(f"device {self.device.name!r}: `stacks` reply needs booleans ipv4 and ipv6: {reply}")
        return {"ipv4": reply["ipv4"], "ipv6": reply["ipv6"]}

    def table(self, family: int = AF_UNSPEC) -> TableReply:
        reply = self.call("table", family)
        status = self._status(reply, "table")
        raw_entries = reply.get("entries", [])
        if status.outcome is Outcome.SUCCESS and not isinstance(raw_entries, list):
            raise AgentError(f"device {self.device.name!r}: `table` reply has no entries list")
        entries = tuple(self._neighbor(e) for e in (raw_entries or []))
        return TableReply(status, entries)

    def flush(self, family: int, ifindex: int) -> StatusReply:
        return self._status(self.call("flush", family, ifindex), "flush")

    def add(self, family: int, ifindex: int, address: str, lladdr: str) -> StatusReply:
        return self._status(self.call("add", family, ifindex, address, lladdr), "add")

    def delete(self, family: int, ifindex: int, address: str) -> StatusReply:
        return self._status(self.call("delete", family, ifindex, address), "delete")

    # --- reply checks --------------------------------------------------------------------
    def _status(self, reply: dict[str, Any], verb: str) -> StatusReply:
        if "status" not in reply:
            raise AgentError(f"device {self.device.name!r}: `{verb}` reply has no status: {reply}")
        raw = reply["status"]
        error = reply.get("error")
        if raw is None and not error:
            raise AgentError(f"device {self.device.name!r}: `{verb}` returned a null status with no error")
        if raw is not None and not _is_int(raw):
            raise AgentError(f"device {self.device.name!r}: `{verb}` status {raw!r} is not an integer")
        space = reply.get("status_space")
        if space is not None and space not in ("ntstatus", "win32"):
            raise AgentError(f"device {self.device.name!r}: unknown status_space {space!r}")
        return StatusReply(raw, space, error if isinstance(error, str) else None,
                           str(reply.get("detail")) if reply.get("detail") is not None else None)

    def _neighbor(self, entry: Any) -> Neighbor:
        try:
            return parse_neighbor(entry)
        except ValueError as exc:
            raise AgentError(f"device {self.device.name!r}: malformed table entry ({exc}): {entry!r}"[:500]) \
                from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
