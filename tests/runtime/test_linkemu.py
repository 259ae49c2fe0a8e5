"""The delay line's model on an invented clock and seeded draws (no socket): netem's
semantics for latency, jitter, loss, duplicate, reorder, corrupt, rate and the queue's limit."""

from __future__ import annotations

import random
import struct

import pytest

from netsim.kernel import delayline
from netsim.runtime.linkemu import DelayModel, Impairment, corrupt


def model(**kw) -> DelayModel:
    return DelayModel(Impairment(**kw), random.Random(7))


def frame(n: int, size: int = 100) -> bytes:
    return n.to_bytes(4, "big") + bytes(size - 4)


def order(frames: list[bytes]) -> list[int]:
    return [int.from_bytes(f[:4], "big") for f in frames]


def test_latency_holds_every_frame_exactly_that_long():
    m = model(latency_s=0.1)
    m.push(frame(1), 10.0)
    m.push(frame(2), 10.05)
    assert m.next_at() == 10.1 and m.due(10.099) == []
    assert order(m.due(10.1)) == [1] and m.next_at() == 10.15
    assert order(m.due(11)) == [2] and m.next_at() is None and m.counters.sent == 2


def test_jitter_spreads_the_delay_but_never_reorders():
    m = model(latency_s=0.1, jitter_s=0.05)
    for i in range(200):
        m.push(frame(i), i * 0.001)
    sent = []  # (when, frame number)
    while m.next_at() is not None:
        t = m.next_at()
        sent += [(t, n) for n in order(m.due(t))]
    assert [n for _, n in sent] == list(range(200))
    gaps = [t - n * 0.001 for t, n in sent]
    # FIFO: a frame waits for the one ahead, so the delay stays within latency +- jitter.
    assert min(gaps) >= 0.05 - 1e-9 and max(gaps) <= 0.15 + 1e-9
    assert len({round(g, 6) for g in gaps}) > 50  # spread, not one delay


def test_everything_sent_comes_out_in_order_without_reorder():
    m = model(latency_s=0.02, jitter_s=0.02, duplicate=30)
    for i in range(100):
        m.push(frame(i), i * 0.001)
    out = order(m.due(100.0))
    assert out == sorted(out) and len(out) == 100 + m.counters.duplicated and m.counters.duplicated > 10


def test_loss_and_duplicate_shares():
    m = model(loss=25)
    kept = sum(m.push(frame(i), 0.0) for i in range(4000))
    assert 2800 < kept < 3200 and m.counters.lost == 4000 - kept
    m = model(duplicate=100)
    assert m.push(frame(1), 0.0) == 2 and order(m.due(0.0)) == [1, 1]
    assert model(loss=100).push(frame(1), 0.0) == 0


def test_reorder_sends_a_share_at_once_and_delays_the_rest():
    m = model(latency_s=0.05, reorder=25)
    for i in range(400):
        m.push(frame(i), 1.0)
    at_once = order(m.due(1.0))
    assert 60 < len(at_once) < 140 and m.counters.reordered == len(at_once)
    assert m.due(1.049) == [] and len(m.due(1.05)) == 400 - len(at_once)


def test_rate_serialises_frames_after_one_another():
    m = model(rate=1000)  # 1000 bytes/s: a 100-byte frame takes 0.1 s
    for i in range(3):
        m.push(frame(i), 0.0)
    assert m.next_at() == 0.1
    assert order(m.due(0.25)) == [0, 1] and m.next_at() == pytest.approx(0.3)


def test_the_queue_drops_beyond_its_limit():
    m = model(latency_s=1, limit=3)
    assert [m.push(frame(i), 0.0) for i in range(5)] == [1, 1, 1, 0, 0]
    assert m.counters.overflowed == 2 and len(m) == 3


def ipv4_frame(payload: bytes = b"x" * 20) -> bytes:
    return bytes(12) + b"\x08\x00" + b"\x45" + bytes(19) + payload


def test_corruption_flips_one_bit_of_the_ipv4_header_and_never_the_mac_header():
    rng = random.Random(1)
    original = ipv4_frame()
    for _ in range(200):
        bad = corrupt(original, rng)
        diff = [i for i in range(len(original)) if bad[i] != original[i]]
        assert len(diff) == 1 and 14 <= diff[0] < 34
        assert bin(bad[diff[0]] ^ original[diff[0]]).count("1") == 1


def test_corruption_of_ipv6_hits_the_payload_and_other_frames_past_ethernet():
    rng = random.Random(2)
    v6 = bytes(12) + b"\x86\xdd" + bytes(40) + b"p" * 10
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    for _ in range(100):
        bad6, bad_arp = corrupt(v6, rng), corrupt(arp, rng)
        assert [i for i in range(len(v6)) if bad6[i] != v6[i]][0] >= 54
        assert [i for i in range(len(arp)) if bad_arp[i] != arp[i]][0] >= 14
    assert corrupt(bytes(14), rng) == bytes(14)  # nothing past the header: unchanged


def test_corrupt_counts_and_a_frame_the_driver_cannot_corrupt_is_lost():
    m = model(corrupt=100)
    assert m.push(ipv4_frame(), 0.0) == 1 and m.counters.corrupted == 1
    assert m.push(ipv4_frame(), 0.0, corrupter=lambda f, rng: None) == 0


def test_a_virtio_frame_keeps_its_header_and_a_gso_segment_is_not_corrupted():
    head = delayline.VNET_HEADER.pack(0, 0, 0, 0, 0, 0)
    out = delayline.corrupt_vnet(head + ipv4_frame(), random.Random(3), corrupt)
    assert out[:len(head)] == head and out != head + ipv4_frame()
    gso = delayline.VNET_HEADER.pack(1, 1, 54, 1448, 34, 16)  # VIRTIO_NET_HDR_GSO_TCPV4
    assert delayline.corrupt_vnet(gso + ipv4_frame(), random.Random(3), corrupt) is None


def test_the_same_seed_draws_the_same_line():
    def run() -> list[float]:
        m = model(latency_s=0.1, jitter_s=0.05, loss=10, duplicate=10, reorder=10)
        for i in range(100):
            m.push(frame(i), i * 0.01)
        times = []
        while m.next_at() is not None:
            times.append(m.next_at())
            m.due(times[-1])
        return times
    assert run() == run()


def test_the_tap_names_fit_an_interface_name():
    assert len(delayline.TAP_INTO) <= 15 and len(delayline.TAP_OUT) <= 15 and delayline.TAP_INTO != delayline.TAP_OUT


def test_the_redirect_matches_the_destination_mac_before_the_network_header():
    msg = delayline._redirect(1000, bytes.fromhex("0a456bcab38d"), 7)
    msg.encode()
    data = bytes(msg.data)
    # tc_u32_key: mask, value (network order), offset, offmask: the MAC 14 bytes before the IP header
    assert bytes.fromhex("ffffffff0a456bca") + struct.pack("ii", -14, 0) in data
    assert bytes.fromhex("ffff0000b38d0000") + struct.pack("ii", -10, 0) in data
    assert b"mirred" in data and b"u32" in data


def test_the_patched_redirect_is_the_one_pyroute2_encodes():
    mac = bytes.fromhex("0a456bcab38d")
    slow, fast = delayline._redirect(1000, mac, 7), delayline._Encoded(1000, mac, 7)
    for msg in (slow, fast):
        msg["header"]["type"], msg["header"]["flags"], msg["header"]["sequence_number"] = 44, 5, 9
        msg.encode()
    assert bytes(fast.data) == bytes(slow.data)
