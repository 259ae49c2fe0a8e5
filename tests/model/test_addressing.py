"""Pure tests of the address plan: only 169.254/16 and 198.18/15, no overlaps."""

import netaddr

from netsim.model import addressing


def test_every_emulated_address_is_in_the_allowed_ranges():
    allowed = netaddr.IPSet(["169.254.0.0/16", "198.18.0.0/15"])
    for k in (0, 1, addressing.MAX_NODES - 1):
        plan = addressing.node_addresses(k)
        for a in (plan.gateway, plan.uplink, plan.fabric_side, addressing.vm_routable(k, 252)):
            assert a in allowed
    for a in addressing.EXTRA_HOST_ADDRESSES.values():
        assert a in allowed


def test_node_subnets_and_uplinks_do_not_overlap():
    subnets = [netaddr.IPNetwork(addressing.node_addresses(k).subnet) for k in range(addressing.MAX_NODES)]
    assert len(netaddr.IPSet(subnets)) == 256 * addressing.MAX_NODES
    assert not netaddr.IPSet(subnets) & netaddr.IPSet([addressing.UPLINKS, addressing.SERVICES])
    last = addressing.node_addresses(addressing.MAX_NODES - 1)
    assert netaddr.IPAddress(last.uplink) in addressing.UPLINKS


def test_static_link_local_avoids_reserved_blocks_and_metadata():
    seen = set()
    for i in range(addressing.MAX_STATIC_LINK_LOCAL):
        a = addressing.static_link_local(i)
        third, fourth = map(int, a.split(".")[2:])
        assert 1 <= third <= 254 and a != addressing.METADATA_ADDRESS
        seen.add(a)
    assert len(seen) == addressing.MAX_STATIC_LINK_LOCAL


def test_macs_are_unicast_locally_administered_and_distinct_per_datacenter():
    m = addressing.vm_mac("dc1", 5)
    assert int(m[:2], 16) & 0b11 == 0b10
    assert addressing.vm_mac("dc1", 5) != addressing.vm_mac("dc2", 5)
    assert addressing.vm_mac("dc1", 5) != addressing.vm_mac("dc1", 6)
