"""IMDSv2 session tokens (sans-IO): minted for one VM, valid for a TTL, checked on each GET.

A token is stateless: ``base64url(expiry_ms (8 bytes) + HMAC-SHA256(secret, vm_id +
expiry)[:24])``. It is bound to the VM (its ``vm_id`` is in the MAC), expires, and any
number of them may be live at once, as AWS's are (reference section 3.1); nothing is
stored per token, so a flood of PUTs costs no memory. The secret is the node's (each
flavor instance draws its own), so a token of one node is refused by another, as a
token of one instance is by another instance. AWS's own token format is not documented.

The tokens minted last are also kept, at most :data:`RECENT` of them, so that a GET with
one (the common case: a client PUTs, then GETs) is checked without computing its MAC again;
the cache is emptied when full, so it bounds memory as the stateless check does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct

MIN_TTL = 1
MAX_TTL = 21600
"""``X-aws-ec2-metadata-token-ttl-seconds`` must be 1..21600 (six hours)."""

RECENT = 16384
"""Tokens remembered after minting (a dict lookup instead of an HMAC per GET)."""

_RAW = 8 + 24
_EXPIRY = struct.Struct(">Q")
_BLOCK = 64  # SHA-256's block size
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
TOKEN_LENGTH = len(base64.urlsafe_b64encode(b"\0" * _RAW))
"""Characters of a token (44)."""


class TokenIssuer:
    """Mints and checks the IMDSv2 tokens of one node."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._recent: dict[str, tuple[str, int]] = {}  # token -> (vm_id, expiry_ms)
        # HMAC (RFC 2104) with its two keyed SHA-256 states computed once: each MAC then
        # copies them (half of hmac.digest's cost, which sets the key up on every call).
        key = self._secret if len(self._secret) <= _BLOCK else hashlib.sha256(self._secret).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def _mac(self, vm_id: str, expiry_ms: int) -> bytes:
        inner = self._inner.copy()
        inner.update(vm_id.encode() + _EXPIRY.pack(expiry_ms))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:24]  # = hmac.digest(secret, message, "sha256")[:24]

    def mint(self, vm_id: str, ttl: int, now: float) -> str:
        """A token for VM ``vm_id`` valid ``ttl`` seconds from ``now``."""
        expiry_ms = int((now + ttl) * 1000)
        token = base64.urlsafe_b64encode(_EXPIRY.pack(expiry_ms) + self._mac(vm_id, expiry_ms)).decode()
        if len(self._recent) >= RECENT:
            self._recent.clear()
        self._recent[token] = (vm_id, expiry_ms)
        return token

    def valid(self, token: str, vm_id: str, now: float) -> bool:
        """Whether ``token`` was minted here for ``vm_id`` and has not expired at ``now``."""
        if (known := self._recent.get(token)) is not None:
            return known[0] == vm_id and now * 1000 < known[1]
        if len(token) != TOKEN_LENGTH:
            return False
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii"))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return False
        if len(raw) != _RAW:
            return False
        (expiry_ms,) = _EXPIRY.unpack(raw[:8])
        return hmac.compare_digest(raw[8:], self._mac(vm_id, expiry_ms)) and now * 1000 < expiry_ms


def parse_ttl(value: str | None) -> int | None:
    """The TTL of a token PUT's header, or None when missing, not an integer or out of range."""
    if value is None or not value.strip().isdigit() or len(value.strip()) > 6:
        return None
    ttl = int(value)
    return ttl if MIN_TTL <= ttl <= MAX_TTL else None
