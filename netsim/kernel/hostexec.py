"""Running programs inside the datacenter's hosts: VMs, nodes, lb, client and ops."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from netsim.model import names
from netsim.errors import HostNotFound, NetsimError
from netsim.kernel.safety import preexec_into
from netsim.model.topology import Datacenter


class CommandFailed(NetsimError):
    """A command cannot be started inside a host (not found, not executable)."""


def host_namespace(dc: Datacenter, host: str) -> str:
    """The namespace of HOST: a VM name, ``VM/CONTAINER``, ``node:NAME``, ``fabric``, ``lb``,
    ``client`` or ``ops``."""
    vm_name, container = names.split_host(host)
    if container is not None:
        try:
            vm = dc.vm(vm_name)
        except KeyError:
            raise HostNotFound(f"no VM {vm_name!r} in datacenter {dc.name!r} for container {container!r}: "
                               "give VM/CONTAINER with a VM of the topology") from None
        if container not in vm.containers:
            have = ", ".join(vm.containers) if vm.containers else "none"
            raise HostNotFound(f"VM {vm_name!r} has no container {container!r} (its containers: {have}); "
                               "list them in the VM's 'containers' of the topology")
        return names.container_ns(dc.name, vm_name, container)
    if host.startswith("node:"):
        node = host.split(":", 1)[1]
        if node not in {n.name for n in dc.nodes}:
            raise HostNotFound(f"no node {node!r} in datacenter {dc.name!r} "
                               f"(nodes: {', '.join(n.name for n in dc.nodes)})")
        return names.node_ns(dc.name, node)
    if host in names.EXTRA_HOSTS:
        return names.extra_ns(dc.name, host)
    if host == "fabric":
        return names.fabric_ns(dc.name)
    if host in {v.name for v in dc.vms}:
        return names.vm_ns(dc.name, host)
    raise HostNotFound(f"no host {host!r} in datacenter {dc.name!r}: give a VM name "
                       f"({', '.join(v.name for v in dc.vms[:5])}{', ...' if len(dc.vms) > 5 else ''}), "
                       "VM/CONTAINER, node:NAME, lb, client, ops or fabric")


def popen(ns_name: str, argv: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` inside namespace ``ns_name``; the caller owns the returned process."""
    fd, enter = preexec_into(ns_name)
    try:
        return subprocess.Popen(list(argv), preexec_fn=enter, **kwargs)
    finally:
        os.close(fd)


def run(ns_name: str, argv: Sequence[str], *, timeout: float | None = 30, check: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """Run ``argv`` inside namespace ``ns_name`` and wait for it (output captured as text)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    fd, enter = preexec_into(ns_name)
    try:
        return subprocess.run(list(argv), preexec_fn=enter, timeout=timeout, check=check, **kwargs)
    finally:
        os.close(fd)


def exec_in(ns_name: str, argv: Sequence[str]) -> None:
    """Replace the current (single-threaded) process with ``argv`` running inside ``ns_name``."""
    fd, enter = preexec_into(ns_name)
    enter()
    try:
        os.execvp(argv[0], list(argv))
    except OSError as exc:  # execvp returns only when it failed
        raise CommandFailed(f"cannot run {argv[0]!r}: {exc.strerror}; give a program that exists "
                            "inside the host (PATH is searched)") from None
