"""Static entries around seeding (harness/device/dut.py), without a lab: a scripted agent and
table. The statics are planted before the seeds (so that the seeds' verification read is the
case's "before"), only where the latest current read lacks them, and a family the agent
refused is not asked again while the other still is."""

from __future__ import annotations

from harness.contract.protocol import Neighbor, StatusReply
from harness.device.dut import DeviceUnderTest, LinkUnderTest
from harness.inventory import load_inventory
from harness.traffic.seeding import LinkTarget
from tests.support import DEFAULT_INVENTORY

IFINDEX = 5
V4, V6 = (2, IFINDEX, "198.51.100.200"), (23, IFINDEX, "2001:db8:ffff::200")
LLADDR = "02:00:5e:00:02:00"


class ScriptedAgent:
    """Adds IPv4 entries, refuses IPv6 ones (as busybox ip does); records every call."""

    def __init__(self):
        self.mutations = 0
        self.calls: list[tuple] = []

    def statuses(self, calls):
        self.calls += calls
        self.mutations += len(calls)
        return [StatusReply(None, "ntstatus", "not-supported", "no IPv6 add") if c[1] == 23
                else StatusReply(0, "ntstatus") for c in calls]


class NoSeeds:
    def send(self, target, entries):
        assert not entries


def device_under_test(table: list[Neighbor]) -> DeviceUnderTest:
    device = load_inventory(DEFAULT_INVENTORY).device("linux-a")
    dut = DeviceUnderTest(device, load_inventory(DEFAULT_INVENTORY), entries=1, seeder=NoSeeds(), holder="t")
    dut.agent = ScriptedAgent()  # type: ignore[assignment]
    target = LinkTarget("nck-a-t1", "02:00:00:00:00:01", "198.18.1.2", "2001:db8:1::2", "2001:db8:1::/64")
    dut.links = [LinkUnderTest(device.links[0], 0, IFINDEX, target, [], {V4: LLADDR, V6: LLADDR})]
    dut.table = lambda: tuple(table)  # type: ignore[method-assign]
    return dut


def static(key) -> Neighbor:
    return Neighbor(key[2], key[0], key[1], LLADDR, "permanent")


def test_statics_go_first_and_a_refused_family_is_not_asked_again_while_the_other_is():
    table: list[Neighbor] = []
    dut = device_under_test(table)
    dut.seed()
    assert [c[:2] for c in dut.agent.calls] == [("add", 2), ("add", 23)]
    assert "static_entries" in dut.fingerprint  # IPv6 refused: said once
    dut.agent.calls.clear()
    table.append(static(V4))  # planted: the next case finds it and asks nothing
    assert dut.seed().static == {V4: LLADDR}
    assert dut.agent.calls == []
    table.clear()  # a flush took it: re-added, IPv6 still not asked
    dut.seed()
    assert [c[:2] for c in dut.agent.calls] == [("add", 2)]
