"""The request parser's memory of heads it parsed (sans-IO): parse a head once, not per request.

Pollers send the same head again and again (same path, same headers): parsing it once and
looking it up by its exact bytes halves the per-request cost. A head is kept the second
time it is seen (its hash only is remembered the first time): one that carries a value new
on every request would only push the pollers' heads out, and keep a few objects alive per
request for the garbage collector to walk.

Such a value (an IMDSv2 token minted for one GET) usually comes last. So a head is also
known by its *prefix*, every line but its last: a head whose prefix was parsed before
(seen twice, as above) is that prefix's parse plus its last field, checked by the field
regex alone, as long as that field is none that the parser reads (Host, Connection,
Content-Length, Transfer-Encoding, Expect: they change what the head means, and take the
full parse). The limits on the header block are checked on the whole head, as the full
parse does. Bounded: each table is emptied when full.
"""

from __future__ import annotations

import re
from typing import Callable, Generic, NamedTuple, TypeVar

from netsim_imds.request import Headers

READ_BY_THE_PARSER = frozenset({"host", "connection", "content-length", "transfer-encoding", "expect"})
"""Fields whose value changes what a head means: a head ending with one is parsed in full."""

SIZE = 1024
"""Heads (and prefixes) kept."""
SEEN_SIZE = 4096
"""Hashes of heads (and prefixes) seen once, remembered."""
LONGEST = 2048
"""Longest head (bytes) kept."""


H = TypeVar("H", bound=tuple)


class _Prefix(NamedTuple):
    head: tuple  # the prefix's own parse (an http._Head)
    fields: int  # its header lines


class HeadCache(Generic[H]):
    """Heads by their bytes, and by their prefix; ``parse(raw)`` is the full parse (it raises
    the peer's errors), ``field`` the regex that matches one field line without its line end
    (groups: name, value), ``limits`` the header block's (bytes, fields)."""

    def __init__(self, parse: Callable[[bytes], H], field: re.Pattern[str], limits: tuple[int, int]) -> None:
        self._parse, self._field = parse, field
        self._max_block, self._max_fields = limits
        self._heads: dict[bytes, H] = {}
        self._prefixes: dict[bytes, _Prefix | None] = {}  # None: that prefix is no head of its own
        self._seen: set[int] = set()

    def head(self, raw: bytes) -> H:
        """The parse of ``raw`` (a head without its final empty line)."""
        head = self._heads.get(raw)
        if head is not None:
            return head
        cut = raw.rfind(b"\r\n")
        # Not after a bare CR: "x\r\r\n" ends no line of a field, its prefix alone would.
        prefix = raw[:cut] if cut > 0 and raw[cut - 1] != 13 and len(raw) <= LONGEST else None
        if prefix is not None and (known := self._prefixes.get(prefix)) is not None:
            head = self._extend(raw, cut, known)
            if head is not None:
                return head
        head = self._parse(raw)
        if len(raw) <= LONGEST:
            if self._second(raw):
                if len(self._heads) >= SIZE:
                    self._heads.clear()
                self._heads[raw] = head
            if prefix is not None and prefix not in self._prefixes and self._second(prefix):
                self._learn(prefix)
        return head

    def _second(self, raw: bytes) -> bool:
        """Whether ``raw`` was seen before (remembered by its hash; the bytes keep theirs)."""
        key = hash(raw)
        if key in self._seen:
            return True
        if len(self._seen) >= SEEN_SIZE:
            self._seen.clear()
        self._seen.add(key)
        return False

    def _learn(self, prefix: bytes) -> None:
        try:
            known: _Prefix | None = _Prefix(self._parse(prefix), prefix.count(b"\n"))
        except Exception:  # no head of its own (e.g. HTTP/1.1 without Host): never extended
            known = None
        if len(self._prefixes) >= SIZE:
            self._prefixes.clear()
        self._prefixes[prefix] = known

    def _extend(self, raw: bytes, cut: int, known: _Prefix) -> H | None:
        """``known``'s head plus the last line of ``raw``, or None: take the full parse."""
        match = self._field.fullmatch(raw[cut + 2:].decode("latin-1"))
        if match is None:
            return None
        name, value = match.groups()
        lower = name.lower()
        if lower in READ_BY_THE_PARSER:
            return None
        # The full parse's limits, on the whole block: the bytes after the request line
        # (plus one), and one more field than the prefix.
        first = raw.find(b"\n")
        if len(raw) - first > self._max_block + 1 or known.fields + 1 > self._max_fields:
            return None
        base = known.head
        headers = base.headers  # type: ignore[attr-defined]
        extended = Headers._make(headers.items + ((name, value),), headers._lower + (lower,))
        return base._replace(headers=extended)  # type: ignore[attr-defined,return-value]
