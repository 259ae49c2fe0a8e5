"""The RFC 3927 claim of one interface, as a sans-IO state machine.

A :class:`Claim` never reads a clock, sleeps or touches a socket. Every input carries
``now`` (seconds on any monotonic scale), :meth:`Claim.next_deadline` says when it next
wants :meth:`Claim.handle_timer`, and what it wants done comes out of
:meth:`Claim.pop_actions` as frozen values: :class:`SendArp`, :class:`Bind`,
:class:`Unbind`. Randomness comes from the ``rng`` passed in (timing jitter) and from
a generator seeded by the MAC (addresses, see :mod:`netsim.linklocal.candidates`).

All transitions live in :data:`TRANSITIONS`, one table keyed by (state, event); an
input with no entry raises :class:`IllegalInput` naming both. A conflict on the wire is
not an error: it is an ``ARP`` event the table handles.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Union

from netsim.linklocal.arp import ArpPacket
from netsim.linklocal.candidates import Candidates, normalize_mac
from netsim.linklocal.constants import RFC_TIMERS, Timers
from netsim.linklocal.errors import IllegalInput


class ClaimState(enum.Enum):
    """Where a claim stands. ANNOUNCING and BOUND hold a usable address."""

    INIT = "init"                    # created, not started
    WAIT_PROBE = "wait-probe"        # random delay (or rate limit) before the first probe
    PROBING = "probing"              # probes sent, more to send
    WAIT_ANNOUNCE = "wait-announce"  # last probe sent, ANNOUNCE_WAIT running
    ANNOUNCING = "announcing"        # bound; announcements still to send
    BOUND = "bound"                  # bound and defending
    LINK_DOWN = "link-down"          # link down: nothing sent, address given back
    STOPPED = "stopped"              # removed for good


class Event(enum.Enum):
    """The inputs of a claim."""

    START = "start"
    TIMER = "timer"
    ARP = "arp"
    LINK_DOWN = "link-down"
    LINK_UP = "link-up"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class SendArp:
    """Broadcast ``packet`` on the interface."""

    packet: ArpPacket


@dataclass(frozen=True, slots=True)
class Bind:
    """Configure ``address``/16 on the interface: the claim owns it now."""

    address: str


@dataclass(frozen=True, slots=True)
class Unbind:
    """Remove ``address`` from the interface: the claim gave it up."""

    address: str


Action = Union[SendArp, Bind, Unbind]
"""Anything :meth:`Claim.pop_actions` returns."""


@dataclass(frozen=True)
class Transition:
    """One row of the table: the handler method and the states it may lead to."""

    handler: str
    targets: frozenset[ClaimState]


def _t(handler: str, *targets: ClaimState) -> Transition:
    return Transition(handler, frozenset(targets))


_S, _E = ClaimState, Event
_CLAIMING = (_S.WAIT_PROBE, _S.PROBING, _S.WAIT_ANNOUNCE)
_ACTIVE = _CLAIMING + (_S.ANNOUNCING, _S.BOUND)

TRANSITIONS: dict[tuple[ClaimState, Event], Transition] = {
    (_S.INIT, _E.START): _t("_start", _S.WAIT_PROBE),
    (_S.WAIT_PROBE, _E.TIMER): _t("_probe", _S.PROBING, _S.WAIT_ANNOUNCE),
    (_S.PROBING, _E.TIMER): _t("_probe", _S.PROBING, _S.WAIT_ANNOUNCE),
    (_S.WAIT_ANNOUNCE, _E.TIMER): _t("_announce", _S.ANNOUNCING, _S.BOUND),
    (_S.ANNOUNCING, _E.TIMER): _t("_announce", _S.ANNOUNCING, _S.BOUND),
    **{(s, _E.ARP): _t("_arp_claiming", s, _S.WAIT_PROBE) for s in _CLAIMING},
    (_S.ANNOUNCING, _E.ARP): _t("_arp_bound", _S.ANNOUNCING, _S.WAIT_PROBE),
    (_S.BOUND, _E.ARP): _t("_arp_bound", _S.BOUND, _S.WAIT_PROBE),
    **{(s, _E.LINK_DOWN): _t("_link_down", _S.LINK_DOWN) for s in _ACTIVE},
    (_S.LINK_DOWN, _E.ARP): _t("_ignore", _S.LINK_DOWN),
    (_S.LINK_DOWN, _E.LINK_UP): _t("_link_up", _S.WAIT_PROBE),
    **{(s, _E.STOP): _t("_stop", _S.STOPPED) for s in (_S.INIT, _S.LINK_DOWN) + _ACTIVE},
}
"""Every legal (state, event) and what it does; anything else raises IllegalInput."""

_HINTS = {
    _E.START: "start() is called once, on a new Claim",
    _E.TIMER: "this state has no timer; call handle_timer() only when next_deadline() is not None",
    _E.ARP: "feed ARP only to a started claim whose link is up or down, never after stop()",
    _E.LINK_DOWN: "the link is already down (or the claim is not started)",
    _E.LINK_UP: "link_up() follows link_down(); the link is already up",
    _E.STOP: "the claim is already stopped",
}


class Claim:
    """RFC 3927 sections 2.1-2.5 for one interface: choose, probe, announce, defend.

    ``mac`` is the interface's MAC (bytes or ``aa:bb:..``); ``rng`` gives the timing
    jitter; ``timers`` the constants (see :mod:`netsim.linklocal.constants`);
    ``reserved`` addresses are never chosen (nor 169.254.169.254, nor the two reserved
    /24s). Defence follows section 2.5(b): defend once, give up on a second conflict
    within DEFEND_INTERVAL.
    """

    __slots__ = ("_mac", "_rng", "_timers", "_candidates", "_state", "_candidate", "_address",
                 "_deadline", "_probes", "_announces", "_conflicts", "_last_conflict", "_actions")

    def __init__(self, mac: bytes | str, *, rng: random.Random, timers: Timers = RFC_TIMERS,
                 reserved: frozenset[str] = frozenset()) -> None:
        _, self._mac = normalize_mac(mac)
        self._rng = rng
        self._timers = timers
        self._candidates = Candidates(self._mac, reserved)
        self._state = ClaimState.INIT
        self._candidate: str | None = None
        self._address: str | None = None
        self._deadline: float | None = None
        self._probes = 0
        self._announces = 0
        self._conflicts = 0
        self._last_conflict: float | None = None
        self._actions: list[Action] = []

    # -- what the caller reads --------------------------------------------------------

    @property
    def state(self) -> ClaimState:
        """The current state."""
        return self._state

    @property
    def mac(self) -> str:
        """The interface MAC, ``aa:bb:cc:dd:ee:ff``."""
        return self._mac

    @property
    def address(self) -> str | None:
        """The address the interface holds (after the first announcement), else None."""
        return self._address

    @property
    def candidate(self) -> str | None:
        """The address being probed, announced or held; None before start."""
        return self._candidate

    @property
    def conflicts(self) -> int:
        """Conflicts met since the last successful bind (drives the rate limit)."""
        return self._conflicts

    @property
    def timers(self) -> Timers:
        """The constants this claim runs with."""
        return self._timers

    def next_deadline(self) -> float | None:
        """Absolute time at which :meth:`handle_timer` is due, or None if no timer runs."""
        return self._deadline

    def pop_actions(self) -> list[Action]:
        """Return and forget the actions produced so far, in order."""
        out, self._actions = self._actions, []
        return out

    # -- inputs -----------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Begin claiming: choose the first candidate and wait 0..PROBE_WAIT."""
        self._dispatch(Event.START, now, None)

    def handle_timer(self, now: float) -> None:
        """Run the timer if ``now`` has reached :meth:`next_deadline`; earlier calls do nothing."""
        self._lookup(Event.TIMER)
        if self._deadline is not None and now >= self._deadline:
            self._dispatch(Event.TIMER, now, None)

    def handle_arp(self, pkt: ArpPacket, now: float) -> None:
        """Consider one received ARP packet (own packets and bad ones are ignored)."""
        self._dispatch(Event.ARP, now, pkt)

    def link_down(self, now: float) -> None:
        """The link went down: stop sending and give the address back (it is re-probed on link up)."""
        self._dispatch(Event.LINK_DOWN, now, None)

    def link_up(self, now: float) -> None:
        """The link came back: probe again, for the same address first."""
        self._dispatch(Event.LINK_UP, now, None)

    def stop(self, now: float) -> None:
        """Stop for good, giving the address back."""
        self._dispatch(Event.STOP, now, None)

    # -- the table --------------------------------------------------------------------

    def _lookup(self, event: Event) -> Transition:
        try:
            return TRANSITIONS[(self._state, event)]
        except KeyError:
            raise IllegalInput(self._state, event, _HINTS[event]) from None

    def _dispatch(self, event: Event, now: float, arg: ArpPacket | None) -> None:
        transition = self._lookup(event)
        nxt = getattr(self, transition.handler)(now, arg)
        if nxt not in transition.targets:  # a bug here, not the caller's
            raise AssertionError(f"{transition.handler} led {self._state} -> {nxt}, not in the table")
        self._state = nxt

    # -- handlers: each returns the next state ------------------------------------------

    def _start(self, now: float, _: object) -> ClaimState:
        """Choose the first candidate and wait before probing."""
        self._candidate = self._candidates.next()
        return self._wait_probe(now)

    def _wait_probe(self, now: float) -> ClaimState:
        t = self._timers
        self._probes = self._announces = 0
        # RFC 3927 section 2.2.1: "the host should first wait for a random time
        # interval selected uniformly in the range zero to PROBE_WAIT seconds".
        delay = self._rng.uniform(0, t.PROBE_WAIT)
        if self._conflicts >= t.MAX_CONFLICTS:
            # Section 2.2.1: past MAX_CONFLICTS conflicts, "no more than one new address
            # per RATE_LIMIT_INTERVAL" (section 9: "max conflicts before rate limiting";
            # systemd and dhcpcd also start limiting at the tenth). The PROBE_WAIT jitter
            # still applies so hosts limited together do not probe in step.
            delay += t.RATE_LIMIT_INTERVAL
        self._deadline = now + delay
        return ClaimState.WAIT_PROBE

    def _probe(self, now: float, _: object) -> ClaimState:
        """Send one probe; schedule the next one or the announce wait."""
        t = self._timers
        assert self._candidate is not None
        self._emit(SendArp(ArpPacket.probe(self._mac, self._candidate)))
        self._probes += 1
        if self._probes < t.PROBE_NUM:
            # Section 2.2.1: "PROBE_NUM probe packets, each of these probe packets spaced
            # randomly, PROBE_MIN to PROBE_MAX seconds apart".
            self._deadline = now + self._rng.uniform(t.PROBE_MIN, t.PROBE_MAX)
            return ClaimState.PROBING
        # Conflicts still count "until ANNOUNCE_WAIT seconds after the last probe".
        self._deadline = now + t.ANNOUNCE_WAIT
        return ClaimState.WAIT_ANNOUNCE

    def _announce(self, now: float, _: object) -> ClaimState:
        """Send an announcement; on the first one the address is bound."""
        t = self._timers
        assert self._candidate is not None
        if self._announces == 0:
            # Section 2.4: the host may begin using the address once it has sent the
            # first announcement; the conflict counter restarts with a claimed address.
            self._address = self._candidate
            self._conflicts = 0
            self._last_conflict = None
        self._emit(SendArp(ArpPacket.announcement(self._mac, self._candidate)))
        if self._announces == 0:
            self._emit(Bind(self._candidate))
        self._announces += 1
        if self._announces < t.ANNOUNCE_NUM:
            # Section 2.4: "ANNOUNCE_NUM ARP announcements, spaced ANNOUNCE_INTERVAL seconds apart".
            self._deadline = now + t.ANNOUNCE_INTERVAL
            return ClaimState.ANNOUNCING
        self._deadline = None
        return ClaimState.BOUND

    def _arp_claiming(self, now: float, pkt: ArpPacket) -> ClaimState:
        """While probing: any ARP from the candidate, or another host's probe for it, is a conflict."""
        if pkt.sha == self._mac or pkt.sha != pkt.src:
            return self._state  # our own packet echoed back, or one RFC 5227 section 1.1 drops
        # Section 2.2.1: a conflict is any ARP "(Request *or* Reply)" whose sender IP is
        # the candidate, or "any ARP Probe where the packet's 'target IP address' is the
        # address being probed for" from another hardware address.
        if pkt.spa == self._candidate or (pkt.is_probe and pkt.tpa == self._candidate):
            return self._new_candidate(now)
        return self._state

    def _arp_bound(self, now: float, pkt: ArpPacket) -> ClaimState:
        """While holding the address: defend once, give up on a second conflict within DEFEND_INTERVAL."""
        if pkt.sha == self._mac or pkt.sha != pkt.src or self._address is None:
            return self._state
        if pkt.spa == self._address:
            # Section 2.5: "a conflicting ARP packet" has our address as sender IP and a
            # sender hardware address that is not ours. Option (b): if there was no
            # other conflict in the last DEFEND_INTERVAL seconds, "record the time that
            # the conflicting ARP packet was received, and then broadcast one single
            # ARP announcement"; if there was, the host "MUST immediately cease using
            # this address" and configure a new one.
            last = self._last_conflict
            if last is not None and now - last < self._timers.DEFEND_INTERVAL:
                self._emit(Unbind(self._address))
                self._address = None
                return self._new_candidate(now)
            self._last_conflict = now
            self._emit(SendArp(ArpPacket.announcement(self._mac, self._address)))
        elif pkt.is_probe and pkt.tpa == self._address:
            # Another host probes for our address. The kernel answers with a unicast
            # reply; section 2.5 wants every ARP with a link-local sender address sent
            # to broadcast, so we add a broadcast reply that every prober hears.
            self._emit(SendArp(ArpPacket.reply(self._mac, self._address, pkt)))
        return self._state

    def _new_candidate(self, now: float) -> ClaimState:
        old = self._candidate
        self._conflicts += 1
        self._candidate = self._candidates.next()
        while self._candidate == old:  # after a link flap the generator's "previous" may differ
            self._candidate = self._candidates.next()
        return self._wait_probe(now)

    def _link_down(self, now: float, _: object) -> ClaimState:
        """Stop timers; give the address back but remember it as the next candidate."""
        if self._address is not None:
            self._emit(Unbind(self._address))
            self._address = None
        self._deadline = None
        return ClaimState.LINK_DOWN

    def _link_up(self, now: float, _: object) -> ClaimState:
        """Probe again for the address held before the link went down.

        RFC 5227 section 2.1: a host checks an address again whenever its interface goes
        from inactive to active, since it may now be on another link.
        """
        return self._wait_probe(now)

    def _ignore(self, now: float, _: object) -> ClaimState:
        """Nothing to do (a frame queued before the link went down)."""
        return self._state

    def _stop(self, now: float, _: object) -> ClaimState:
        """Give the address back and stop for good."""
        if self._address is not None:
            self._emit(Unbind(self._address))
            self._address = None
        self._deadline = None
        return ClaimState.STOPPED

    def _emit(self, action: Action) -> None:
        self._actions.append(action)


def transition_rows() -> list[tuple[str, str, str, list[str]]]:
    """(state, event, handler, possible next states) for each table row, for docs and diagrams."""
    return [(s.name, e.name, t.handler, sorted(x.name for x in t.targets))
            for (s, e), t in TRANSITIONS.items()]
