"""The one error hierarchy of netsim: every error a user can meet derives from NetsimError."""

from __future__ import annotations

# The root is defined by the metadata service (netsim_imds imports nothing from netsim):
# one hierarchy for both packages.
from netsim_imds.errors import NetsimError

__all__ = ["BuildError", "HostNotFound", "NamespaceError", "NetsimError", "NotRootError", "RootNamespaceError",
           "StateError", "TopologyError", "IllegalInput"]


class TopologyError(NetsimError):
    """A topology file or value is invalid; names the file, line (when known) and field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.line, self.field, self.reason = file, line, field, message
        where = ":".join(str(p) for p in (file, line) if p is not None)
        parts = [p for p in (where, f"field {field!r}" if field else None) if p]
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


class NamespaceError(NetsimError):
    """A kernel call on a network namespace failed; ``errno`` holds the OS error."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class BuildError(NetsimError):
    """Building a datacenter failed; what was built has been rolled back."""


class StateError(NetsimError):
    """The datacenter's state folder is missing, busy or inconsistent with the kernel."""


class HostNotFound(NetsimError):
    """A host name (VM, node:NAME, lb, client, ops) names nothing in the datacenter."""


class RootNamespaceError(NetsimError):
    """Traffic was about to start in the host's own network namespace, which netsim forbids."""


class NotRootError(NetsimError):
    """The operation needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)."""


class IllegalInput(NetsimError):
    """An input arrived in a state of a machine (an RFC 3927 claim, a maintenance event or
    walk) whose transition table has no row for it. ``state`` and ``event`` name the two,
    ``what`` the machine (e.g. ``walk W-1``); the message says what the caller should do."""

    def __init__(self, state: object, event: object, hint: str = "", *, what: str = "") -> None:
        self.what, self.state, self.event = what, state, event
        name = getattr(state, "name", state)
        ev = getattr(event, "name", event)
        msg = f"{what + ': ' if what else ''}input {ev} is not allowed in state {name}"
        super().__init__(f"{msg}; {hint}" if hint else msg)
