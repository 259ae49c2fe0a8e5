"""Who reaches whom in a datacenter: the matrix behind ``netsim reach``."""

from __future__ import annotations

from dataclasses import dataclass

from netsim.model import names
from netsim.kernel.probe import Probe, run_probes
from netsim.model import addressing
from netsim.model.plan import plan_of
from netsim.model.topology import Datacenter
from netsim_imds.address import METADATA_PORT



@dataclass(frozen=True)
class Target:
    """A destination in the matrix: a host's address of one kind."""

    host: str
    kind: str      # "routable", "link-local" or "metadata"
    address: str
    port: int | None = None


def hosts(dc: Datacenter) -> list[str]:
    """Every source of the matrix: the VMs, their containers (``VM/CONTAINER``), then lb,
    client and ops. Containers are sources only: NATed by their VM, nothing outside it
    can address them, as with Docker's default bridge network."""
    containers = [f"{v.name}{names.CONTAINER_SEPARATOR}{c}" for v in dc.vms for c in v.containers]
    return [v.name for v in dc.vms] + containers + list(names.EXTRA_HOSTS)


def namespace_of(dc: Datacenter, host: str) -> str:
    """Namespace of a VM, a container (``VM/CONTAINER``) or an extra host."""
    if host in names.EXTRA_HOSTS:
        return names.extra_ns(dc.name, host)
    vm, container = names.split_host(host)
    return names.container_ns(dc.name, vm, container) if container else names.vm_ns(dc.name, vm)


def targets(dc: Datacenter, link_local: dict[str, str | None], metadata: bool = False) -> list[Target]:
    """The destinations: each VM's routable and link-local address, the extra hosts'
    addresses, and (with ``metadata``) each VM's own node's metadata endpoint."""
    out = []
    for vm in dc.vms:
        out.append(Target(vm.name, "routable", plan_of(dc).vm(vm.name).routable))
        if link_local.get(vm.name):
            out.append(Target(vm.name, "link-local", link_local[vm.name]))
    for host in names.EXTRA_HOSTS:
        out.append(Target(host, "routable", addressing.EXTRA_HOST_ADDRESSES[host]))
    if metadata:
        out.append(Target("metadata", "metadata", addressing.METADATA_ADDRESS, METADATA_PORT))
    return out


def matrix(dc: Datacenter, link_local: dict[str, str | None], *, metadata: bool = False,
           timeout: float = 1.0) -> list[dict]:
    """Probe every (host, target) pair; one dict per pair, JSON-ready. A container probes
    what its VM does, its node's metadata endpoint included (through the VM's NAT)."""
    probes = {}
    for src in hosts(dc):
        for t in targets(dc, link_local, metadata):
            if t.host == src or (t.kind == "metadata" and src in names.EXTRA_HOSTS):
                continue
            probes[Probe(namespace_of(dc, src), t.address, t.port)] = (src, t)
    answers = run_probes(list(probes), timeout=timeout)
    return [{"from": src, "to": t.host, "kind": t.kind, "address": t.address, "port": t.port,
             "reachable": answers[p]} for p, (src, t) in probes.items()]


def render(rows: list[dict]) -> str:
    """A text matrix: one row per source, one column per destination host; each cell
    lists R (routable), L (link-local) and M (metadata) when reached, '-' when not."""
    sources = list(dict.fromkeys(r["from"] for r in rows))
    tos = list(dict.fromkeys(r["to"] for r in rows))  # containers are never destinations
    dests = [s for s in sources if s in tos] + [d for d in tos if d not in sources]
    cell: dict[tuple[str, str], str] = {}
    letter = {"routable": "R", "link-local": "L", "metadata": "M"}
    for r in rows:
        key = (r["from"], r["to"])
        cell[key] = cell.get(key, "") + (letter[r["kind"]] if r["reachable"] else "-")
    width = max(6, *(len(d) for d in dests + sources)) + 2
    lines = ["from".ljust(width) + "".join(d.ljust(width) for d in dests)]
    for s in sources:
        lines.append(s.ljust(width) + "".join(cell.get((s, d), ".").ljust(width) for d in dests))
    lines.append("R routable, L link-local, M its node's 169.254.169.254:80; '-' not reached, '.' self or not applicable")
    return "\n".join(lines)
