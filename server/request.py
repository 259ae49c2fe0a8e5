"""The request value types of the metadata server's HTTP layer (frozen, sans-IO).

:class:`Request` is what the parser (:mod:`netsim_imds.http`) hands out and what every
flavor's ``handle`` receives; :class:`Headers` its header fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

@dataclass(frozen=True)
class Headers:
    """Request header fields in arrival order; lookup ignores case, duplicates are kept.

    ``items`` holds ``(name, value)`` pairs as received (names keep their case, values
    are stripped of surrounding whitespace and decoded as ISO-8859-1).
    """

    items: tuple[tuple[str, str], ...] = ()
    _lower: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", tuple(n.lower() for n, _ in self.items))

    @classmethod
    def _make(cls, items: tuple[tuple[str, str], ...], lower: tuple[str, ...]) -> "Headers":
        # The parser already lower-cased the names; skip __init__'s per-field setattr.
        obj = object.__new__(cls)
        obj.__dict__.update(items=items, _lower=lower)
        return obj

    def get(self, name: str, default: str | None = None) -> str | None:
        """Value of the first field called ``name`` (any case), or ``default``."""
        key = name.lower()
        for i, n in enumerate(self._lower):
            if n == key:
                return self.items[i][1]
        return default

    def get_all(self, name: str) -> list[str]:
        """Values of every field called ``name`` (any case), in arrival order."""
        key = name.lower()
        return [self.items[i][1] for i, n in enumerate(self._lower) if n == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Request:
    """One complete HTTP request.

    ``target`` is the request-target as sent; ``path`` its path part (not
    percent-decoded); ``query`` the decoded ``(name, value)`` pairs in order, duplicates
    kept; ``keep_alive`` whether the connection may carry another request afterwards.
    """

    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Headers
    body: bytes = b""
    keep_alive: bool = True
    http_version: str = "1.1"


def make_request(method: str, target: str, path: str, query: tuple[tuple[str, str], ...], headers: Headers,
                 body: bytes, keep_alive: bool, version: str) -> Request:
    """A :class:`Request` built without the frozen dataclass's ``__init__`` (the parser's hot path)."""
    # Same object as Request(...), without the frozen dataclass's per-field
    # object.__setattr__ (about 1 us per request on the hot path).
    obj = object.__new__(Request)
    obj.__dict__.update(method=method, target=target, path=path, query=query, headers=headers,
                        body=body, keep_alive=keep_alive, http_version=version)
    return obj
