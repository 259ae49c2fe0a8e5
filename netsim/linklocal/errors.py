"""Errors of the link-local package, rooted in :class:`netsim.errors.NetsimError`.

Only a caller's misuse raises. What the network does (a conflicting ARP packet, a
malformed frame, a vanished namespace) is an event the machine or driver handles.
"""

from __future__ import annotations

from netsim.errors import IllegalInput, NetsimError

__all__ = ["IllegalInput", "LinkLocalError"]  # IllegalInput: the one class of every machine


class LinkLocalError(NetsimError):
    """A link-local call was given a bad value (a MAC, an address, a VM name)."""
