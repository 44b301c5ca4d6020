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

Serve mode (a protocol extension; harness/device/serve.py): an agent whose `info` says
`"serve": true` gets every later verb through one resident `AGENT serve` process instead,
which saves the shell (and agent) start of every call. An agent without it is called per
call, as before.

Everything an agent prints is untrusted: a reply that is not one JSON object of the expected
shape is an AgentError (a harness `error` verdict), never a pass or a fail. Text before the
object (a device whose login shell prints a banner on every SSH command) is not part of the
reply: it is kept in `output_before_replies` for the evidence (protocol.split_reply).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import Any

from harness.contract.clauses import AF_UNSPEC, STACK_NAME
from harness.contract.status import Outcome, code_name
from harness.device.become import become_words
from harness.device.dialect import Dialect, dialect_for
from harness.device.serve import ServeChannel
from harness.contract.protocol import (Neighbor, StatusReply, TableReply, canonical_address, parse_neighbor,
                                       split_reply)
from harness.errors import AgentError
from harness.inventory import Device, Inventory
from harness.ssh import SshSession

READ_ONLY_VERBS = frozenset({"info", "interfaces", "stacks", "table", "ping"})
# A serve request is words separated by spaces: a word that is empty or holds whitespace
# (the protocol's arguments never do) is sent per call instead.
_WORD = re.compile(r"^\S+$")


@cache
def linux_shim_text() -> str:
    return resources.files("harness.device").joinpath("agents/linux_shim.sh").read_text()


def make_agent(device: Device, session: SshSession, inventory: Inventory | None, *,
               privileged: bool = True, serve: bool = True) -> "Agent":
    """The device's agent over `session` (connected): the one place that decides which agent,
    with the dialect of the one dialect factory. `privileged=False` for the non-admin account:
    no sudo (RET-ACCESS judges what that account gets on its own), and on Windows that
    account uploads its own copy of the agent, into its own profile.
    (`inventory` places a lab device's Windows agent; Linux and vendor agents need none.)
    `serve`: use serve mode where the agent's `info` offers it (False: per call only). The
    non-admin account's agent is called per call: it makes a call or two, and a serve
    process would cost as much to start as each."""
    dialect = dialect_for(device, session)
    become = become_words(device) if privileged else ()
    serve = serve and privileged
    if device.agent.command:
        return Agent(device, session, list(device.agent.command), dialect, become, builtin=False, serve=serve)
    if device.os == "windows":
        from harness.device.windows import agent_prefix  # builds with mingw: only when needed
        return Agent(device, session, agent_prefix(device, session, inventory), dialect, serve=serve)
    return Agent(device, session, ["sh", "-c", linux_shim_text(), "neighcheck-agent"], dialect, become,
                 serve=serve)


class Agent:
    """Calls one device's agent over its SSH session: per call (`AGENT VERB ARGS` each time),
    or through one resident `AGENT serve` process once `info` said the agent has it and
    `serve` allows it (harness/device/serve.py)."""

    def __init__(self, device: Device, session: SshSession, prefix: list[str], dialect: Dialect,
                 become: tuple[str, ...] = (), builtin: bool = True, *, serve: bool = True):
        self.device = device
        self.session = session
        self.prefix = prefix
        self.dialect = dialect
        self.become = become  # e.g. ("sudo", "-n", "--"): put before every call
        self.builtin = builtin  # the harness's own agent, not a vendor's `agent.command`
        # (call, text) for each reply the device printed something before (a login banner).
        self.output_before_replies: list[tuple[str, str]] = []
        self.serve_allowed = serve
        self._serve: ServeChannel | None = None
        self.calls = 0
        self.mutations = 0  # calls that may have changed the table (tells when a read is stale)
        # The Windows agent's raw GetIpInterfaceTable codes per family, when `interfaces` had
        # no families (e.g. Wine answers 50, ERROR_NOT_SUPPORTED): shown by doctor.
        self.interface_status: dict[str, Any] = {}

    @property
    def mode(self) -> str:
        """How verbs are sent: "serve" or "per-call"."""
        return "serve" if self._serve is not None else "per-call"

    @property
    def serve_starts(self) -> int:
        """How many serve processes were started (restarts after a fault show here)."""
        return self._serve.starts if self._serve is not None else 0

    def over(self, session: SshSession) -> "Agent":
        """The same agent over another session, without sudo (e.g. a second holder of the
        device lock), per call. The non-admin account gets its own from
        `make_agent(privileged=False)`: on Windows it cannot run this account's copy."""
        agent = Agent(self.device, session, self.prefix, self.dialect, builtin=self.builtin, serve=False)
        agent.output_before_replies = self.output_before_replies  # one record per device
        return agent

    def command_line(self, verb: str, *args: str | int) -> str:
        return self.dialect.quote([*self.become, *self.prefix, verb, *map(str, args)])

    def use_serve(self) -> None:
        """Send every later verb through one `AGENT serve` process (started on first use)."""
        if self._serve is None:
            self._serve = ServeChannel(self.session, self.command_line("serve"), self.device.name,
                                       before_replies=self.output_before_replies)

    def close(self) -> None:
        """End the serve process, if there is one (closing the session ends it too)."""
        if self._serve is not None:
            self._serve.close()

    def call(self, verb: str, *args: str | int, timeout: float | None = None) -> dict[str, Any]:
        words = [verb, *map(str, args)]
        if verb not in READ_ONLY_VERBS:
            self.mutations += 1  # counted before it runs: an abandoned call may still have run
        if self._serve is not None and all(_WORD.match(w) for w in words):
            limit = self.session.config.command_timeout if timeout is None else timeout
            reply = self._serve.request(words, limit, retry=verb in READ_ONLY_VERBS)
            self.calls += 1
            return reply
        command = self.command_line(verb, *args)
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

    def call_many(self, requests: list[tuple[str | int, ...]], *,
                  timeout: float | None = None) -> list[dict[str, Any]]:
        """Several calls, each `(verb, *args)`, replies in order. In serve mode they go out
        together and cost one round trip; per call, one after the other. Every reply is read
        before the first agent error is raised, so the agent stays in step."""
        words = [[str(w) for w in request] for request in requests]
        if self._serve is None or len(words) < 2 or not all(_WORD.match(w) for ws in words for w in ws):
            return [self.call(*w, timeout=timeout) for w in words]
        self.mutations += sum(1 for w in words if w[0] not in READ_ONLY_VERBS)
        limit = self.session.config.command_timeout if timeout is None else timeout
        replies = self._serve.pipeline(words, limit, retry=all(w[0] in READ_ONLY_VERBS for w in words))
        self.calls += len(replies)
        for reply in replies:
            if isinstance(reply, AgentError):
                raise reply
        return replies  # type: ignore[return-value]

    # --- verbs -------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The `info` extension; an agent without it gets an empty fingerprint, not an error.
        Where it says `"serve": true` (and serve is allowed), later verbs go through serve."""
        try:
            reply = self.call("info")
        except AgentError:
            return {}
        if reply.get("serve") is True and self.serve_allowed:
            self.use_serve()
        return {k: v for k, v in reply.items() if isinstance(v, (str, int, float, bool))}

    def ping(self) -> None:
        """The no-op verb of serve mode: one round trip."""
        if self.call("ping").get("pong") is not True:
            raise AgentError(f"device {self.device.name!r}: `ping` reply has no \"pong\": true")

    def interfaces(self) -> list[dict[str, Any]]:
        reply = self.call("interfaces")
        status = reply.get("ip_interface_status")
        self.interface_status = status if isinstance(status, dict) else {}
        items = reply.get("interfaces")
        if not isinstance(items, list):
            raise AgentError(f"device {self.device.name!r}: `interfaces` reply has no interfaces list")
        out = []
        for item in items:
            if not (isinstance(item, dict) and _is_int(item.get("index")) and isinstance(item.get("name"), str)):
                raise AgentError(f"device {self.device.name!r}: malformed interface {item!r}")
            families = item.get("families")  # protocol13.md item 1; absent: the device's stacks
            if families is not None and not (isinstance(families, list) and
                                             all(f in STACK_NAME for f in families)):
                raise AgentError(f"device {self.device.name!r}: interface {item['name']!r}: families "
                                 f"must be a list of {' and '.join(STACK_NAME)}, got {families!r}")
            out.append(item)
        return out

    def stacks(self) -> dict[str, bool]:
        reply = self.call("stacks")
        if not all(isinstance(reply.get(k), bool) for k in ("ipv4", "ipv6")):
            raise AgentError(f"device {self.device.name!r}: `stacks` reply needs booleans ipv4 and ipv6: {reply}")
        return {"ipv4": reply["ipv4"], "ipv6": reply["ipv6"]}

    def table(self, family: int = AF_UNSPEC) -> TableReply:
        return self._table(self.call("table", family))

    def tables(self, families: tuple[int, ...]) -> list[TableReply]:
        """`table` of each family; in serve mode all in one round trip."""
        return [self._table(reply) for reply in self.call_many([("table", f) for f in families])]

    def statuses(self, calls: list[tuple[str | int, ...]]) -> list[StatusReply]:
        """Several `flush`, `add` or `delete` calls, each `(verb, *args)` (call_many): their
        status replies in order."""
        return [self._status(reply, str(call[0])) for call, reply in zip(calls, self.call_many(calls))]

    def _table(self, reply: dict[str, Any]) -> TableReply:
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

    def delete_many(self, family: int, ifindex: int, addresses: list[str]) -> dict[str, StatusReply]:
        """`delete FAMILY IFINDEX ADDRESS...` (protocol13.md item 2): each address's status,
        keyed by canonical address. MultiDeleteRefused when the agent does not take several
        addresses (then call `delete` once per address)."""
        try:
            reply = self.call("delete", family, ifindex, *addresses)
        except AgentError as exc:
            if len(addresses) > 1:
                raise MultiDeleteRefused(str(exc)) from None
            raise
        if len(addresses) > 1 and reply.get("error") == "bad-argument":
            raise MultiDeleteRefused(f"`delete` with {len(addresses)} addresses: {reply}"[:300])
        call = self._status(reply, "delete")
        results = reply.get("results")
        if results is None:
            if len(addresses) > 1 and call.outcome is Outcome.SUCCESS:
                # A success without results may have deleted only the first address.
                raise MultiDeleteRefused(f"`delete` with {len(addresses)} addresses gave no results")
            # One address, or the whole call failed (no such interface, no rights, no export).
            return {canonical_address(a): call for a in addresses}
        if not isinstance(results, list):
            raise AgentError(f"device {self.device.name!r}: `delete` results is not a list: {results!r}"[:300])
        wanted = {canonical_address(a) for a in addresses}
        out: dict[str, StatusReply] = {}
        for item in results:
            if not (isinstance(item, dict) and isinstance(item.get("address"), str) and
                    _is_int(item.get("status"))):
                raise AgentError(f"device {self.device.name!r}: malformed `delete` result {item!r}"[:300])
            try:
                address = canonical_address(item["address"])
            except ValueError:
                address = item["address"]
            if address not in wanted:
                raise AgentError(f"device {self.device.name!r}: `delete` reported {item['address']!r}, "
                                 "which it was not asked to delete")
            out[address] = StatusReply(item["status"], call.space, None,
                                       str(item["detail"]) if item.get("detail") is not None else None)
        missing = sorted(wanted - set(out))
        if missing:
            raise AgentError(f"device {self.device.name!r}: `delete` gave no result for "
                             f"{len(missing)} addresses, e.g. {', '.join(missing[:3])}")
        return out

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
        elapsed = reply.get("elapsed_us")  # extension: the call's own time, on the device
        return StatusReply(raw, space, error if isinstance(error, str) else None,
                           str(reply.get("detail")) if reply.get("detail") is not None else None,
                           elapsed if _is_int(elapsed) and elapsed >= 0 else None)

    def _neighbor(self, entry: Any) -> Neighbor:
        try:
            return parse_neighbor(entry)
        except ValueError as exc:
            raise AgentError(f"device {self.device.name!r}: malformed table entry ({exc}): {entry!r}"[:500]) \
                from None


class MultiDeleteRefused(AgentError):
    """The agent does not take several addresses in one `delete`."""


NOT_FOUND_NAMES = frozenset({"STATUS_NOT_FOUND", "ERROR_NOT_FOUND"})


def gone(reply: StatusReply) -> bool:
    """A delete that leaves the entry absent: success, or not found in the reply's space."""
    return reply.outcome is Outcome.SUCCESS or (
        reply.raw is not None and code_name(reply.raw, reply.space) in NOT_FOUND_NAMES)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
