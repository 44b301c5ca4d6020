"""Steps shared by the conformance cases (conformance/): the families probed, and the
snapshot and flush steps that record evidence and timings as they go."""

from __future__ import annotations

from harness.agent import AF_INET, AF_INET6, AF_UNSPEC, family_name
from harness.judging import index

SCOPE_FAMILIES = (AF_UNSPEC, AF_INET, AF_INET6)
# Invalid families (DESIGN.md §1): 10 is Linux's AF_INET6, which a shim passing Linux numbers
# through would accept by mistake.
INVALID_FAMILIES = (1, 6, 10, 24, 0xFFFF)
STACK_OF = {AF_INET: "ipv4", AF_INET6: "ipv6"}


def snapshot(case, dut) -> dict:
    with case.timing("snapshot"):
        table = dut.table()
    case.evidence["after"] = [e.to_dict() for e in table]
    return index(table)


def call_flush(case, dut, family: int, ifindex: int):
    case.record.family = family
    case.record.family_name = family_name(family)
    case.record.ifindex = ifindex
    case.evidence["call"] = {"verb": "flush", "family": family, "ifindex": ifindex}
    with case.timing("flush"):
        reply = dut.agent.flush(family, ifindex)
    case.status(reply)
    return reply
