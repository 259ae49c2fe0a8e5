"""The one error hierarchy of netsim: every error a user can meet derives from NetsimError."""

from __future__ import annotations


class NetsimError(Exception):
    """Base of every netsim error; its message says what went wrong and what to do."""


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
