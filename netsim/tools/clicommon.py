"""What every ``netsim`` subcommand shares: root check, the datacenter name, progress."""

from __future__ import annotations

import os
import sys
import time

from netsim.api import datacenter as dcapi
from netsim.errors import HostNotFound, NotRootError, StateError
from netsim.model import names
from netsim.state import known_datacenters
from netsim.tools.cliargs import dc_name_arg

__all__ = ["Progress", "dc_name", "known_vm", "named", "need_root"]


def named(sp):
    """Give subcommand parser ``sp`` the ``--name`` option of the datacenter."""
    sp.add_argument("--name", type=dc_name_arg, help="datacenter name (default: the only one that is up)")
    return sp


def need_root() -> None:
    """NotRootError unless running as root."""
    if os.geteuid() != 0:
        raise NotRootError("netsim creates network namespaces and needs root: run it with sudo")


def dc_name(args) -> str:
    """The datacenter of ``--name``, or the only one that is up."""
    if args.name is not None:
        return args.name  # checked by the parser (dc_name_arg)
    known = [n for n in known_datacenters() if names.dc_name_problem(n) is None]
    if len(known) == 1:
        return known[0]
    if not known:
        raise StateError("no datacenter is up: start one with 'netsim up'")
    raise StateError(f"several datacenters are up ({', '.join(known)}): choose one with --name")


class Progress:
    """Prints build progress to stderr once a build has taken more than a second."""

    def __init__(self, label: str) -> None:
        self.label, self.start, self.last = label, time.monotonic(), 0.0
        self.tty = sys.stderr.isatty()
        self.shown = False

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.start < 1.0 or (now - self.last < 0.5 and done < total):
            return
        self.last, self.shown = now, True
        end = "\r" if self.tty and done < total else "\n"
        print(f"{self.label}: {done}/{total} ({what})".ljust(60), end=end, file=sys.stderr, flush=True)


def known_vm(running: dcapi.RunningDatacenter, vm: str) -> str:
    """``vm`` if the datacenter has a VM of that name; else one line listing its VMs."""
    known = [v.name for v in running.topology.vms]
    if vm not in known:
        raise HostNotFound(f"no VM {vm!r} in datacenter {running.name!r} (VMs: {', '.join(known[:8])}"
                           f"{', ...' if len(known) > 8 else ''})")
    return vm
