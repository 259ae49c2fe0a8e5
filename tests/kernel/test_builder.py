"""The datacenter in real namespaces: who reaches whom, and what the host sees."""

import os
import socket

import pytest

from netsim.model import names
from netsim.kernel import netns
from netsim.errors import BuildError
from netsim.kernel.rtnl import Rtnl
from netsim.model import addressing
from netsim.model import grid

pytestmark = pytest.mark.root


def test_vms_of_one_node_reach_each_others_link_local_addresses(datacenter, assert_reachable):
    # web1 and web3 share node n1
    assert_reachable("web1", "web3:link-local")
    assert_reachable("web3", "web1:link-local")
    assert_reachable("web1", "metadata")


def test_vms_of_different_nodes_do_not_reach_link_local_even_through_the_gateway(
        datacenter, host_exec, assert_reachable, assert_unreachable):
    assert_unreachable("web2", "web1:link-local")
    web1_ll = datacenter.link_local_addresses()["web1"]
    added = host_exec("web2", "ip", "route", "add", f"{web1_ll}/32", "via", "198.18.1.1")
    assert added.returncode == 0, added.stderr
    assert_unreachable("web2", "web1:link-local")
    # The node really dropped it in its forward path (RFC 3927 section 7).
    rules = host_exec("node:n2", "nft", "list", "chain", "inet", "netsim", "forward").stdout
    assert "daddr 169.254.0.0/16 counter packets 0 " not in rules
    # The routable addresses still cross nodes.
    assert_reachable("web2", "web1")


def test_vm_ports_do_not_learn_nor_flood_and_hold_their_vms_mac_statically(datacenter, assert_reachable):
    dc = datacenter
    assert_reachable("web1", "web3:link-local")  # traffic between known MACs is delivered
    for node in dc.topology.nodes:
        vms = dc.topology.vms_on(node.name)
        with Rtnl.in_namespace(names.node_ns(dc.name, node.name)) as sock:
            entries = {mac: (port, static) for mac, port, static in sock.fdb_entries(names.NIC_INDEX)}
            for vm in vms:
                options = sock.port_options(names.PORT_INDEX_BASE + vm.index)
                assert (options["learning"], options["unicast_flood"]) == (0, 0), (vm.name, options)
        # Exactly the node's VMs, each static on its own port: nothing was learned.
        assert entries == {addressing.vm_mac(dc.name, vm.index): (names.PORT_INDEX_BASE + vm.index, True)
                           for vm in vms}, node.name


def test_routable_addresses_reach_across_nodes_and_extra_hosts(datacenter, assert_reachable):
    for src, dst in [("web1", "web2"), ("web2", "web3"), ("client", "web1"), ("web3", "lb"), ("ops", "client")]:
        assert_reachable(src, dst)


def test_the_host_namespace_has_no_link_or_route_into_the_datacenter(datacenter):
    ours = {netns.inode_of(n) for n in netns.list_names(names.dc_prefix(datacenter.name))}
    assert len(ours) == 9
    with Rtnl.here("host") as host:
        links = host.links()
        addresses = host.addresses()
    assert not [n for n in links if n.startswith(("p-", "n-", "h-", "br0", "uplink", "svc0"))]
    assert not [a for _, a, _ in addresses if a.startswith(("198.18.", "198.19."))]
    # Each namespace's eth0 peer lives in a node or the fabric, never in the host.
    for path in os.listdir("/sys/class/net"):
        assert not path.startswith(names.PREFIX)


def test_vm_namespace_has_lo_eth0_addresses_and_default_route(datacenter, host_exec):
    out = host_exec("web1", "ip", "-o", "-4", "addr").stdout
    ll = datacenter.link_local_addresses()["web1"]
    assert "lo" in out and "198.18.0.2/24" in out and f"{ll}/16" in out
    assert "default via 198.18.0.1 dev eth0" in host_exec("web1", "ip", "route").stdout
    bridge = host_exec("node:n1", "ip", "-d", "link", "show", "br0").stdout
    assert "stp_state 0" in bridge
    assert "169.254.169.254/16" in host_exec("node:n1", "ip", "-o", "-4", "addr", "show", "br0").stdout


def test_static_link_local_mode_gives_deterministic_addresses(datacenter_factory, host_exec):
    dc = datacenter_factory(linklocal="static")
    assert dc.link_local_addresses() == {"web1": "169.254.1.1", "web2": "169.254.1.2", "web3": "169.254.1.3"}
    assert "169.254.1.1/16" in host_exec("web1", "ip", "-o", "-4", "addr").stdout


def test_two_datacenters_coexist(datacenter_factory, assert_reachable):
    a = datacenter_factory()
    b = datacenter_factory()
    assert a.name != b.name
    assert len(netns.list_names(names.dc_prefix(a.name))) == len(netns.list_names(names.dc_prefix(b.name))) == 9
    assert_reachable("web1", "web3:link-local")  # in b, the latest


@pytest.mark.parametrize("workers", ["1", "2"])
def test_failure_mid_build_rolls_back_everything(netsim_state_dir, monkeypatch, workers):
    from netsim.api.datacenter import up
    from netsim.state import StateDir

    monkeypatch.setenv("NETSIM_BUILD_WORKERS", workers)
    topo = grid(f"rb{workers}{os.getpid() % 1000}", 4, 3)

    def fail_at_vm5(what, done, total):
        if what == "vm vm5":
            raise OSError(28, "No space left on device")

    with pytest.raises(BuildError, match="rolled back.*No space left"):
        up(topo, progress=fail_at_vm5)
    assert netns.list_names(names.dc_prefix(topo.name)) == []
    assert not StateDir(topo.name).exists()


def test_a_build_in_parallel_workers_gives_the_same_datacenter(datacenter_factory, monkeypatch,
                                                              assert_reachable):
    monkeypatch.setenv("NETSIM_BUILD_WORKERS", "3")
    dc = datacenter_factory(grid("par" + str(os.getpid() % 1000), 6, 2, linklocal="static"))
    assert len(netns.list_names(names.dc_prefix(dc.name))) == 6 + 12 + 4
    assert_reachable("vm1", "vm12")
    assert_reachable("vm12", "client")
    assert_reachable("vm3", "vm4:link-local")


def test_down_is_idempotent_and_waits_for_namespaces(datacenter_factory):
    dc = datacenter_factory()
    removed = dc.down()
    assert removed == 9
    assert netns.list_names(names.dc_prefix(dc.name)) == []
    assert dc.down() == 0


def test_no_traffic_helper_runs_from_the_host_namespace():
    from netsim.errors import RootNamespaceError
    from netsim.kernel.safety import emulated_socket, require_emulated_namespace

    with pytest.raises(RootNamespaceError):
        require_emulated_namespace()
    with pytest.raises(RootNamespaceError):
        emulated_socket("not-ours", socket.AF_INET, socket.SOCK_DGRAM)


def test_the_kernel_holds_the_address_plan(datacenter, host_exec):
    """Every VM's port, MAC, routable address, routes and port-security entry are the plan's."""
    from netsim.model.plan import plan_of
    dc = datacenter
    plan = plan_of(dc.topology)
    for vm in dc.topology.vms:
        p = plan.vm(vm.name)
        with Rtnl.in_namespace(names.vm_ns(dc.name, vm.name)) as sock:
            mine = {(a, plen) for i, a, plen in sock.addresses() if i == names.NIC_INDEX}
            assert sock.link_state(names.NIC_INDEX)[2] == p.mac
        assert set(p.addresses) <= mine, (vm.name, mine)
        with Rtnl.in_namespace(names.node_ns(dc.name, p.home)) as sock:
            assert sock.link_state(p.port_index)[0] == p.port
        routes = host_exec(vm.name, "ip", "-4", "route", "show").stdout
        for r in p.routes:
            assert (f"{r.dst} via {r.gateway}" if r.gateway else f"{r.dst} dev eth0") in routes, (vm.name, routes)
        rules = host_exec(f"node:{p.home}", "nft", "list", "set", "bridge", "netsim_portsec", "owner").stdout
        assert f'{p.routable} . "{p.port}"' in rules, rules
    for node in dc.topology.nodes:
        with Rtnl.in_namespace(names.node_ns(dc.name, node.name)) as sock:
            assert (plan.node(node.name).gateway, 24) in {(a, plen) for _, a, plen in sock.addresses()}
