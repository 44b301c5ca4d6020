"""The harness side of the agent protocol (DESIGN.md §2a).

The harness runs `AGENT VERB ARGS...` on the device over the device's SSH session and reads
exactly one JSON object back. Which AGENT depends on the device:
- Linux, built in: the POSIX sh shim (harness/agents/linux_shim.sh), sent as the text of a
  `sh -c` command, so nothing is installed on the device;
- a vendor's own program: the inventory's `agent.command`, each word shell-quoted;
- Windows, built in: the uploaded native agent (harness/windows.py).

Everything an agent prints is untrusted: a reply that is not one JSON object of the expected
shape is an AgentError (a harness `error` verdict), never a pass or a fail.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from harness.errors import AgentError
from harness.inventory import Device
from harness.ssh import SshSession
from harness.status import Outcome, normalise

AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
FAMILY_NAMES = {AF_UNSPEC: "AF_UNSPEC", AF_INET: "AF_INET", AF_INET6: "AF_INET6"}
_FAMILIES = frozenset({AF_INET, AF_INET6})
READ_ONLY_VERBS = frozenset({"info", "interfaces", "stacks", "table"})
STATES = frozenset({"incomplete", "probe", "delay", "stale", "reachable", "failed", "permanent",
                    "noarp", "unreachable"})


def family_name(family: int) -> str:
    return FAMILY_NAMES.get(family, f"family-{family}")


@cache
def linux_shim_text() -> str:
    return resources.files("harness").joinpath("agents/linux_shim.sh").read_text()


class Neighbor(NamedTuple):
    """One neighbor-table entry as the protocol reports it (a tuple: tables hold 65k of them)."""

    address: str
    family: int
    ifindex: int
    lladdr: str | None
    state: str
    router: bool = False

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.family, self.ifindex, self.address)

    def to_dict(self) -> dict[str, Any]:
        return {"address": self.address, "family": self.family, "ifindex": self.ifindex,
                "lladdr": self.lladdr, "state": self.state, "router": self.router}


@dataclass(frozen=True)
class StatusReply:
    """What a mutating verb (flush, add, delete) returned."""

    raw: int | None
    space: str | None
    error: str | None = None  # e.g. "not-exported"
    detail: str | None = None

    @property
    def outcome(self) -> Outcome:
        return normalise(self.raw, self.space)


@dataclass(frozen=True)
class TableReply:
    status: StatusReply
    entries: tuple[Neighbor, ...]


class Agent:
    """Calls one device's agent over its SSH session."""

    def __init__(self, device: Device, session: SshSession, argv_prefix: list[str] | None = None):
        self.device = device
        self.session = session
        self._prefix = argv_prefix
        self.calls = 0
        self.mutations = 0  # calls that may have changed the table (tells when a read is stale)

    def command_line(self, verb: str, *args: str | int) -> str:
        words = [verb, *map(str, args)]
        if self._prefix is not None:
            prefix = self._prefix
        elif self.device.agent.command:
            prefix = list(self.device.agent.command)
        else:
            prefix = ["sh", "-c", linux_shim_text(), "neighcheck-agent"]
        if self.device.os == "windows" and not self.device.agent.launcher:
            from harness.windows import cmd_quote  # Windows OpenSSH runs commands under cmd.exe
            return " ".join(cmd_quote(w) for w in [*prefix, *words])
        return " ".join(shlex.quote(w) for w in [*prefix, *words])

    def call(self, verb: str, *args: str | int, timeout: float | None = None) -> dict[str, Any]:
        command = self.command_line(verb, *args)
        if verb not in READ_ONLY_VERBS:
            self.mutations += 1  # counted before it runs: an abandoned call may still have run
        result = self.session.run(command, timeout=timeout)
        self.calls += 1
        where = f"device {self.device.name!r}: agent `{verb} {' '.join(map(str, args))}`".rstrip()
        err = result.stderr.decode(errors="replace").strip()
        if result.exit_status != 0:
            raise AgentError(f"{where} exited {result.exit_status}: "
                             f"{(err or result.stdout.decode(errors='replace')).strip()[:300]}")
        text = result.stdout.decode(errors="replace").strip()
        try:
            reply = json.loads(text)
        except ValueError:
            raise AgentError(f"{where} printed something that is not one JSON object: "
                             f"{text[:200]!r}") from None
        if not isinstance(reply, dict):
            raise AgentError(f"{where} printed JSON that is not an object: {text[:200]!r}")
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
        # The hot path of a big table read: exact type checks (bool is not an int here),
        # and the message is built only for a bad entry.
        if type(entry) is not dict:
            raise self._bad_entry(entry, "not an object")
        address, family, ifindex = entry.get("address"), entry.get("family"), entry.get("ifindex")
        if type(address) is not str or type(family) is not int or family not in _FAMILIES \
                or type(ifindex) is not int:
            raise self._bad_entry(entry, "address, family (2|23) and ifindex are required")
        state = entry.get("state")
        state = state.lower() if type(state) is str else None
        if state not in STATES:
            raise self._bad_entry(entry, f"state must be one of {', '.join(sorted(STATES))}")
        lladdr = entry.get("lladdr")
        if lladdr is not None and type(lladdr) is not str:
            raise self._bad_entry(entry, "lladdr must be a string or null")
        return Neighbor(_canonical(address), family, ifindex, lladdr.lower() if lladdr else None,
                        state, bool(entry.get("router", False)))

    def _bad_entry(self, entry: Any, why: str) -> AgentError:
        return AgentError(f"device {self.device.name!r}: malformed table entry ({why}): {entry!r}"[:500])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def canonical_address(address: str) -> str:
    """One text form per address (ipaddress's), so the harness's and the agent's spellings
    compare equal. ValueError when it is not an IP address.

    Tables hold up to 65k entries per read: an address already in canonical form is recognised
    in C (it round-trips through inet_pton/inet_ntop unchanged; 7x faster than ipaddress).
    Dotted IPv6 forms print differently there, so they and every other spelling take ipaddress.
    """
    text = address.split("%", 1)[0]
    if "." not in text or ":" not in text:
        family = socket.AF_INET6 if ":" in text else socket.AF_INET
        try:
            if socket.inet_ntop(family, socket.inet_pton(family, text)) == text:
                return text
        except OSError:
            pass
    return str(ipaddress.ip_address(text))


def _canonical(address: str) -> str:
    """An agent's address in canonical form; what is not an address is kept as printed."""
    try:
        return canonical_address(address)
    except ValueError:
        return address
