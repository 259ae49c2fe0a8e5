"""ARP frames: built and parsed whole, truncated at every length, and with trailing bytes."""

from __future__ import annotations

import pytest

from netsim.linklocal.arp import REPLY, REQUEST, ArpPacket, decode_frame, encode_frame

MAC = "02:00:5e:10:20:30"
PACKETS = [
    ArpPacket.probe(MAC, "169.254.3.4"),
    ArpPacket.announcement(MAC, "169.254.200.1"),
    ArpPacket.reply(MAC, "169.254.200.1", ArpPacket.probe("02:00:5e:00:00:09", "169.254.200.1")),
]
# A probe written out by hand (RFC 826 layout): Ethernet, then htype 1, ptype 0x0800,
# hlen 6, plen 4, op 1, SHA, SPA 0.0.0.0, THA 0, TPA 169.254.3.4.
PROBE_BYTES = bytes.fromhex(
    "ffffffffffff" "02005e102030" "0806"
    "0001" "0800" "06" "04" "0001" "02005e102030" "00000000" "000000000000" "a9fe0304")


def test_encode_matches_the_wire_layout():
    assert encode_frame(PACKETS[0]) == PROBE_BYTES


@pytest.mark.parametrize("pkt", PACKETS)
def test_round_trip_and_broadcast(pkt):
    frame = encode_frame(pkt)
    assert len(frame) == 42 and frame[:6] == b"\xff" * 6  # every frame goes to broadcast
    assert decode_frame(frame) == pkt


def test_decode_whole():
    assert decode_frame(PROBE_BYTES) == ArpPacket(REQUEST, MAC, "0.0.0.0", "00:00:00:00:00:00", "169.254.3.4", MAC)


@pytest.mark.parametrize("pad", [18, 1, 100])
def test_decode_with_trailing_bytes(pad):
    # Ethernet pads short frames to 60 bytes; anything after the ARP body is ignored.
    assert decode_frame(PROBE_BYTES + b"\x00" * pad) == decode_frame(PROBE_BYTES)
    assert decode_frame(PROBE_BYTES + b"\xab" * pad).tpa == "169.254.3.4"


def test_decode_truncated_at_every_length():
    for n in range(len(PROBE_BYTES)):
        assert decode_frame(PROBE_BYTES[:n]) is None, n


def test_decode_byte_by_byte_growing_input():
    results = [decode_frame(bytearray(PROBE_BYTES[:n])) for n in range(len(PROBE_BYTES) + 1)]
    assert results[:-1] == [None] * len(PROBE_BYTES) and results[-1] is not None


def test_sender_mac_must_match_frame_source():
    # RFC 5227 section 1.1: drop ARP whose sender hardware address is not the frame's source.
    forged = PROBE_BYTES[:6] + bytes.fromhex("02005e999999") + PROBE_BYTES[12:]
    assert decode_frame(forged) is None


@pytest.mark.parametrize("offset,value", [
    (12, b"\x08\x00"),   # IPv4, not ARP
    (14, b"\x00\x06"),   # hardware type IEEE 802 instead of Ethernet
    (16, b"\x86\xdd"),   # protocol IPv6
    (18, b"\x08"),       # hardware length 8
    (19, b"\x10"),       # protocol length 16
])
def test_non_ethernet_ipv4_arp_is_ignored(offset, value):
    frame = PROBE_BYTES[:offset] + value + PROBE_BYTES[offset + len(value):]
    assert decode_frame(frame) is None


def test_reply_opcode_and_garbage():
    assert decode_frame(encode_frame(PACKETS[2])).op == REPLY
    assert decode_frame(b"\xff" * 64) is None
    assert decode_frame(b"") is None
