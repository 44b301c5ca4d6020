"""Steps shared by the conformance cases: the snapshot and flush steps that record evidence
and timings as they go."""

from __future__ import annotations

from harness.contract.clauses import family_name
from harness.contract.judging import index


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
