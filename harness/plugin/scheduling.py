"""xdist scheduling by device: all of a device's cases go to one worker, in order."""

from __future__ import annotations


def device_scheduling(devices: list[str]):
    """xdist's loadgroup, where a conformance case's group is its device.

    xdist's own loadgroup reads xdist_group marks through node ids it rewrites, which
    pytest >= 9.2 no longer allows (pytest-xdist#1386): the marks were silently ignored, a
    device's cases were spread over the workers, and these fought for its lock."""
    from xdist.scheduler import LoadGroupScheduling

    by_length = sorted(devices, key=len, reverse=True)

    class DeviceScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            # The device is read from the case id, `test_flush_scope[<device>-AF_INET-eth1]`.
            if nodeid.endswith("]") and "[" in nodeid:
                param = nodeid[nodeid.rindex("[") + 1:-1]
                for name in by_length:
                    if param == name or param.startswith(name + "-"):
                        return f"neighcheck-device:{name}"
            return super()._split_scope(nodeid)

    return DeviceScheduling
