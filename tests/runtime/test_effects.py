"""Maintenance effects applied to real VMs: freeze, reboot, move, remove."""

import json
import time

import pytest

from netsim.model import names
from netsim.kernel import netns, procfs
from netsim.runtime.effects import Effects
from netsim.runtime.services import Services

pytestmark = pytest.mark.root

SERVICE = "exec sleep 600"


@pytest.fixture
def dc(datacenter_factory):
    return datacenter_factory(linklocal="static")


@pytest.fixture
def effects(dc):
    placement = {v.name: v.node for v in dc.topology.vms}
    return Effects(dc.topology, placement, None, Services(dc.topology, dc.state, dc.record_process))


def state_of(pid):
    return procfs.task_state(pid)


def test_freeze_stops_processes_and_cuts_the_port_then_thaw_resumes(dc, effects, assert_reachable,
                                                                    assert_unreachable):
    proc = dc.popen("web1", ["sleep", "600"])
    assert effects.freeze("web1") >= 1
    assert state_of(proc.pid) == "T"
    assert_unreachable("web3", "web1")
    effects.thaw("web1")
    assert state_of(proc.pid) in ("S", "R")
    assert_reachable("web3", "web1", timeout=5)
    proc.kill()
    proc.wait()


def test_reboot_ends_processes_and_restarts_declared_services(datacenter_factory, assert_reachable):
    topo = ('[[node]]\nname = "n1"\n[[vm]]\nname = "a"\n[[vm]]\nname = "b"\nservices = ["exec sleep 600"]\n')
    dc = datacenter_factory(topo, linklocal="static")
    placement = {v.name: v.node for v in dc.topology.vms}
    services = Services(dc.topology, dc.state, dc.record_process)
    effects = Effects(dc.topology, placement, None, services)
    first = services.start("b")
    stray = dc.popen("b", ["sleep", "600"])
    effects.power_off("b")
    assert effects.processes("b") == [] and stray.wait(5) is not None
    effects.power_on("b")
    again = [p for p in effects.processes("b")]
    assert again and set(again).isdisjoint(first) and services.alive("b")
    assert "default via 198.18.0.1" in dc.run("b", ["ip", "route"]).stdout  # the link took it away
    assert_reachable("a", "b")
    assert_reachable("b", "client")


def test_move_puts_the_vm_on_another_node_with_the_same_identity(dc, effects, host_exec, assert_reachable):
    before = json.loads(host_exec("web1", "curl", "-s", "http://169.254.169.254/metadata/v1/InstanceInfo").stdout)
    effects.move("web1", "n2")
    assert effects.placement["web1"] == "n2"
    port = names.vm_port("web1")
    assert port in host_exec("node:n2", "ip", "-br", "link").stdout
    assert port not in host_exec("node:n1", "ip", "-br", "link").stdout
    deadline = time.monotonic() + 5
    while True:
        out = host_exec("web1", "curl", "-s", "-m", "2", "http://169.254.169.254/metadata/v1/InstanceInfo").stdout
        if out or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert json.loads(out) == before
    # It now shares node 2's link with web2, and keeps its routable address everywhere.
    assert_reachable("web1", "web2:link-local")
    assert_reachable("client", "web1")
    assert_reachable("web3", "web1")      # from its old subnet, through the fabric
    assert_reachable("web1", "lb")


def test_a_moved_port_does_not_learn_and_holds_the_vms_mac_statically_on_its_new_node(dc, effects,
                                                                                     assert_reachable):
    from netsim.kernel.rtnl import Rtnl
    from netsim.model import addressing
    mac, port = addressing.vm_mac(dc.name, dc.topology.vm("web1").index), names.PORT_INDEX_BASE
    port += dc.topology.vm("web1").index
    effects.move("web1", "n2")
    effects.move("web1", "n2")  # again, as a restarted daemon would: idempotent
    with Rtnl.in_namespace(names.node_ns(dc.name, "n2")) as sock:
        options = sock.port_options(port)
        assert (options["learning"], options["unicast_flood"]) == (0, 0), options
        assert (mac, port, True) in sock.fdb_entries(names.NIC_INDEX)
        assert sock.fdb_port(names.NIC_INDEX, mac) == port  # what caller identity reads
    with Rtnl.in_namespace(names.node_ns(dc.name, "n1")) as sock:
        assert mac not in {m for m, _, _ in sock.fdb_entries(names.NIC_INDEX)}
    effects.move("web1", "n1")  # and back home
    with Rtnl.in_namespace(names.node_ns(dc.name, "n1")) as sock:
        assert (mac, port, True) in sock.fdb_entries(names.NIC_INDEX)
        assert sock.port_options(port)["learning"] == 0
    assert_reachable("web3", "web1")    # same node again, through the pinned port
    assert_reachable("client", "web1")  # the fabric forgot the route to n2 (a scope-blind delete)


def test_remove_deletes_the_vm(dc, effects, assert_unreachable):
    effects.remove("web3")
    assert netns.inode_of(names.vm_ns(dc.name, "web3")) is None
    assert "web3" not in effects.placement
    assert_unreachable("web1", "198.18.0.3")
