"""The in-namespace form of netsim's rule that no traffic starts in the host's namespace.

Every scenario program (webapp, event logger, drain agent, load generator) calls
:func:`require_netsim_namespace` before it opens a socket: it runs only if its network
namespace is one that netsim created (mounted under ``/run/netns/nsim-*``).

Why not :func:`netsim.safety.require_emulated_namespace`: when PID 1's namespace
cannot be inspected (some containers and sandboxes deny ``/proc/1/ns/net``), it takes
the namespace the *process started in* as the host's, which for a program started
inside a VM is the VM's own namespace, so it refuses everywhere. Membership in netsim's
namespaces is the condition that matters; the comparison with PID 1 is kept when
PID 1 can be inspected.
"""

from __future__ import annotations

import os

from netsim import names, netns
from netsim.errors import RootNamespaceError


def _pid1_inode() -> int | None:
    try:
        return os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return None


def require_netsim_namespace(program: str = "this program") -> str:
    """Return the name of the netsim namespace the caller runs in; RootNamespaceError if
    it runs anywhere else (the host's own namespace above all)."""
    here = netns.current_inode()
    if here == _pid1_inode():
        raise RootNamespaceError(f"{program} refuses to run in the host's own network namespace: start it "
                                 "inside an emulated host, e.g. 'netsim exec web1 -- ...' or "
                                 "RunningDatacenter.popen('web1', argv)")
    for name in netns.list_names(names.PREFIX):
        if netns.inode_of(name) == here:
            return name
    raise RootNamespaceError(f"{program} runs outside every netsim namespace; start it inside an emulated "
                             "host, e.g. 'netsim exec web1 -- ...' or RunningDatacenter.popen('web1', argv)")
