"""A VM's GCE keys and the datacenter's GCE project, from the topology.

Keys of ``[[vm]]`` (all optional; the gcp flavor serves them, the effects obey them)::

    [[vm]]
    name = "web1"
    on_host_maintenance = "MIGRATE"    # or "TERMINATE" (a preemptible VM's only choice)
    automatic_restart = true           # false: TERMINATE_ON_HOST_MAINTENANCE leaves it stopped
                                       # until `netsim vm start` (a preemptible VM: false)
    preemptible = false
    metadata = { "enable-oslogin" = "TRUE" }   # instance attributes (GCE's metadata items)

and one ``[project]`` table (all optional)::

    [project]
    id = "my-project"                  # default: netsim-<datacenter>
    number = 123456789012              # default: derived from the id (12 digits)
    attributes = { "ssh-keys" = "alice:ssh-ed25519 AAAA... alice" }

The rules are GCE's: a preemptible instance must have ``on_host_maintenance = "TERMINATE"``
and ``automatic_restart = false`` (its API refuses anything else); metadata keys are 1 to
128 letters, digits, ``-`` or ``_``; a value is at most 256 KiB and all of a VM's (or the
project's) values at most 512 KiB; a project id is 6 to 30 lower-case letters, digits or
``-``, starting with a letter and not ending with ``-``. Every error names file, line and
field (the loader's ``fail``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

Fail = Callable[[str, str], None]
Get = Callable[[dict, str, type, Any, Fail], Any]

VM_KEYS = frozenset({"on_host_maintenance", "automatic_restart", "preemptible", "metadata"})
"""The ``[[vm]]`` keys this module reads."""
PROJECT_KEYS = frozenset({"id", "number", "attributes"})
"""The keys of the ``[project]`` table."""
ON_HOST_MAINTENANCE = ("MIGRATE", "TERMINATE")
MAX_VALUE, MAX_TOTAL = 256 * 1024, 512 * 1024
MAX_PROJECT_NUMBER = 10 ** 12 - 1

_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PROJECT_ID = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]")


@dataclass(frozen=True)
class GceVm:
    """A VM's GCE keys: its scheduling and its instance attributes."""

    on_host_maintenance: str = "MIGRATE"
    automatic_restart: bool = True
    preemptible: bool = False
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GceProject:
    """The datacenter's project (``[project]``): "" id and 0 number are derived at run time."""

    id: str = ""
    number: int = 0
    attributes: tuple[tuple[str, str], ...] = ()


def _attributes(table: dict, key: str, fail: Fail) -> tuple[tuple[str, str], ...]:
    total = 0
    for name, value in table.items():
        if not _KEY.fullmatch(name):
            fail(key, f"metadata key {name!r}: 1 to 128 letters, digits, '-' or '_' (GCE's rule)")
        if not isinstance(value, str):
            fail(key, f"{key}.{name} must be a string, not {value!r}")
        size = len(value.encode())
        if size > MAX_VALUE:
            fail(key, f"{key}.{name} has {size} bytes; GCE allows at most {MAX_VALUE} per value")
        total += size
    if total > MAX_TOTAL:
        fail(key, f"has {total} bytes of values; GCE allows at most {MAX_TOTAL} in all")
    return tuple(table.items())


def parse_vm(v: dict, get: Get, fail: Fail) -> GceVm:
    """The :class:`GceVm` of one ``[[vm]]`` table."""
    preemptible = get(v, "preemptible", bool, False, fail)
    ohm = get(v, "on_host_maintenance", str, "TERMINATE" if preemptible else "MIGRATE", fail)
    if ohm not in ON_HOST_MAINTENANCE:
        fail("on_host_maintenance", f"must be 'MIGRATE' or 'TERMINATE', not {ohm!r}")
    restart = get(v, "automatic_restart", bool, not preemptible, fail)
    if preemptible and ohm != "TERMINATE":
        fail("on_host_maintenance", 'a preemptible VM must have on_host_maintenance = "TERMINATE" (GCE refuses '
                                    "MIGRATE for it)")
    if preemptible and restart:
        fail("automatic_restart", "a preemptible VM must have automatic_restart = false (GCE refuses true for it)")
    metadata = _attributes(get(v, "metadata", dict, {}, fail), "metadata", fail)
    return GceVm(on_host_maintenance=ohm, automatic_restart=restart, preemptible=preemptible, metadata=metadata)


def parse_project(table: dict, get: Get, fail: Fail) -> GceProject:
    """The :class:`GceProject` of the ``[project]`` table (``{}``: every default)."""
    for key in table:
        if key not in PROJECT_KEYS:
            fail(key, f"unknown key {key!r} (known: {', '.join(sorted(PROJECT_KEYS))})")
    pid = get(table, "id", str, "", fail)
    if pid and not _PROJECT_ID.fullmatch(pid):
        fail("id", f"project id {pid!r}: 6 to 30 lower-case letters, digits or '-', starting with a letter, "
                   "not ending with '-'")
    number = get(table, "number", int, 0, fail)
    if "number" in table and not 1 <= number <= MAX_PROJECT_NUMBER:
        fail("number", f"must be a project number from 1 to {MAX_PROJECT_NUMBER}, not {number}")
    return GceProject(pid, number, _attributes(get(table, "attributes", dict, {}, fail), "attributes", fail))


def vm_from_json(data: object) -> GceVm:
    """The :class:`GceVm` rebuilt from ``dataclasses.asdict`` JSON (the state folder); a
    folder written before it existed gets the defaults."""
    if not isinstance(data, dict):
        return GceVm()
    return GceVm(**{**data, "metadata": tuple(tuple(kv) for kv in data.get("metadata", ()))})


def project_from_json(data: object) -> GceProject:
    """The :class:`GceProject` rebuilt from the state folder's JSON (defaults if absent)."""
    if not isinstance(data, dict):
        return GceProject()
    return GceProject(**{**data, "attributes": tuple(tuple(kv) for kv in data.get("attributes", ()))})


def host_maintenance_policy(dc: Any, vm: Any) -> tuple[bool, bool]:
    """``(live_migrates, restarts)`` of topology VM ``vm`` of datacenter ``dc`` for the
    planner: on a gcp datacenter a VM with ``on_host_maintenance = "MIGRATE"`` is moved to
    another node by a live migration, and one with ``automatic_restart = false`` stays
    stopped after a host-maintenance termination; elsewhere neither (other clouds' keys)."""
    if dc.cloud != "gcp":
        return False, True
    return vm.gce.on_host_maintenance == "MIGRATE", vm.gce.automatic_restart
