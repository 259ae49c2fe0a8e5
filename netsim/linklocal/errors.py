"""Errors of the link-local package, rooted in :class:`netsim.errors.NetsimError`.

Only a caller's misuse raises. What the network does (a conflicting ARP packet, a
malformed frame, a vanished namespace) is an event the machine or driver handles.
"""

from __future__ import annotations

from netsim.errors import NetsimError


class LinkLocalError(NetsimError):
    """A link-local call was given a bad value (a MAC, an address, a VM name)."""


class IllegalInput(LinkLocalError):
    """An input arrived in a state that has no transition for it.

    ``state`` and ``event`` name the two; the message says what the caller should do.
    """

    def __init__(self, state: object, event: object, hint: str = "") -> None:
        self.state, self.event = state, event
        name = getattr(state, "name", state)
        ev = getattr(event, "name", event)
        msg = f"event {ev} is not allowed in state {name}"
        super().__init__(f"{msg}: {hint}" if hint else msg)
