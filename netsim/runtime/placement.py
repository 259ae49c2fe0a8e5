"""Where each VM runs now: the one placement of a running datacenter, owned by the runtime.

The topology says where a VM was *built* (its home node: its routable subnet and
gateway come from there); a Redeploy or service healing moves its port to another
node's bridge. :class:`Placement` is the one record of where the port is now: read from
the kernel when the daemon starts, changed only by the effects that move or remove a
VM (:mod:`netsim.runtime.effects`), and read by everyone else: the planner's inputs
and the choice of the host agent that runs a VM's effects (:mod:`netsim.runtime.controller`,
:mod:`netsim.runtime.hostagent`: a moved VM is handed to the agent of its new node), the
link-local claims (which node's bridge a VM probes on), caller identity (which node's
resolver to invalidate) and status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping

from netsim.kernel.rtnl import Rtnl
from netsim.model import names
from netsim.model.topology import Datacenter

Listener = Callable[[str, "str | None", "str | None"], None]
"""Called with ``(vm, old node, new node)`` after a VM appears, moves or is removed (None: absent)."""


class Placement(MutableMapping[str, str]):
    """``{vm: node}`` for every VM that exists; listeners hear every change."""

    def __init__(self, initial: dict[str, str] | None = None) -> None:
        self._where: dict[str, str] = dict(initial or {})
        self.listeners: list[Listener] = []

    @classmethod
    def from_kernel(cls, dc: Datacenter) -> "Placement":
        """Where each VM's port is plugged now, read from the nodes' namespaces."""
        where = {}
        for node in dc.nodes:
            with Rtnl.in_namespace(names.node_ns(dc.name, node.name)) as sock:
                links = sock.links()
            for vm in dc.vms:
                if names.vm_port(vm.name) in links:
                    where[vm.name] = node.name
        return cls(where)

    def node_of(self, vm: str) -> str | None:
        """The node holding ``vm`` now, or None if it does not exist (any more)."""
        return self._where.get(vm)

    def vms_on(self, node: str) -> list[str]:
        """The VMs on ``node`` now."""
        return [vm for vm, n in self._where.items() if n == node]

    def _tell(self, vm: str, old: str | None, new: str | None) -> None:
        for listener in list(self.listeners):
            listener(vm, old, new)

    # -- the mapping (effects write through it) ---------------------------------------

    def __getitem__(self, vm: str) -> str:
        return self._where[vm]

    def __setitem__(self, vm: str, node: str) -> None:
        old = self._where.get(vm)
        self._where[vm] = node
        if old != node:
            self._tell(vm, old, node)

    def __delitem__(self, vm: str) -> None:
        old = self._where.pop(vm)
        self._tell(vm, old, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._where))

    def __len__(self) -> int:
        return len(self._where)

    def __repr__(self) -> str:
        return f"Placement({self._where!r})"
