"""A datacenter's state folder: what was built, the journal, and who holds the lock.

Layout of ``$NETSIM_STATE_DIR/<dc>/`` (default ``/var/lib/netsim/<dc>/``):

- ``datacenter.json``: the topology that was built (written before building starts);
- ``journal``: one line per kernel object or process, written *before* it is made, so
  that a crash at any point leaves a list that ``netsim down`` can undo;
- ``status``: ``building``, ``up`` or ``failed``;
- ``lock``: flock'd by whoever changes the datacenter.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

from netsim.errors import StateError
from netsim.topology.model import VM, AvailabilitySet, Datacenter, Node

DEFAULT_STATE_DIR = "/var/lib/netsim"


def state_root() -> str:
    """The folder holding every datacenter's state folder."""
    return os.environ.get("NETSIM_STATE_DIR", DEFAULT_STATE_DIR)


def datacenter_to_json(dc: Datacenter) -> dict:
    """A JSON-ready dict of a Datacenter."""
    return dataclasses.asdict(dc)


def datacenter_from_json(data: dict) -> Datacenter:
    """Rebuild a Datacenter written by :func:`datacenter_to_json`."""
    return Datacenter(
        name=data["name"],
        nodes=tuple(Node(**n) for n in data["nodes"]),
        vms=tuple(VM(**{**v, "services": tuple(v["services"])}) for v in data["vms"]),
        availability_sets=tuple(AvailabilitySet(**a) for a in data["availability_sets"]),
        location=data["location"], linklocal=data["linklocal"], timers=data["timers"], source=data.get("source"),
    )


class StateDir:
    """The state folder of one datacenter."""

    def __init__(self, dc_name: str, root: str | None = None) -> None:
        self.dc_name = dc_name
        self.path = os.path.join(root or state_root(), dc_name)
        self._journal_fd: int | None = None

    def file(self, name: str) -> str:
        """Path of a file in the folder."""
        return os.path.join(self.path, name)

    def exists(self) -> bool:
        """True if a datacenter of this name has state."""
        return os.path.exists(self.file("datacenter.json"))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the datacenter's lock; raise StateError if another netsim holds it."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.file("lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StateError(f"datacenter {self.dc_name!r} is being changed by another netsim process; "
                                 "wait for it, or stop it") from None
            yield
        finally:
            os.close(fd)

    # -- topology and status -----------------------------------------------------------

    def write_datacenter(self, dc: Datacenter) -> None:
        """Record the topology that is about to be built."""
        os.makedirs(self.path, exist_ok=True)
        self._write(self.file("datacenter.json"), json.dumps(datacenter_to_json(dc), indent=1))

    def read_datacenter(self) -> Datacenter:
        """The topology that was built; StateError if there is none."""
        try:
            with open(self.file("datacenter.json")) as f:
                return datacenter_from_json(json.load(f))
        except FileNotFoundError:
            raise StateError(f"no datacenter {self.dc_name!r} is up (no state in {self.path}); "
                             "start one with 'netsim up'") from None

    def set_status(self, status: str) -> None:
        """Record the datacenter's lifecycle status."""
        self._write(self.file("status"), status)

    def status(self) -> str | None:
        """The recorded status, or None."""
        try:
            with open(self.file("status")) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    @staticmethod
    def _write(path: str, text: str) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    # -- journal -------------------------------------------------------------------------

    def journal(self, kind: str, *fields: object) -> None:
        """Append one record; written with a single write() so a crash never tears it."""
        if self._journal_fd is None:
            os.makedirs(self.path, exist_ok=True)
            self._journal_fd = os.open(self.file("journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._journal_fd, (" ".join(str(f) for f in (kind, *fields)) + "\n").encode())

    def close_journal(self) -> None:
        """Close the journal file."""
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    def read_journal(self) -> list[list[str]]:
        """Every record of the journal, split into fields."""
        try:
            with open(self.file("journal")) as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def remove(self) -> None:
        """Delete the state folder."""
        self.close_journal()
        shutil.rmtree(self.path, ignore_errors=True)


def known_datacenters(root: str | None = None) -> list[str]:
    """Names of the datacenters that have a state folder."""
    root = root or state_root()
    try:
        return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    except FileNotFoundError:
        return []
