"""Containers inside VMs in the model: the topology key, its bad input (file, line, field),
their names, their addresses in the plan, and ``VM/CONTAINER`` host names. Pure logic."""

from __future__ import annotations

import dataclasses

import netaddr
import pytest

from netsim.errors import HostNotFound, TopologyError
from netsim.kernel.hostexec import host_namespace
from netsim.model import addressing, names
from netsim.model.load import parse
from netsim.model.plan import plan_of
from netsim.state import datacenter_from_json, datacenter_to_json
from netsim.tools import reach

TOPOLOGY = """
[datacenter]
name = "dc1"

[[node]]
name = "n1"

[[node]]
name = "n2"

[[vm]]
name = "web1"
node = "n1"
{keys}

[[vm]]
name = "web2"
node = "n2"
containers = ["app"]
"""


def test_containers_are_read_from_the_topology_and_survive_the_state_folder() -> None:
    dc = parse(TOPOLOGY.format(keys='containers = ["c1", "c2"]'))
    assert dc.vm("web1").containers == ("c1", "c2") and dc.vm("web2").containers == ("app",)
    assert datacenter_from_json(datacenter_to_json(dc)) == dc
    assert parse(TOPOLOGY.format(keys="")).vm("web1").containers == ()


@pytest.mark.parametrize("keys, words", [
    ('containers = ["Bad_Name"]', "container name 'Bad_Name' must start with a lowercase letter"),
    ('containers = ["c1", "c1"]', "container 'c1' is listed twice in VM 'web1'"),
    ('containers = ["abcdefghijklm"]', "container name 'abcdefghijklm' is 13 characters; the limit is 12"),
    ('containers = ["a.b"]', "must start with a lowercase letter"),
    ('containers = "c1"', "must be a list of strings"),
    ("containers = [1]", "must be a list of strings"),
    ("containers = [" + ", ".join(f'"c{i}"' for i in range(17)) + "]",
     "the number of containers must be an integer from 0 to 16 containers, not 17"),
])
def test_bad_containers_name_the_file_the_line_and_the_field(keys: str, words: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse(TOPOLOGY.format(keys=keys), "dc.toml")
    assert (info.value.file, info.value.line, info.value.field) == ("dc.toml", 14, "vm[0].containers")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_the_plan_puts_every_vms_containers_in_the_same_nated_subnet_outside_everything_else() -> None:
    dc = parse(TOPOLOGY.format(keys='containers = ["c1", "c2"]'))
    plan = plan_of(dc)
    web1, web2 = plan.vm("web1"), plan.vm("web2")
    assert [(c.name, c.address, c.gateway, c.port) for c in web1.containers] == [
        ("c1", "198.19.252.2", "198.19.252.1", "c-c1"), ("c2", "198.19.252.3", "198.19.252.1", "c-c2")]
    assert web1.container("c2").namespace == "nsim-dc1-ct-web1.c2"
    assert web2.container("app").address == web1.container("c1").address  # as 172.17.0.2 on every Docker host
    bridge = web1.container_bridge
    assert (bridge.address, bridge.prefixlen, bridge.subnet) == ("198.19.252.1", 24, "198.19.252.0/24")
    assert bridge.mac != web2.container_bridge.mac
    macs = [c.mac for p in (web1, web2) for c in p.containers] + [p.mac for p in (web1, web2)]
    assert len(set(macs)) == len(macs)
    assert len({c.port_index for c in web1.containers}) == 2
    assert plan.vm("web1").container("c1").port_index not in (names.LO_INDEX, names.NIC_INDEX,
                                                                names.CONTAINER_BRIDGE_INDEX)
    with pytest.raises(KeyError):
        web1.container("nope")
    # Nothing outside a VM is addressed from the container subnet (the VM would take it
    # for one of its containers): no node subnet, uplink or service address falls in it.
    used = [netaddr.IPNetwork(addressing.node_addresses(i).subnet) for i in range(addressing.MAX_NODES)]
    used += [addressing.UPLINKS, addressing.SERVICES]
    assert all(not (addressing.CONTAINERS in u or u in addressing.CONTAINERS) for u in used)
    assert addressing.CONTAINERS in addressing.ROUTABLE


def test_container_names_never_collide_across_vms() -> None:
    # VM "a" with container "b-c" against VM "a-b" with container "c".
    assert names.container_ns("dc1", "a", "b-c") != names.container_ns("dc1", "a-b", "c")
    assert names.dc_of_namespace(names.container_ns("dc1", "web1", "c1")) == "dc1"
    assert len(names.container_port("abcdefghijkl")) <= names.IFNAMSIZ
    assert names.split_host("web1/c1") == ("web1", "c1") and names.split_host("web1") == ("web1", None)


def test_a_host_names_a_container_as_vm_slash_container() -> None:
    dc = parse(TOPOLOGY.format(keys='containers = ["c1"]'))
    assert host_namespace(dc, "web1/c1") == "nsim-dc1-ct-web1.c1"
    assert host_namespace(dc, "web1") == "nsim-dc1-vm-web1"
    with pytest.raises(HostNotFound, match="VM 'web1' has no container 'zz' \\(its containers: c1\\)"):
        host_namespace(dc, "web1/zz")
    with pytest.raises(HostNotFound, match="no VM 'nosuch' in datacenter 'dc1' for container 'c1'"):
        host_namespace(dc, "nosuch/c1")
    with pytest.raises(HostNotFound, match="its containers: none"):
        host_namespace(dataclasses.replace(dc, vms=(dataclasses.replace(dc.vm("web1"), containers=()),)),
                       "web1/c1")


def test_reach_probes_from_containers_but_never_to_them() -> None:
    dc = parse(TOPOLOGY.format(keys='containers = ["c1"]'))
    assert reach.hosts(dc) == ["web1", "web2", "web1/c1", "web2/app", "lb", "client", "ops"]
    assert reach.namespace_of(dc, "web2/app") == "nsim-dc1-ct-web2.app"
    rows = [{"from": "web1", "to": "web2", "kind": "routable", "reachable": True},
            {"from": "web1/c1", "to": "web2", "kind": "routable", "reachable": True},
            {"from": "web1/c1", "to": "metadata", "kind": "metadata", "reachable": False}]
    header = reach.render(rows).splitlines()[0].split()
    assert header == ["from", "web2", "metadata"]
