"""Address canonicalisation: the fast path gives exactly what ipaddress gives."""

from __future__ import annotations

import ipaddress
import random

import pytest

from harness.contract.protocol import canonical_address, parse_neighbor


def reference(address: str) -> str:
    return str(ipaddress.ip_address(address.split("%", 1)[0]))


@pytest.mark.parametrize("address", ["198.51.100.7", "2001:db8::1", "2001:DB8::1", "2001:db8:0:0:1:0:0:1",
                                     "::ffff:1.2.3.4", "::2:3", "::1", "::", "fe80::1%eth1",
                                     "2001:0db8:0000:0000:0000:0000:0000:0001"])
def test_same_text_as_ipaddress(address):
    assert canonical_address(address) == reference(address)


def test_same_text_as_ipaddress_for_random_addresses():
    rng = random.Random(7)
    for _ in range(20000):
        v6 = ipaddress.IPv6Address(rng.getrandbits(128) & ~(0xFFFFFFFF << rng.randrange(0, 96, 16)))
        for text in (str(v6), v6.exploded, str(v6).upper(), str(ipaddress.IPv4Address(rng.getrandbits(32)))):
            assert canonical_address(text) == reference(text)


def test_what_is_not_an_address():
    for text in ("nonsense", "01.2.3.4", "127.1", ""):
        with pytest.raises(ValueError):
            canonical_address(text)
        row = {"address": text, "family": 2, "ifindex": 1, "state": "stale"}
        assert parse_neighbor(row).address == text  # an agent's odd spelling is kept as printed
