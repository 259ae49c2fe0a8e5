"""The Claim machine on invented timelines: exact deadlines and actions for every path."""

from __future__ import annotations

import random

import pytest

from netsim.linklocal import (RFC_TIMERS, ArpPacket, Bind, Claim, ClaimState, IllegalInput, SendArp,
                              Unbind, first_candidate)
from netsim.linklocal.arp import REPLY, REQUEST, ZERO_MAC
from netsim.linklocal.machine import TRANSITIONS, Event, transition_rows

MAC = "02:00:5e:00:00:01"
OTHER = "02:00:5e:00:00:99"
T = RFC_TIMERS


class ScriptedRandom(random.Random):
    """A Random whose random() returns the given values in order (uniform(a, b) = a + (b-a)*r)."""

    def __init__(self, *values: float) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0) if self.values else 0.5


def probe(addr: str, mac: str = OTHER) -> ArpPacket:
    return ArpPacket.probe(mac, addr)


def announce(addr: str, mac: str = OTHER) -> ArpPacket:
    return ArpPacket.announcement(mac, addr)


def reply(addr: str, mac: str = OTHER) -> ArpPacket:
    return ArpPacket(REPLY, mac, addr, MAC, "0.0.0.0", mac)


def run_to_bound(claim: Claim, start: float) -> float:
    """Start and fire every deadline until BOUND; return the time of the Bind."""
    claim.start(start)
    bound_at = None
    while (deadline := claim.next_deadline()) is not None:
        claim.handle_timer(deadline)
        if any(isinstance(a, Bind) for a in claim.pop_actions()):
            bound_at = deadline
    assert claim.state is ClaimState.BOUND
    return bound_at


def test_clean_claim_exact_timeline():
    rng = ScriptedRandom(0.5, 0.25, 0.75)  # wait 0.5; probe gaps 1.25 and 1.75
    c = Claim(MAC, rng=rng, timers=T)
    first = first_candidate(MAC)
    c.start(100.0)
    assert (c.state, c.candidate, c.address, c.next_deadline()) == (ClaimState.WAIT_PROBE, first, None, 100.5)
    assert c.pop_actions() == []

    c.handle_timer(100.4)  # early wake-up: nothing happens
    assert c.state is ClaimState.WAIT_PROBE and c.pop_actions() == []

    expected = [
        (100.5, ClaimState.PROBING, 101.75, [SendArp(ArpPacket.probe(MAC, first))]),
        (101.75, ClaimState.PROBING, 103.5, [SendArp(ArpPacket.probe(MAC, first))]),
        (103.5, ClaimState.WAIT_ANNOUNCE, 105.5, [SendArp(ArpPacket.probe(MAC, first))]),
        (105.5, ClaimState.ANNOUNCING, 107.5, [SendArp(ArpPacket.announcement(MAC, first)), Bind(first)]),
        (107.5, ClaimState.BOUND, None, [SendArp(ArpPacket.announcement(MAC, first))]),
    ]
    for now, state, deadline, actions in expected:
        c.handle_timer(now)
        assert (c.state, c.next_deadline(), c.pop_actions()) == (state, deadline, actions), now
    assert c.address == first


def test_probe_and_announcement_fields():
    p, a = ArpPacket.probe(MAC, "169.254.9.9"), ArpPacket.announcement(MAC, "169.254.9.9")
    # RFC 3927 2.2.1: SPA 0, SHA ours, THA zero; 2.4: SPA = TPA = the address.
    assert (p.op, p.sha, p.spa, p.tha, p.tpa, p.src) == (REQUEST, MAC, "0.0.0.0", ZERO_MAC, "169.254.9.9", MAC)
    assert (a.op, a.spa, a.tpa, a.tha) == (REQUEST, "169.254.9.9", "169.254.9.9", ZERO_MAC)
    assert p.is_probe and not p.is_announcement and a.is_announcement and not a.is_probe


@pytest.mark.parametrize("when", ["wait", "probing", "wait-announce"])
@pytest.mark.parametrize("kind", ["reply-from-candidate", "announce-from-candidate", "simultaneous-probe"])
def test_conflict_while_probing_picks_new_candidate(when, kind):
    rng = ScriptedRandom(0.5, 0.5, 0.5, 0.25)
    c = Claim(MAC, rng=rng, timers=T)
    c.start(0.0)
    first = c.candidate
    now = {"wait": 0.2, "probing": 0.5, "wait-announce": 3.5}[when]
    for deadline in (0.5, 2.0, 3.5):  # fire timers up to `now`
        if deadline <= now:
            c.handle_timer(deadline)
    c.pop_actions()
    pkt = {"reply-from-candidate": reply(first), "announce-from-candidate": announce(first),
           "simultaneous-probe": probe(first)}[kind]
    c.handle_arp(pkt, now + 0.1)
    assert c.state is ClaimState.WAIT_PROBE
    assert c.candidate != first and c.conflicts == 1 and c.address is None
    assert c.pop_actions() == []  # nothing was bound, nothing to undo
    # The process repeats with a fresh 0..PROBE_WAIT wait, drawn from the next scripted
    # value: 0.5 after the start or one probe gap, 0.25 after both gaps were drawn.
    wait = {"wait": 0.5, "probing": 0.5, "wait-announce": 0.25}[when] * T.PROBE_WAIT
    assert c.next_deadline() == pytest.approx(now + 0.1 + wait)


@pytest.mark.parametrize("pkt", [
    ArpPacket.probe(MAC, "169.254.1.1"),          # our own probe echoed (any address)
    ArpPacket(REQUEST, OTHER, "169.254.7.7", ZERO_MAC, "169.254.8.8", OTHER),  # unrelated
    ArpPacket(REQUEST, OTHER, "0.0.0.0", ZERO_MAC, "169.254.8.8", "02:00:00:00:00:42"),  # SHA != source
])
def test_unrelated_and_own_packets_are_ignored_while_probing(pkt):
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    c.start(0.0)
    before = (c.state, c.candidate, c.next_deadline())
    c.handle_arp(pkt, 0.1)
    assert (c.state, c.candidate, c.next_deadline(), c.conflicts) == before + (0,)


def test_own_echo_of_candidate_is_not_a_conflict():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    c.start(0.0)
    c.handle_arp(ArpPacket.probe(MAC, c.candidate), 0.1)
    assert c.conflicts == 0 and c.state is ClaimState.WAIT_PROBE


def test_rate_limit_after_max_conflicts():
    c = Claim(MAC, rng=ScriptedRandom(*[0.5] * 40), timers=T)
    c.start(0.0)
    now = 0.0
    seen = {c.candidate}
    for n in range(1, T.MAX_CONFLICTS + 1):
        now += 0.25
        c.handle_arp(announce(c.candidate), now)
        assert c.conflicts == n and c.candidate not in seen
        seen.add(c.candidate)
        if n < T.MAX_CONFLICTS:
            assert c.next_deadline() == now + 0.5  # plain 0..PROBE_WAIT wait
        else:
            # RFC 3927 2.2.1: at most one new address per RATE_LIMIT_INTERVAL from here on.
            assert c.next_deadline() == now + T.RATE_LIMIT_INTERVAL + 0.5
    # Another conflict during the rate-limited wait: still limited.
    c.handle_arp(announce(c.candidate), now + 1.0)
    assert c.next_deadline() == now + 1.0 + T.RATE_LIMIT_INTERVAL + 0.5
    # Probing finally succeeds: the counter restarts with the bound address.
    while (deadline := c.next_deadline()) is not None:
        c.handle_timer(deadline)
    assert c.state is ClaimState.BOUND and c.conflicts == 0


def test_defend_once_then_surrender_within_defend_interval():
    c = Claim(MAC, rng=ScriptedRandom(*[0.5] * 10), timers=T)
    run_to_bound(c, 0.0)
    addr = c.address
    # First conflicting ARP (SPA = ours, SHA not ours): RFC 3927 2.5(b) defend once.
    c.handle_arp(announce(addr), 20.0)
    assert c.pop_actions() == [SendArp(ArpPacket.announcement(MAC, addr))]
    assert (c.state, c.address, c.next_deadline()) == (ClaimState.BOUND, addr, None)
    # Second within DEFEND_INTERVAL: stop using it, pick another, start over.
    c.handle_arp(reply(addr), 20.0 + T.DEFEND_INTERVAL - 0.001)
    assert c.pop_actions() == [Unbind(addr)]
    assert c.state is ClaimState.WAIT_PROBE and c.address is None
    assert c.candidate != addr and c.conflicts == 1
    assert c.next_deadline() == pytest.approx(20.0 + T.DEFEND_INTERVAL - 0.001 + 0.5)


def test_defence_holds_when_conflicts_are_defend_interval_apart():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    run_to_bound(c, 0.0)
    addr = c.address
    for now in (20.0, 20.0 + T.DEFEND_INTERVAL, 20.0 + 2 * T.DEFEND_INTERVAL + 0.5):
        c.handle_arp(announce(addr), now)
        assert c.pop_actions() == [SendArp(ArpPacket.announcement(MAC, addr))], now
        assert c.state is ClaimState.BOUND and c.address == addr
    # ...and a conflict 1 s after the last defence makes it give up.
    c.handle_arp(announce(addr), 20.0 + 2 * T.DEFEND_INTERVAL + 1.5)
    assert c.pop_actions() == [Unbind(addr)] and c.address is None


def test_conflict_while_announcing_defends_and_keeps_schedule():
    c = Claim(MAC, rng=ScriptedRandom(0.0, 0.0, 0.0), timers=T)  # probes at 0, 1, 2; announce at 4
    c.start(0.0)
    for t in (0.0, 1.0, 2.0, 4.0):
        c.handle_timer(t)
    addr = c.address
    assert c.state is ClaimState.ANNOUNCING and c.next_deadline() == 6.0
    c.pop_actions()
    c.handle_arp(announce(addr), 5.0)
    assert c.pop_actions() == [SendArp(ArpPacket.announcement(MAC, addr))]
    assert c.state is ClaimState.ANNOUNCING and c.next_deadline() == 6.0
    c.handle_timer(6.0)
    assert c.state is ClaimState.BOUND


def test_probe_for_bound_address_gets_broadcast_reply():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    run_to_bound(c, 0.0)
    addr = c.address
    p = probe(addr)
    c.handle_arp(p, 30.0)
    assert c.pop_actions() == [SendArp(ArpPacket.reply(MAC, addr, p))]
    assert c.state is ClaimState.BOUND and c.conflicts == 0  # a probe is not a conflict once bound


def test_link_down_then_up_reprobes_same_address():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    run_to_bound(c, 0.0)
    addr = c.address
    c.link_down(50.0)
    assert c.pop_actions() == [Unbind(addr)]
    assert (c.state, c.address, c.next_deadline()) == (ClaimState.LINK_DOWN, None, None)
    c.handle_arp(announce(addr), 51.0)  # late frame: ignored
    c.link_up(60.0)
    assert c.state is ClaimState.WAIT_PROBE and c.candidate == addr and c.next_deadline() == 60.5
    while (deadline := c.next_deadline()) is not None:
        c.handle_timer(deadline)
    assert c.address == addr


def test_stop_releases_address():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    run_to_bound(c, 0.0)
    addr = c.address
    c.stop(70.0)
    assert c.pop_actions() == [Unbind(addr)] and c.state is ClaimState.STOPPED
    with pytest.raises(IllegalInput):
        c.handle_arp(announce(addr), 71.0)


@pytest.mark.parametrize("call,state_name,event_name", [
    (lambda c: c.handle_timer(0.0), "INIT", "TIMER"),
    (lambda c: c.link_up(0.0), "INIT", "LINK_UP"),
    (lambda c: c.handle_arp(announce("169.254.1.1"), 0.0), "INIT", "ARP"),
])
def test_illegal_input_names_state_and_event(call, state_name, event_name):
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    with pytest.raises(IllegalInput) as err:
        call(c)
    assert err.value.state is ClaimState[state_name] and err.value.event is Event[event_name]
    assert state_name in str(err.value) and event_name in str(err.value)


def test_illegal_inputs_after_start():
    c = Claim(MAC, rng=ScriptedRandom(), timers=T)
    run_to_bound(c, 0.0)
    for call in (lambda: c.start(9.0), lambda: c.handle_timer(9.0), lambda: c.link_up(9.0)):
        with pytest.raises(IllegalInput, match="BOUND"):
            call()


def test_same_mac_same_first_candidate_whatever_the_rng():
    a = Claim(MAC, rng=random.Random(1), timers=T)
    b = Claim(bytes.fromhex(MAC.replace(":", "")), rng=random.Random(2), timers=T.scaled(10))
    a.start(0.0)
    b.start(5.0)
    assert a.candidate == b.candidate == first_candidate(MAC)
    # A rebooted VM (a new Claim) gets the address it held back.
    rebooted = Claim(MAC, rng=random.Random(3))
    run_to_bound(rebooted, 0.0)
    assert rebooted.address == a.candidate
    others = {first_candidate(f"02:00:5e:00:01:{i:02x}") for i in range(50)}
    assert len(others) == 50


def test_timers_table_and_fast_profile():
    fast = T.scaled(10)
    assert not fast.conformant and T.conformant and T.scaled(1) is T
    assert (fast.PROBE_WAIT, fast.PROBE_MIN, fast.PROBE_MAX, fast.ANNOUNCE_WAIT) == (0.1, 0.1, 0.2, 0.2)
    assert (fast.ANNOUNCE_INTERVAL, fast.RATE_LIMIT_INTERVAL, fast.DEFEND_INTERVAL) == (0.2, 6.0, 1.0)
    assert (fast.PROBE_NUM, fast.ANNOUNCE_NUM, fast.MAX_CONFLICTS) == (3, 2, 10)
    assert fast.profile == "fast x10" and T.profile == "rfc"
    with pytest.raises(ValueError):
        T.scaled(0)


def test_scaled_claim_timeline():
    c = Claim(MAC, rng=ScriptedRandom(0.0, 1.0, 1.0), timers=T.scaled(4))
    c.start(0.0)
    times = []
    while (deadline := c.next_deadline()) is not None:
        times.append(deadline)
        c.handle_timer(deadline)
    assert times == [0.0, 0.5, 1.0, 1.5, 2.0]  # probe gaps PROBE_MAX/4, then ANNOUNCE_WAIT/4, ANNOUNCE_INTERVAL/4


def test_transition_table_is_consistent():
    for (state, event), t in TRANSITIONS.items():
        assert callable(getattr(Claim, t.handler)), t.handler
        assert t.targets, (state, event)
    reachable = {ClaimState.INIT} | {s for t in TRANSITIONS.values() for s in t.targets}
    assert reachable == set(ClaimState)
    assert len(transition_rows()) == len(TRANSITIONS)
