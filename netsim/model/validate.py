"""Checks a Datacenter as a whole: names, references and the address plan."""

from __future__ import annotations

from collections.abc import Callable

from netsim.model import bounds, names
from netsim.errors import TopologyError
from netsim.model import addressing
from netsim.model.topology import Datacenter
from netsim_imds import flavors

# Locates a field for error messages: (table, index in that table, key) -> line or None.
Locator = Callable[[str, int, str], "int | None"]


def _no_line(table: str, index: int, key: str) -> int | None:
    return None


def validate(dc: Datacenter, locate: Locator = _no_line, file: str | None = None) -> None:
    """Raise TopologyError naming file, line and field for the first problem in ``dc``."""

    def fail(message: str, table: str, index: int, key: str) -> None:
        field = f"{table}[{index}].{key}" if index >= 0 else f"{table}.{key}"
        raise TopologyError(message, file=file, line=locate(table, index, key), field=field)

    if problem := names.dc_name_problem(dc.name):
        fail(problem, "datacenter", -1, "name")
    try:
        flavors.resolve(dc.cloud)  # imports it: a flavor that cannot load fails here, not in the daemon
    except flavors.FlavorError as exc:
        fail(str(exc), "datacenter", -1, "cloud")
    if dc.cloud == "aws":
        from netsim_imds.aws.tree import REGION  # the flavor's fact (resolved just above)
        if not REGION.fullmatch(dc.location):
            fail(f"must be an AWS region name such as 'us-east-1' for cloud 'aws', not {dc.location!r}",
                 "datacenter", -1, "location")
    if not dc.nodes:
        raise TopologyError("a datacenter needs at least one [[node]]", file=file, field="node")
    if len(dc.nodes) > addressing.MAX_NODES:
        fail(f"{len(dc.nodes)} nodes overflow the address plan (at most {addressing.MAX_NODES} "
             "node subnets fit in 198.18.0.0/15)", "node", addressing.MAX_NODES, "name")
    if len(dc.vms) > addressing.MAX_STATIC_LINK_LOCAL:
        fail(f"{len(dc.vms)} VMs overflow the link-local plan (at most {addressing.MAX_STATIC_LINK_LOCAL})",
             "vm", addressing.MAX_STATIC_LINK_LOCAL, "name")

    seen: dict[str, str] = {host: "an extra host" for host in names.EXTRA_HOSTS}
    for table, items in (("node", dc.nodes), ("vm", dc.vms), ("availability_set", dc.availability_sets)):
        for i, item in enumerate(items):
            if problem := names.check_name(item.name, table.replace("_", " "), names.MAX_HOST_NAME):
                fail(problem, table, i, "name")
            if table != "availability_set":
                if item.name in seen:
                    fail(f"name {item.name!r} is already used by {seen[item.name]}", table, i, "name")
                seen[item.name] = f"a {table}"
    avsets = {}
    for i, a in enumerate(dc.availability_sets):
        if a.name in avsets:
            fail(f"availability set {a.name!r} is defined twice", "availability_set", i, "name")
        avsets[a.name] = a
        for key, value, bound in (("update_domains", a.update_domains, bounds.UPDATE_DOMAINS),
                                  ("fault_domains", a.fault_domains, bounds.FAULT_DOMAINS)):
            if problem := bounds.problem(value, bound, f"{key} (Azure's limits)"):
                fail(problem, "availability_set", i, key)

    node_names = {n.name for n in dc.nodes}
    per_node: dict[str, int] = {}
    for i, vm in enumerate(dc.vms):
        if vm.node not in node_names:
            fail(f"VM {vm.name!r} is placed on unknown node {vm.node!r} "
                 f"(nodes: {', '.join(sorted(node_names))})", "vm", i, "node")
        per_node[vm.node] = per_node.get(vm.node, 0) + 1
        # Checked for every VM, in a set or not: a domain is served as a string and walked.
        for key, value, bound in (("update_domain", vm.update_domain, bounds.UPDATE_DOMAIN),
                                  ("fault_domain", vm.fault_domain, bounds.FAULT_DOMAIN)):
            if problem := bounds.problem(value, bound, key):
                fail(problem, "vm", i, key)
        # AWS's instance metadata options (HttpTokens, HttpPutResponseHopLimit).
        if vm.http_tokens not in ("optional", "required"):
            fail(f"must be 'optional' or 'required', not {vm.http_tokens!r}", "vm", i, "http_tokens")
        if isinstance(vm.hop_limit, bool) or not isinstance(vm.hop_limit, int) or not 1 <= vm.hop_limit <= 64:
            fail(f"must be an integer from 1 to 64 (AWS's HttpPutResponseHopLimit), not {vm.hop_limit!r}",
                 "vm", i, "hop_limit")
        _check_containers(vm, i, fail)
        if per_node[vm.node] > addressing.MAX_VMS_PER_NODE:
            fail(f"node {vm.node!r} holds more than {addressing.MAX_VMS_PER_NODE} VMs, "
                 "which overflows its /24 of the address plan", "vm", i, "node")
        if vm.availability_set is None:
            continue
        if vm.availability_set not in avsets:
            fail(f"unknown availability set {vm.availability_set!r}", "vm", i, "availability_set")
        a = avsets[vm.availability_set]
        if not 0 <= vm.update_domain < a.update_domains:
            fail(f"update domain {vm.update_domain} is outside 0..{a.update_domains - 1} of {a.name!r}",
                 "vm", i, "update_domain")
        if not 0 <= vm.fault_domain < a.fault_domains:
            fail(f"fault domain {vm.fault_domain} is outside 0..{a.fault_domains - 1} of {a.name!r}",
                 "vm", i, "fault_domain")


def _check_containers(vm, i: int, fail) -> None:
    """A VM's ``containers``: at most :data:`bounds.CONTAINERS_PER_VM`, each named like a
    host (it names a namespace and a veth) and once."""
    if problem := bounds.problem(len(vm.containers), bounds.CONTAINERS_PER_VM, "the number of containers"):
        fail(problem, "vm", i, "containers")
    seen: set[str] = set()
    for name in vm.containers:
        if problem := names.check_name(name, "container", names.MAX_HOST_NAME):
            fail(problem, "vm", i, "containers")
        if name in seen:
            fail(f"container {name!r} is listed twice in VM {vm.name!r}", "vm", i, "containers")
        seen.add(name)
