"""The agent protocol's data (DESIGN.md §2a): table entries, status replies, and the one
canonical text form of an address that every part of the harness compares by.

Everything an agent prints is untrusted; these are the shapes a reply is checked into.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass
from typing import Any, NamedTuple

from harness.contract.clauses import AF_INET, AF_INET6
from harness.contract.status import Outcome, normalise

STATES = frozenset({"incomplete", "probe", "delay", "stale", "reachable", "failed", "permanent",
                    "noarp", "unreachable"})
# States in which an entry is not usable as planted: seeding does not count it as landed.
NOT_LANDED_STATES = frozenset({"failed", "incomplete", "unreachable"})
Key = tuple[int, int, str]  # (family, ifindex, canonical address)


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
    elapsed_us: int | None = None  # the API call's own time, measured on the device (extension)

    @property
    def outcome(self) -> Outcome:
        return normalise(self.raw, self.space)


@dataclass(frozen=True)
class TableReply:
    status: StatusReply
    entries: tuple[Neighbor, ...]


def canonical_address(address: str) -> str:
    """One text form per address (ipaddress's), so the harness's and the agent's spellings
    compare equal; a scope suffix ("fe80::1%5") is dropped. ValueError when it is not an IP
    address.

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


def canonical_mac(lladdr: str | None) -> str | None:
    """Lower case, colon-separated ("02-5E-.." as Windows prints it becomes "02:5e:..")."""
    return lladdr.lower().replace("-", ":") if lladdr else None


_FAMILIES = frozenset({AF_INET, AF_INET6})


def parse_neighbor(entry: Any) -> Neighbor:
    """One `table` entry as an agent printed it, checked and in canonical form (address, MAC,
    state); ValueError saying what is wrong. The hot path of a 65k-entry read: exact type
    checks (a bool is not an int here), and the message is built only for a bad entry."""
    if type(entry) is not dict:
        raise ValueError("not an object")
    address, family, ifindex = entry.get("address"), entry.get("family"), entry.get("ifindex")
    if type(address) is not str or type(family) is not int or family not in _FAMILIES \
            or type(ifindex) is not int:
        raise ValueError("address, family (2|23) and ifindex are required")
    state = entry.get("state")
    state = state.lower() if type(state) is str else None
    if state not in STATES:
        raise ValueError(f"state must be one of {', '.join(sorted(STATES))}")
    lladdr = entry.get("lladdr")
    if lladdr is not None and type(lladdr) is not str:
        raise ValueError("lladdr must be a string or null")
    try:
        address = canonical_address(address)
    except ValueError:
        pass  # kept as printed: it matches no seed, and the evidence shows it
    return Neighbor(address, family, ifindex, canonical_mac(lladdr), state, bool(entry.get("router", False)))


_DECODER = json.JSONDecoder()


def split_reply(text: str) -> tuple[str, Any] | None:
    """(what the device printed before the reply, the reply) from an agent's stdout.

    The reply is the JSON value that ends the output, starting at the beginning of a line.
    Whatever precedes it was printed before the agent ran: a login shell's banner or motd
    (bash reads ~/.bashrc for every SSH command). It is returned apart, never parsed. None:
    the output does not end in JSON (garbage, or an agent that printed nothing).
    """
    stripped = text.strip()
    try:
        return "", json.loads(stripped)  # the usual case: the reply alone, parsed once
    except ValueError:
        pass
    # Later line starts first: a banner may hold JSON-looking lines of its own.
    newline = len(stripped)
    while newline > 0:
        newline = stripped.rfind("\n", 0, newline)
        start = newline + 1
        if stripped.startswith(("{", "["), start):
            try:
                value, end = _DECODER.raw_decode(stripped, start)
            except ValueError:
                continue
            if end == len(stripped):
                return stripped[:start].rstrip("\n"), value
    return None
