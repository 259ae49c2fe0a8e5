"""The daemon's faults (issue 13): stored beside the events, applied to the metadata
service and the kernel, started and ended on time.

:class:`FaultBook` is the one owner of the faults of a running datacenter. Every change
(add, clear, a fault starting or ending, a VM moving or removed) ends in :meth:`apply`,
which computes what must hold now and changes only what differs: the metadata service's
HTTP faults (:meth:`netsim_imds.driver.MetadataServer.set_faults`, on the daemon's loop:
in force before the control command answers), each VM port's qdisc and each node's nft
table (:mod:`netsim.kernel.qdisc`). The faults live in the event repository
(``faults`` table) with absolute times, so a daemon killed and started again keeps them
with the time they have left; a restarted daemon writes every port and node once, so
what the kernel kept from before (a fault that ended meanwhile) is put right.

Several link faults on one port: the loss shares combine (each drops on its own); the
qdisc is the latest fault's that shapes (netem or tbf). On a kernel without netem
(chosen once, :func:`netsim.kernel.qdisc.netem_available`), what netem would do goes to a
delay line instead (:mod:`netsim.runtime.delaylines`); a rate alone stays tbf.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from netsim.errors import NetsimError
from netsim.kernel import delayline, qdisc
from netsim.model import names
from netsim.model.plan import plan_of
from netsim.model.topology import Datacenter
from netsim.runtime.delaylines import DelayLines
from netsim.runtime.faultspec import Fault, FaultError, classify, scope
from netsim_imds.address import METADATA_ADDRESS

log = logging.getLogger("netsim.runtime.faults")

NodeRules = tuple[tuple[tuple[str, float], ...], tuple[str, ...], bool]
"""A node's nft state: (port, loss) pairs, cut ports, uplink cut."""


class FaultBook:
    """The faults of one datacenter: ``repo`` stores them, ``server`` serves the HTTP
    ones, ``placement`` says where each VM's port is, ``known(kind, name)`` checks a
    name against the topology (a NetsimError that lists the names)."""

    def __init__(self, dc: Datacenter, repo, server, placement, known: Callable[[str, object], str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.dc, self.repo, self.server, self.placement, self.known, self.clock = \
            dc, repo, server, placement, known, clock
        self.faults: dict[str, Fault] = {}
        self._seq = {}  # fault id -> its number in the repository
        for seq, d in repo.faults():
            fault = Fault.from_dict(d)
            self.faults[fault.id], self._seq[fault.id] = fault, seq
        self._shapes: dict[str, tuple[str, qdisc.Shape | None]] | None = None  # None: write every port
        self._rules: dict[str, NodeRules] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.netem = qdisc.netem_available()
        self.lines = DelayLines()
        """The delay lines doing netem's job when the kernel has no netem."""

    # -- the control commands' verbs --------------------------------------------------------

    def add(self, target: str, options: dict[str, Any], in_s: float | None, duration_s: float | None) -> Fault:
        """Add a fault (checked: :func:`netsim.runtime.faultspec.classify`, the target's
        name, netem when needed) and put it in force; returns it."""
        where, name = scope(target)
        if where != "all":
            try:
                self.known("node" if where == "node" else "vm", name)
            except NetsimError as exc:
                raise FaultError(f"fault target {target!r}: {exc} (a target is a VM, node:NAME or all)") from None
        given = {k: v for k, v in options.items() if v is not None and v is not False}
        kind = classify(target, given)
        fault = Fault("", target, kind, tuple(given.items()), 0.0, None)
        if fault.needs_netem and not self.netem:
            qdisc.require_delay_line()
        now = self.clock()
        starts = now + (in_s or 0.0)
        seq = max([self.repo.last_fault_seq(), *self._seq.values()]) + 1
        fault = Fault(f"fault-{seq}", target, kind, fault.options, starts,
                      None if duration_s is None else starts + duration_s)
        self.repo.put_fault(seq, fault.to_dict(now))
        self.faults[fault.id], self._seq[fault.id] = fault, seq
        try:
            self.apply()
        except NetsimError:
            self.clear(fault.id)  # not in force: not kept either
            raise
        log.info("%s added: %s %s", fault.id, target, dict(fault.options))
        return fault

    def clear(self, fault_id: str | None = None, everything: bool = False) -> list[str]:
        """Remove one fault, or every fault (``everything``); returns the ids removed."""
        if everything:
            ids = list(self.faults)
        elif fault_id in self.faults:
            ids = [fault_id]
        else:
            known = ", ".join(self.faults) or "none"
            raise FaultError(f"no fault {fault_id!r} (faults: {known}; see netsim fault list)")
        self.repo.remove_faults([self._seq[i] for i in ids])
        for i in ids:
            del self.faults[i]
            del self._seq[i]
        log.info("faults cleared: %s", ", ".join(ids) or "none")
        self.apply()
        return ids

    def describe(self) -> list[dict]:
        """Every fault as ``fault_list`` answers it."""
        now = self.clock()
        return [f.to_dict(now) for f in self.faults.values()]

    # -- events of the datacenter ----------------------------------------------------------

    def vm_moved(self, vm: str, old: str | None, new: str | None) -> None:
        """A placement listener: a VM moved (its port lost its qdisc) or was removed (its
        faults end now)."""
        if new is None:
            now = self.clock()
            for f in list(self.faults.values()):
                if f.target == vm and f.state(now) != "ended":
                    ended = Fault(f.id, f.target, f.kind, f.options, min(f.starts_at, now), now)
                    self.repo.put_fault(self._seq[f.id], ended.to_dict(now))
                    self.faults[f.id] = ended
        if self._shapes is not None:
            self._shapes.pop(vm, None)
        try:
            self.apply()
        except NetsimError as exc:  # the VM is on its way; the next change puts it right
            log.warning("faults after %s moved: %s", vm, exc)

    # -- applying -------------------------------------------------------------------------

    def apply(self) -> None:
        """Make the metadata service and the kernel hold exactly the faults in force now,
        and arm the timer of the next start or end."""
        now = self.clock()
        live = [f for f in self.faults.values() if f.state(now) != "ended"]
        self.server.set_faults([f.http_fault() for f in live if f.kind == "http"])
        active = [f for f in live if f.kind == "link" and f.state(now) == "active"]
        self._apply_ports(active)
        self._apply_rules(active)
        self._arm(now)

    def _vms_of(self, fault: Fault) -> list[str]:
        where, name = scope(fault.target)
        if where == "all":
            return list(self.placement)
        if where == "node":
            return [vm for vm in self.placement if self.placement.get(vm) == name]
        return [name] if name in self.placement else []

    def _apply_ports(self, active: list[Fault]) -> None:
        want: dict[str, tuple[str, qdisc.Shape | None]] = {vm: (node, None) for vm, node in self.placement.items()}
        for f in active:
            shape = f.shape()
            if shape is not None:
                for vm in self._vms_of(f):
                    want[vm] = (want[vm][0], shape)  # the latest fault's qdisc
        have = self._shapes or {}
        changed: dict[str, dict[int, tuple[str, qdisc.Shape | None]]] = {}
        lines: dict[str, dict[str, qdisc.Shape | None]] = {}  # node -> VM -> its line (None: none)
        plan = plan_of(self.dc)
        for vm, (node, shape) in want.items():
            if self._shapes is None or have.get(vm) != (node, shape):
                root = self._root_qdisc(shape)
                before = have.get(vm)
                # A port whose root qdisc stays the kernel's default (a line added or
                # cleared) is not written: that saves a request per port of a big fault.
                if self._shapes is None or before is None or before[0] != node or self._root_qdisc(before[1]) != root:
                    changed.setdefault(node, {})[plan.vm(vm).port_index] = (names.vm_port(vm), root)
                lines.setdefault(node, {})[vm] = shape if root is None and shape is not None else None
        _each_node(lambda node: qdisc.set_ports(names.node_ns(self.dc.name, node), changed[node]), list(changed))
        if not self.netem:
            first = self._shapes is None
            _each_node(lambda node: self._set_lines(node, lines[node], plan, first), list(lines))
        self._shapes = want

    def _root_qdisc(self, shape: qdisc.Shape | None) -> qdisc.Shape | None:
        """The port's root qdisc for ``shape``: None when there is none, or when the delay
        line does it (netem's options on a kernel without netem)."""
        return None if shape is None or (shape.netem and not self.netem) else shape

    def _set_lines(self, node: str, lines: dict[str, qdisc.Shape | None], plan, first: bool) -> None:
        namespace = names.node_ns(self.dc.name, node)
        plain = [vm for vm, shape in lines.items() if shape is None]
        self.lines.remove(plain)
        if first:  # what a daemon killed before left in the kernel goes
            delayline.unplug_ports(namespace, [(plan.vm(vm).port_index, names.vm_port(vm)) for vm in plain],
                                   tap_too=len(plain) == len(lines), if_tap=True)
        shaped = [(vm, plan.vm(vm).port_index, names.vm_port(vm), plan.vm(vm).mac, shape)
                  for vm, shape in lines.items() if shape is not None]
        if shaped:
            self.lines.set(namespace, shaped)

    def _apply_rules(self, active: list[Fault]) -> None:
        keep: dict[str, float] = {}  # port -> share of frames kept
        cut: set[str] = set()
        cut_nodes: set[str] = set()
        for f in active:
            where, name = scope(f.target)
            if f.get("partition"):
                if where == "node":
                    cut_nodes.add(name or "")
                else:
                    cut.add(names.vm_port(name or ""))
            elif f.get("loss"):
                for vm in self._vms_of(f):
                    port = names.vm_port(vm)
                    keep[port] = keep.get(port, 1.0) * (1 - f.get("loss") / 100)
        want: dict[str, NodeRules] = {}
        for node in self.dc.nodes:
            ports = {names.vm_port(vm) for vm, n in self.placement.items() if n == node.name}
            loss = tuple(sorted((p, round((1 - k) * 100, 4)) for p, k in keep.items() if p in ports))
            # A cut VM's port is in every node's set: it matches only where the port is,
            # so the cut holds through a move without a change here.
            want[node.name] = (loss, tuple(sorted(cut)), node.name in cut_nodes)
        have = self._rules or {}

        def load(node: str) -> None:
            rules = want[node]
            qdisc.node_rules(names.node_ns(self.dc.name, node), loss=dict(rules[0]), cut_ports=list(rules[1]),
                             metadata_address=METADATA_ADDRESS, uplink=names.NODE_UPLINK if rules[2] else None)
        _each_node(load, [n for n, rules in want.items() if self._rules is None or have.get(n) != rules])
        self._rules = want

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        moments = [t for f in self.faults.values() for t in (f.starts_at, f.ends_at) if t is not None and t > now]
        if moments:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, min(moments) - now), self._tick)

    def _tick(self) -> None:
        self._timer = None
        try:
            self.apply()
        except NetsimError as exc:
            log.error("applying the faults failed: %s", exc)

    def close(self) -> None:
        """Stop the timer and the delay lines (the daemon stops; the faults stay stored,
        and a daemon started again puts its lines back)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.lines.close()


NODE_WORKERS = 16
"""Nodes changed at once. Replacing a qdisc or removing nft rules waits for an RCU grace
period in the kernel (about 10 ms, no CPU): one node after another, a fault on a
thousand VMs of a hundred nodes took 1.5 s; threads (each enters its own node's
namespace, :func:`netsim.kernel.netns.entered`) overlap the waits."""


def _each_node(work: Callable[[str], None], nodes: list[str]) -> None:
    """``work(node)`` for every node, several at once; the first error is raised once all ended."""
    if len(nodes) <= 1:
        for node in nodes:
            work(node)
        return
    with ThreadPoolExecutor(max_workers=min(NODE_WORKERS, len(nodes)), thread_name_prefix="faults") as pool:
        futures = [pool.submit(work, node) for node in nodes]
    for future in futures:
        future.result()
