"""The rule that no emulated traffic starts in the host's own network namespace.

The host running netsim may sit in a cloud whose real metadata service answers at
169.254.169.254 in the host's namespace. Every helper that sends traffic goes through
here first and refuses unless it is about to run inside a namespace netsim created.
"""

from __future__ import annotations

import os
import socket

from netsim.model import names
from netsim.kernel import netns
from netsim.errors import RootNamespaceError


def require_emulated_namespace(program: str = "this program") -> str:
    """Return the name of the netsim namespace the calling thread runs in; raise
    RootNamespaceError if it runs anywhere else (the host's own namespace above all).

    Every in-VM program (web app, event logger, drain agent, load generator) and every
    traffic helper calls this before it opens a socket. Membership in netsim's namespaces
    is what counts; PID 1's namespace, when it can be read, is refused too, in case someone
    bind-mounted the host's namespace under netsim's prefix.
    """
    here = netns.current_inode()
    if here != netns.root_inode():
        for name in netns.list_names(names.PREFIX):
            if netns.inode_of(name) == here:
                return name
    raise RootNamespaceError(
        f"{program} refuses to send traffic from outside netsim's namespaces (the host's own above all): "
        "run it inside an emulated host, e.g. 'netsim exec web1 -- CMD' or RunningDatacenter.popen('web1', argv)")


def require_project_namespace(ns_name: str) -> None:
    """Raise RootNamespaceError unless ``ns_name`` is a netsim namespace other than the host's."""
    if names.dc_of_namespace(ns_name) is None:
        raise RootNamespaceError(f"{ns_name!r} is not a netsim namespace (they start with {names.PREFIX!r}); "
                                 "netsim sends traffic only from namespaces it created")
    inode = netns.inode_of(ns_name)
    if inode is None or inode == netns.root_inode():
        raise RootNamespaceError(f"namespace {ns_name!r} does not exist or is the host's own namespace")


def emulated_socket(ns_name: str, family: int, type: int, proto: int = 0) -> socket.socket:
    """A socket opened inside netsim namespace ``ns_name``, checked by :func:`require_project_namespace`."""
    require_project_namespace(ns_name)
    sock = netns.socket_in(ns_name, family, type, proto)
    return sock


def preexec_into(ns_name: str):
    """A ``preexec_fn`` that moves a child process into ``ns_name`` before it runs.

    The namespace is opened in the parent (so errors surface there) and entered in the
    child between fork and exec; the parent never changes namespace.
    """
    require_project_namespace(ns_name)
    fd = netns.open_fd(ns_name)

    def enter() -> None:
        netns.setns(fd)
        os.close(fd)
        netns.enter_etc(ns_name)  # the VM's own /etc files, if it has any (e.g. GCE's hosts)

    return fd, enter
