"""Choosing candidate IPv4 link-local addresses (RFC 3927 section 2.1).

"When a host wishes to configure an IPv4 Link-Local address, it selects an address
using a pseudo-random number generator with a uniform distribution in the range from
169.254.1.0 to 169.254.254.255 inclusive." The first and last 256 addresses are
reserved. The generator "should" be seeded from something persistent such as the MAC,
so that a host that restarts usually gets the address it had; here it is a
``random.Random`` seeded from a hash of the MAC, so the same MAC yields the same
sequence of candidates in every process and on every run.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
from collections.abc import Iterable

from netsim.linklocal.errors import LinkLocalError
from netsim_imds.address import METADATA_ADDRESS  # the node's metadata service: never chosen by a VM

FIRST = int(ipaddress.IPv4Address("169.254.1.0"))
"""Lowest address a host may choose (169.254.0.0/24 is reserved)."""
LAST = int(ipaddress.IPv4Address("169.254.254.255"))
"""Highest address a host may choose (169.254.255.0/24 is reserved)."""
LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
"""RFC 3927's prefix."""
_SEED_KEY = b"netsim.linklocal/rfc3927-seed/v1"


def normalize_mac(mac: bytes | str) -> tuple[bytes, str]:
    """Return ``mac`` as (6 bytes, ``aa:bb:cc:dd:ee:ff``); raise LinkLocalError if invalid."""
    if isinstance(mac, str):
        parts = mac.replace("-", ":").split(":")
        try:
            raw = bytes(int(p, 16) for p in parts) if len(parts) == 6 and all(len(p) == 2 for p in parts) else b""
        except ValueError:
            raw = b""
    else:
        raw = bytes(mac)
    if len(raw) != 6:
        raise LinkLocalError(f"{mac!r} is not a 48-bit MAC address; pass 6 bytes or 'aa:bb:cc:dd:ee:ff'")
    return raw, ":".join(f"{b:02x}" for b in raw)


def seed_from_mac(mac: bytes | str) -> int:
    """A stable 64-bit seed derived from a MAC (the same in every process and run)."""
    raw, _ = normalize_mac(mac)
    return int.from_bytes(hashlib.blake2b(raw, key=_SEED_KEY, digest_size=8).digest(), "big")


def is_selectable(address: str) -> bool:
    """True if RFC 3927 section 2.1 lets a host choose ``address`` (ignoring local reservations)."""
    try:
        value = int(ipaddress.IPv4Address(address))
    except ValueError:
        return False
    return FIRST <= value <= LAST and address != METADATA_ADDRESS


def normalize_reserved(reserved: Iterable[str]) -> frozenset[int]:
    """Parse a set of dotted-quad addresses; raise LinkLocalError naming the first bad one."""
    out = set()
    for item in reserved:
        try:
            out.add(int(ipaddress.IPv4Address(item)))
        except ValueError:
            raise LinkLocalError(f"reserved address {item!r} is not an IPv4 address") from None
    return frozenset(out)


@functools.lru_cache(maxsize=64)
def _excluded(reserved: frozenset[str]) -> frozenset[int]:
    # Cached: a driver gives every VM the same reserved set; parse it once, share it.
    out = normalize_reserved(reserved) | {int(ipaddress.IPv4Address(METADATA_ADDRESS))}
    if sum(FIRST <= a <= LAST for a in out) >= LAST - FIRST:
        raise LinkLocalError("the reserved set leaves no link-local address to choose")
    return out


class Candidates:
    """The sequence of candidate addresses for one interface.

    Uniform over 169.254.1.0-169.254.254.255, never 169.254.169.254, never an address in
    ``reserved``, and never the candidate that just failed. The sequence depends only
    on the MAC and ``reserved``: :meth:`restart` goes back to its first element.
    """

    __slots__ = ("_seed", "_rng", "_reserved", "_previous")

    def __init__(self, mac: bytes | str, reserved: Iterable[str] = frozenset()) -> None:
        self._seed = seed_from_mac(mac)
        self._reserved = _excluded(frozenset(reserved))
        self._rng = random.Random(self._seed)
        self._previous: int | None = None

    def restart(self) -> None:
        """Start the sequence again from its first candidate (as after a reboot)."""
        self._rng = random.Random(self._seed)
        self._previous = None

    def next(self) -> str:
        """The next candidate, different from the previous one."""
        while True:
            # randint is inclusive at both ends: uniform over the 0xFE00 addresses.
            value = self._rng.randint(FIRST, LAST)
            if value not in self._reserved and value != self._previous:
                self._previous = value
                return str(ipaddress.IPv4Address(value))


def first_candidate(mac: bytes | str, reserved: Iterable[str] = frozenset()) -> str:
    """The first address a host with ``mac`` will try (what a rebooted VM gets back)."""
    return Candidates(mac, reserved).next()
