"""Pure tests of the realised address plan on invented topologies."""

import netaddr
import pytest

from netsim.kernel import nft
from netsim.model import addressing, names
from netsim.model.plan import LINK_LOCAL_ROUTE_METRIC, Route, plan_of
from netsim.model.topology import VM, AvailabilitySet, Datacenter, Node, grid


def _uneven(linklocal="claim") -> Datacenter:
    """Three nodes, VMs declared out of node order: slots come from each node's own list."""
    nodes = (Node("a", 0), Node("b", 1), Node("c", 2))
    vms = (VM("x", "b", 0, "s"), VM("y", "a", 1, "s"), VM("z", "b", 2, "s"), VM("w", "b", 3, "s"))
    return Datacenter("dcp", nodes, vms, (AvailabilitySet("s"),), linklocal=linklocal)


def test_routable_addresses_follow_the_slot_on_the_home_node():
    plan = plan_of(_uneven())
    assert plan.vm("y").routable == "198.18.0.2"
    assert [plan.vm(v).routable for v in ("x", "z", "w")] == ["198.18.1.2", "198.18.1.3", "198.18.1.4"]
    assert {p.home for p in plan.vms.values()} == {"a", "b"}
    assert plan.node("c").subnet == "198.18.2.0/24" and plan.node("c").gateway == "198.18.2.1"


def test_every_vm_has_a_unique_port_index_mac_and_address():
    plan = plan_of(grid("dcg", 4, 7))
    for attr in ("port_index", "mac", "routable", "port"):
        values = [getattr(p, attr) for p in plan.vms.values()]
        assert len(set(values)) == len(values) == 28, attr
    assert plan.vm("vm1").port_index == names.PORT_INDEX_BASE + 0
    assert plan.vm("vm1").port == "p-vm1"
    assert plan.vm_by_mac[addressing.vm_mac("dcg", 5)] == "vm6"
    allowed = netaddr.IPSet(["169.254.0.0/16", "198.18.0.0/15"])
    assert all(p.routable in allowed and p.routable in netaddr.IPNetwork(p.subnet) for p in plan.vms.values())


def test_claiming_vms_route_link_local_on_link_and_static_ones_own_an_address():
    claim, static = plan_of(_uneven("claim")).vm("x"), plan_of(_uneven("static")).vm("x")
    assert claim.static_link_local is None and claim.fixed_addresses == ("198.18.1.2",)
    assert claim.routes == (Route("169.254.0.0/16", oif=names.NIC_INDEX, metric=LINK_LOCAL_ROUTE_METRIC),
                            Route("default", gateway="198.18.1.1"))
    assert claim.addresses == (("198.18.1.2", 24),)
    assert static.static_link_local == addressing.static_link_local(0) == "169.254.1.1"
    assert static.routes == (Route("default", gateway="198.18.1.1"),)
    assert static.addresses == (("198.18.1.2", 24), ("169.254.1.1", 16))
    assert static.fixed_addresses == ("198.18.1.2", "169.254.1.1")


def test_port_security_input_lists_the_home_vms_of_a_node_only():
    plan = plan_of(_uneven("static"))
    ports = plan.port_security("b")
    assert set(ports) == {"p-x", "p-z", "p-w"}
    assert ports["p-z"] == (addressing.vm_mac("dcp", 2), ["198.18.1.3", "169.254.1.3"])
    assert plan.port_security("c") == {}
    rules = nft.port_security(ports, addressing.METADATA_ADDRESS)
    assert '"p-z" . ' + addressing.vm_mac("dcp", 2) in rules and "198.18.1.3 . \"p-z\"" in rules


def test_away_routes_keep_the_home_address_and_gateway():
    plan = plan_of(_uneven())
    assert plan.away_routes("x", "b") is None
    away = plan.away_routes("x", "c")
    assert away.host_route == "198.18.1.2/32" and away.home_gateway == "198.18.1.1"
    assert away.fabric_via == plan.node("c").uplink == addressing.node_addresses(2).uplink


def test_the_plan_is_computed_once_per_topology_and_agrees_with_routable_of():
    dc = _uneven()
    assert plan_of(dc) is plan_of(dc)
    assert addressing.routable_of(dc, "w") == plan_of(dc).vm("w").routable
    with pytest.raises(KeyError):
        plan_of(dc).vm("nope")
