"""Address choice (RFC 3927 section 2.1): range, reservations, MAC seeding."""

from __future__ import annotations

import ipaddress

import pytest

from netsim.linklocal import Candidates, LinkLocalError, first_candidate
from netsim.linklocal.candidates import FIRST, LAST, METADATA_ADDRESS, is_selectable, normalize_mac, seed_from_mac


def macs(n: int) -> list[str]:
    return [f"02:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:7e" for i in range(n)]


def test_range_and_reserved_never_chosen_over_many_seeds():
    reserved = frozenset(f"169.254.{a}.{b}" for a in (1, 100, 254) for b in range(256))
    for mac in macs(1500):
        gen = Candidates(mac, reserved)
        for _ in range(20):
            addr = gen.next()
            value = int(ipaddress.IPv4Address(addr))
            assert FIRST <= value <= LAST, addr             # never 169.254.0.0/24 or 169.254.255.0/24
            assert addr != METADATA_ADDRESS and addr not in reserved, addr
            assert is_selectable(addr)


def test_whole_range_is_reached_uniformly():
    gen = Candidates("02:00:00:00:00:01")
    counts: dict[int, int] = {}
    for _ in range(200_000):
        third = int(gen.next().split(".")[2])
        counts[third] = counts.get(third, 0) + 1
    assert sorted(counts) == list(range(1, 255))  # 169.254.1.x to 169.254.254.x, nothing else
    mean = 200_000 / 254
    assert all(abs(c - mean) < 0.2 * mean for c in counts.values())


def test_never_the_previous_candidate():
    # Leave exactly two addresses free: the sequence must alternate between them.
    free = {"169.254.10.10", "169.254.20.20"}
    reserved = frozenset(str(ipaddress.IPv4Address(v)) for v in range(FIRST, LAST + 1)) - free
    gen = Candidates("02:00:00:00:00:02", reserved)
    seq = [gen.next() for _ in range(10)]
    assert set(seq) == free
    assert all(a != b for a, b in zip(seq, seq[1:]))


def test_reserved_set_that_leaves_nothing_is_refused():
    everything = frozenset(str(ipaddress.IPv4Address(v)) for v in range(FIRST, LAST + 1))
    with pytest.raises(LinkLocalError, match="no link-local address"):
        Candidates("02:00:00:00:00:03", everything)


def test_reserving_the_first_candidate_moves_it():
    mac = "02:00:00:00:00:04"
    first = first_candidate(mac)
    assert first_candidate(mac, {first}) != first


def test_same_mac_same_sequence_and_restart():
    a, b = Candidates("02:AA:bb:00:00:05"), Candidates(bytes.fromhex("02aabb000005"))
    seq = [a.next() for _ in range(5)]
    assert [b.next() for _ in range(5)] == seq
    a.restart()
    assert a.next() == seq[0]
    # The seed is a pure function of the MAC (the same in every process and run).
    assert seed_from_mac("02:aa:bb:00:00:05") == seed_from_mac(b"\x02\xaa\xbb\x00\x00\x05")


@pytest.mark.parametrize("bad", ["02:00:00:00:00", "zz:00:00:00:00:00", b"\x01\x02", "0200.0000.0001", 42 * "a"])
def test_bad_macs_are_refused(bad):
    with pytest.raises(LinkLocalError, match="MAC"):
        normalize_mac(bad)


@pytest.mark.parametrize("bad", ["169.254.1", "fe80::1", "not-an-address"])
def test_bad_reserved_addresses_are_refused(bad):
    with pytest.raises(LinkLocalError, match="reserved address"):
        Candidates("02:00:00:00:00:06", {bad})
