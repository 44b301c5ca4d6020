"""The clause catalog, the address families and the results' fixed numbers (DESIGN.md §1).

The one home of these names: the cases, the judge, the plugin and the reports all read them
from here.
"""

from __future__ import annotations

from dataclasses import dataclass

# Address families in Windows numbering (ADDRESS_FAMILY), as the agent protocol carries them.
AF_UNSPEC, AF_INET, AF_INET6 = 0, 2, 23
FAMILY_NAMES = {AF_UNSPEC: "AF_UNSPEC", AF_INET: "AF_INET", AF_INET6: "AF_INET6"}
SCOPE_FAMILIES = (AF_UNSPEC, AF_INET, AF_INET6)
# Invalid families (DESIGN.md §1): 10 is Linux's AF_INET6, which a shim passing Linux numbers
# through would accept by mistake.
INVALID_FAMILIES = (1, 6, 10, 24, 0xFFFF)
STACK_OF = {AF_INET: "ipv4", AF_INET6: "ipv6"}  # the stack a family needs
STACK_NAME = {"ipv4": "IPv4", "ipv6": "IPv6"}

RESULTS_SCHEMA = "neighcheck-results/1"
MAX_ENTRIES = 16384  # seeded entries per family per test link, at most


def family_name(family: int) -> str:
    """AF_INET for 2; an invalid family reads `family-24` (also in case ids)."""
    return FAMILY_NAMES.get(family, f"family-{family}")


@dataclass(frozen=True)
class Clause:
    id: str
    source: str
    requirement: str
    kind: str  # "judged" (pass/fail) or "observed" (recorded, never failed)


CLAUSES: tuple[Clause, ...] = (
    Clause("FAM-UNSPEC", "spec", "Family=AF_UNSPEC flushes both IPv4 and IPv6 entries", "judged"),
    Clause("FAM-INET", "spec", "Family=AF_INET flushes only IPv4 entries", "judged"),
    Clause("FAM-INET6", "spec", "Family=AF_INET6 flushes only IPv6 entries", "judged"),
    Clause("IF-ALL", "spec", "InterfaceIndex=0 flushes entries on all interfaces", "judged"),
    Clause("IF-ONE", "spec", "InterfaceIndex=i flushes only entries on interface i", "judged"),
    Clause("RET-SUCCESS", "spec", "success returns STATUS_SUCCESS (user mode: NO_ERROR)", "judged"),
    Clause("RET-INVALID-FAMILY", "spec",
           "Family not in {AF_INET, AF_INET6, AF_UNSPEC} returns STATUS_INVALID_PARAMETER", "judged"),
    Clause("RET-NOSTACK-INET", "spec", "no IPv4 stack and AF_INET returns STATUS_NOT_SUPPORTED", "judged"),
    Clause("RET-NOSTACK-INET6", "spec", "no IPv6 stack and AF_INET6 returns STATUS_NOT_SUPPORTED", "judged"),
    Clause("RET-ACCESS", "user-mode reference (iphlpapi)",
           "caller without admin rights gets ERROR_ACCESS_DENIED", "judged"),
    Clause("NOCHANGE-ON-ERROR", "derived", "a call that fails changes no entry", "judged"),
    Clause("NO-COLLATERAL", "derived",
           "entries outside the (family, interface) scope are untouched", "judged"),
    Clause("IDEMPOTENT", "derived", "flushing an already empty scope succeeds and changes nothing", "judged"),
    Clause("DURABLE", "derived",
           "what a call did (or did not do) still holds after a settle window: removed entries stay "
           "removed, a failed call still changed nothing", "judged"),
    Clause("OBS-PERMANENT", "observed", "are static/permanent entries removed?", "observed"),
    Clause("OBS-BAD-INDEX", "observed",
           "status and effect for an InterfaceIndex that does not exist", "observed"),
    Clause("OBS-UNSPEC-ONE-STACK", "observed", "AF_UNSPEC when only one stack exists", "observed"),
    Clause("OBS-STATES", "observed",
           "which states (incomplete, probe, delay, stale, reachable, failed) are removed", "observed"),
)
CLAUSE_BY_ID = {clause.id: clause for clause in CLAUSES}
FAMILY_CLAUSE = {AF_UNSPEC: "FAM-UNSPEC", AF_INET: "FAM-INET", AF_INET6: "FAM-INET6"}
NOSTACK_CLAUSE = {AF_INET: "RET-NOSTACK-INET", AF_INET6: "RET-NOSTACK-INET6"}
