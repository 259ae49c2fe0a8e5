"""The state machine of the request parser (:mod:`netsim_imds.http`), as one table.

As h11's ``_state.py``: the states, the inputs and :data:`TRANSITIONS` are data, and the
docs' diagram is generated from the table (:func:`transitions_as_mermaid`).
"""

from __future__ import annotations

import enum


class State(enum.StrEnum):
    """Where a :class:`~netsim_imds.http.RequestParser` stands (a StrEnum: its hash is str's, in C)."""

    HEAD = "head"      # waiting for (the rest of) a request head
    BODY = "body"      # head parsed, waiting for Content-Length body bytes
    CLOSED = "closed"  # the peer asked to close after its last request; later bytes are ignored
    ERROR = "error"    # the peer broke the protocol; the connection must be closed


class Input(enum.StrEnum):
    """What can happen to a parser."""

    HEAD_WITH_BODY = "head with body"
    REQUEST_KEEP_ALIVE = "request (keep-alive)"
    REQUEST_CLOSE = "request (close)"
    PEER_ERROR = "peer error"


TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.HEAD, Input.HEAD_WITH_BODY): State.BODY,
    (State.HEAD, Input.REQUEST_KEEP_ALIVE): State.HEAD,
    (State.HEAD, Input.REQUEST_CLOSE): State.CLOSED,
    (State.HEAD, Input.PEER_ERROR): State.ERROR,
    (State.BODY, Input.REQUEST_KEEP_ALIVE): State.HEAD,
    (State.BODY, Input.REQUEST_CLOSE): State.CLOSED,
    (State.BODY, Input.PEER_ERROR): State.ERROR,
}
"""The parser's only transitions; anything else raises :class:`LocalProtocolError`."""


def transitions_as_mermaid() -> str:
    """The parser's state diagram (Mermaid ``stateDiagram``), generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2", f"    [*] --> {State.HEAD.value}"]
    lines += [f"    {a.value} --> {b.value}: {event.value}" for (a, event), b in TRANSITIONS.items()]
    return "\n".join(lines)
