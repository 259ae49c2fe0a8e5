"""A link's misbehaviour as netem does it, without the kernel (issue 13): the delay line's model.

Sans-IO: :class:`DelayModel` is fed frames with the time they arrived (:meth:`push`),
says when it next has something to send (:meth:`next_at`) and hands out the frames due
(:meth:`due`); its randomness is an injected :class:`random.Random`. The driver
(:mod:`netsim.runtime.delaylines`) reads the clock and the sockets.

netem's semantics (``net/sched/sch_netem.c``), kept here:

- ``duplicate`` %: the frame is queued twice (the copy goes through the line on its own);
- ``loss`` %: dropped (each copy draws on its own);
- the queue holds at most ``limit`` frames (netem's ``limit``): beyond, a frame is dropped;
- ``corrupt`` %: one random bit flipped (:func:`corrupt`);
- ``reorder`` %: the frame goes at once, the others wait ``latency`` (netem with gap 1);
- ``latency`` +- ``jitter``: a delay drawn uniformly in [latency - jitter, latency + jitter];
  jitter never reorders (a frame is never sent before the one queued ahead of it, as
  netem does once a rate is set): only ``reorder`` does;
- ``rate`` bytes/s: each frame also takes its serialisation time after the previous one.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

ETH_HEADER = 14
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPV6_HEADER = 40
DEFAULT_LIMIT = 10000
"""Frames the line may hold (netem's default is 1000; netsim's netem path uses 10000)."""


@dataclass(frozen=True)
class Impairment:
    """What a line does: ``latency_s`` +- ``jitter_s``, and percentages of ``loss``,
    ``duplicate``, ``reorder`` and ``corrupt``; ``rate`` bytes/s (None: no pacing);
    ``limit`` frames queued at most."""

    latency_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    corrupt: float = 0.0
    rate: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass
class Counters:
    """What a line did since it was made."""

    received: int = 0
    sent: int = 0
    lost: int = 0
    overflowed: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0


def corrupt(frame: bytes, rng: random.Random) -> bytes:
    """``frame`` with one bit flipped where a checksum catches it and the frame still
    reaches its host (the MAC addresses stay, so the bridge and the VM take it): in an
    IPv4 header, whose checksum every receiver computes (a veth marks a frame without a
    checksum offload as already verified, so a flipped payload bit would reach the
    application unnoticed; any one bit flipped changes the header's sum, RFC 1071); in an
    IPv6 payload (the transport's checksum covers it); else anywhere past the Ethernet header."""
    start, end = ETH_HEADER, len(frame)
    if len(frame) > ETH_HEADER:
        ethertype = int.from_bytes(frame[12:14], "big")
        if ethertype == ETH_P_IP:
            end = min(len(frame), ETH_HEADER + 4 * (frame[ETH_HEADER] & 0x0F))
        elif ethertype == ETH_P_IPV6 and ETH_HEADER + IPV6_HEADER < len(frame):
            start = ETH_HEADER + IPV6_HEADER
    if start >= end:
        return frame
    at = rng.randrange(start, end)
    out = bytearray(frame)
    out[at] ^= 1 << rng.randrange(8)
    return bytes(out)


@dataclass
class DelayModel:
    """One direction of one link: frames in with their arrival time, frames out when due."""

    impairment: Impairment
    rng: random.Random
    counters: Counters = field(default_factory=Counters)

    def __post_init__(self) -> None:
        self._queue: list[tuple[float, int, object]] = []  # (send at, order, frame)
        self._order = 0
        self._last_delayed = 0.0  # when the last delayed frame goes: jitter does not pass it
        self._line_free = 0.0  # when the rate's serialisation of the last frame ends

    def __len__(self) -> int:
        return len(self._queue)

    def _chance(self, pct: float) -> bool:
        return pct > 0 and (pct >= 100 or self.rng.random() * 100 < pct)

    def push(self, frame: bytes, now: float, *, corrupter=corrupt) -> int:
        """Take a frame that arrived at ``now``; returns how many copies were queued (0:
        dropped). ``corrupter(frame, rng)`` flips the bit (a driver passes its own when
        its frames carry more than Ethernet, e.g. a virtio header; None: drop the frame)."""
        imp = self.impairment
        self.counters.received += 1
        copies = 2 if self._chance(imp.duplicate) else 1
        self.counters.duplicated += copies - 1
        queued = 0
        for _ in range(copies):
            if self._chance(imp.loss):
                self.counters.lost += 1
                continue
            if len(self._queue) >= imp.limit:
                self.counters.overflowed += 1
                continue
            data: bytes | None = frame
            if self._chance(imp.corrupt):
                data = corrupter(frame, self.rng)
                self.counters.corrupted += 1
                if data is None:  # the corrupter could not flip a bit the receiver sees: lost
                    continue
            self._enqueue(data, now)
            queued += 1
        return queued

    def _enqueue(self, frame: bytes, now: float) -> None:
        imp = self.impairment
        if imp.reorder and self._chance(imp.reorder):
            # netem: a reordered frame is put at the head and goes now, ahead of the delayed.
            self.counters.reordered += 1
            at = now
        else:
            delay = imp.latency_s + (self.rng.uniform(-imp.jitter_s, imp.jitter_s) if imp.jitter_s else 0.0)
            at = max(now + max(0.0, delay), self._last_delayed)
            self._last_delayed = at
        if imp.rate:
            at = max(at, self._line_free) + len(frame) / imp.rate
            self._line_free = at
        self._order += 1
        heapq.heappush(self._queue, (at, self._order, frame))

    def next_at(self) -> float | None:
        """When the next frame is due (None: nothing queued)."""
        return self._queue[0][0] if self._queue else None

    def due(self, now: float) -> list[bytes]:
        """The frames to send at ``now``, in order (taken out of the queue)."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        self.counters.sent += len(out)
        return out
