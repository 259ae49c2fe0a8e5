"""A datacenter's state folder: what was built, the journal, and who holds the lock.

Layout of ``$NETSIM_STATE_DIR/<dc>/`` (default ``/var/lib/netsim/<dc>/``):

- ``datacenter.json``: the topology that was built (written before building starts);
- ``journal``: one line per kernel object or process, written *before* it is made, so
  that a crash at any point leaves a list that ``netsim down`` can undo;
- ``status``: ``building``, ``up`` or ``failed``;
- ``lock``: flock'd by whoever changes the datacenter.

A copy of every process record also goes to the run folder ``$NETSIM_RUN_DIR/<dc>/``
(default ``/run/netsim/<dc>/``, see :class:`RunDir`), outside the state folder, so that
``netsim cleanup`` still ends the daemon when the state folder is damaged or gone. A
state folder whose files cannot be read is *set aside* (moved to
``<root>/.corrupt/<dc>-<time>/``) rather than deleted, so that it can be examined.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager

from netsim.errors import NetsimError, StateError
from netsim.kernel import netns
from netsim.model.names import dc_name_problem, dc_prefix
from netsim.model.topology import VM, AvailabilitySet, Datacenter, Node
from netsim.model import gcedata, vmdata

DEFAULT_STATE_DIR = "/var/lib/netsim"
DEFAULT_RUN_DIR = "/run/netsim"
CORRUPT_DIR = ".corrupt"  # under the state root; not a valid datacenter name, so never listed
_KIND_RE = re.compile(r"^[a-z_]+$")  # the first field of every journal record
_NS_RE = re.compile(r"^[a-z0-9-]+$")  # a namespace name netsim makes: never a path


class CorruptStateError(StateError):
    """A file of the state folder cannot be read; the message says how to start again."""


def state_root() -> str:
    """The folder holding every datacenter's state folder."""
    return os.environ.get("NETSIM_STATE_DIR", DEFAULT_STATE_DIR)


def run_root() -> str:
    """The host-wide run folder (a tmpfs emptied at boot, like the kernel objects)."""
    return os.environ.get("NETSIM_RUN_DIR", DEFAULT_RUN_DIR)


def datacenter_to_json(dc: Datacenter) -> dict:
    """A JSON-ready dict of a Datacenter."""
    return dataclasses.asdict(dc)


def datacenter_from_json(data: dict) -> Datacenter:
    """Rebuild a Datacenter written by :func:`datacenter_to_json`."""
    return Datacenter(
        name=data["name"],
        nodes=tuple(Node(**n) for n in data["nodes"]),
        vms=tuple(VM(**{**v, "services": tuple(v["services"]),
                             "containers": tuple(v.get("containers", ())),
                             **vmdata.vm_fields_from_json(v), "gce": gcedata.vm_from_json(v.get("gce"))})
                 for v in data["vms"]),
        identities=vmdata.identities_from_json(data),
        project=gcedata.project_from_json(data.get("project")),
        availability_sets=tuple(AvailabilitySet(**a) for a in data["availability_sets"]),
        location=data["location"], linklocal=data["linklocal"], timers=data["timers"], source=data.get("source"),
        cloud=data.get("cloud", Datacenter.cloud),  # a state folder written before the key existed: the default
    )


class StateDir:
    """The state folder of one datacenter."""

    def __init__(self, dc_name: str, root: str | None = None) -> None:
        from netsim.model.names import check_dc_name  # before any path is built from the name
        self.dc_name = check_dc_name(dc_name)
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
        path = self.file("datacenter.json")
        try:
            with open(path) as f:
                return datacenter_from_json(json.load(f))
        except FileNotFoundError:
            if netns.list_names(dc_prefix(self.dc_name)):
                raise StateError(f"datacenter {self.dc_name!r} has namespaces but no state in {self.path}; "
                                 f"run 'netsim cleanup --name {self.dc_name}' to remove them") from None
            raise StateError(f"no datacenter {self.dc_name!r} is up (no state in {self.path}); "
                             "start one with 'netsim up'") from None
        except (ValueError, KeyError, TypeError, AttributeError, NetsimError) as exc:
            # ValueError covers bad JSON and bytes that are not UTF-8.
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
            raise CorruptStateError(f"the state file {path} is corrupt ({reason}); run 'netsim cleanup --name "
                                    f"{self.dc_name}': it removes what was built, found by name, and keeps the "
                                    "corrupt state aside") from None

    def corruption(self) -> str | None:
        """Why the state folder cannot be trusted (a corrupt datacenter.json or journal), or None."""
        if os.path.exists(self.file("datacenter.json")):
            try:
                self.read_datacenter()
            except CorruptStateError as exc:
                return str(exc)
        bad = self.malformed_journal_lines()
        return f"{bad} malformed lines in {self.file('journal')}" if bad else None

    def set_status(self, status: str) -> None:
        """Record the datacenter's lifecycle status."""
        self._write(self.file("status"), status)

    def status(self) -> str | None:
        """The recorded status, or None."""
        try:
            with open(self.file("status"), errors="replace") as f:
                return f.read().strip()[:40] or None
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
            # errors="replace": garbage in the journal must not stop a teardown.
            with open(self.file("journal"), errors="replace") as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def pid_records(self) -> list[tuple[int, str, str]]:
        """The journaled processes ``(pid, start time, what)``; malformed lines are skipped."""
        return _pid_records(self.read_journal())

    def namespace_records(self) -> list[str]:
        """The journaled namespaces that carry this datacenter's prefix (a corrupt journal
        can never name someone else's namespace)."""
        prefix = dc_prefix(self.dc_name)
        return [r[1] for r in self.read_journal()
                if r[0] == "ns" and len(r) == 2 and r[1].startswith(prefix) and _NS_RE.match(r[1])]

    def malformed_journal_lines(self) -> int:
        """How many journal lines are not records netsim writes."""
        bad = 0
        for r in self.read_journal():
            bad_ns = r[0] == "ns" and (len(r) != 2 or not _NS_RE.match(r[1]))
            bad_pid = r[0] == "pid" and not _pid_records([r])
            if bad_ns or bad_pid or not _KIND_RE.match(r[0]):
                bad += 1
        return bad

    def remove(self) -> None:
        """Delete the state folder; the datacenter releases the host settings it held."""
        self.close_journal()
        shutil.rmtree(self.path, ignore_errors=True)
        _release_host_settings(self.dc_name)

    def set_aside(self) -> str:
        """Move the state folder to ``<root>/.corrupt/<dc>-<time>/`` (kept for examination
        instead of deleted) and release the host settings; returns where it went."""
        self.close_journal()
        dest = os.path.join(os.path.dirname(self.path), CORRUPT_DIR,
                            f"{self.dc_name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(self.path, dest)
        _release_host_settings(self.dc_name)
        return dest


def _pid_records(records: list[list[str]]) -> list[tuple[int, str, str]]:
    return [(int(r[1]), r[2], " ".join(r[3:])) for r in records
            if r[0] == "pid" and len(r) >= 4 and r[1].isdigit() and r[1].isascii()]


def _release_host_settings(dc_name: str) -> None:
    from netsim.kernel import hostsettings  # late: hostsettings needs the teardown helpers
    hostsettings.release(dc_name)


class RunDir:
    """The datacenter's run folder, ``$NETSIM_RUN_DIR/<dc>/``: a second copy of the process
    records, outside the state folder, that ``netsim cleanup`` reads when the state
    folder is corrupt or gone."""

    def __init__(self, dc_name: str, root: str | None = None) -> None:
        from netsim.model.names import check_dc_name  # before any path is built from the name
        self.dc_name = check_dc_name(dc_name)
        self.path = os.path.join(root or run_root(), dc_name)

    def record_process(self, pid: int, started: str | None, what: str) -> None:
        """Append a process record (one write, like the journal)."""
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(os.path.join(self.path, "pids"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"pid {pid} {started} {what}\n".encode())
        finally:
            os.close(fd)

    def pid_records(self) -> list[tuple[int, str, str]]:
        """The recorded processes ``(pid, start time, what)``."""
        try:
            with open(os.path.join(self.path, "pids"), errors="replace") as f:
                return _pid_records([line.split() for line in f if line.strip()])
        except FileNotFoundError:
            return []

    def exists(self) -> bool:
        """True if the run folder holds records."""
        return os.path.exists(self.path)

    def remove(self) -> None:
        """Delete the run folder."""
        shutil.rmtree(self.path, ignore_errors=True)


def known_run_datacenters(root: str | None = None) -> list[str]:
    """Names of the datacenters that have a run folder."""
    return _datacenter_folders(root or run_root())


def known_datacenters(root: str | None = None) -> list[str]:
    """Names of the datacenters that have a state folder."""
    return _datacenter_folders(root or state_root())


def _datacenter_folders(root: str) -> list[str]:
    try:
        return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))
                      and dc_name_problem(d) is None)
    except FileNotFoundError:
        return []
