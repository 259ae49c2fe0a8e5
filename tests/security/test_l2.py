"""Layer-2 attacks from a hostile VM (issue 9), across real namespaces.

web1 attacks db1, its neighbour on node n1, from inside its own namespace (scapy, raw
frames: :mod:`l2agent`); web2 is an honest VM on node n2. Each test is bounded in frames
and time, and asserts both that the attack fails and that honest VMs are unaffected.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from netsim.harness import l2attack
from netsim.model import names
from netsim.kernel import nft

pytestmark = pytest.mark.root

MARKER = "6e73696d2d6c322d6d61726b"  # b"nsim-l2-mark"


@pytest.fixture
def l2(datacenter_factory):
    """(World, Agent in web1) on a fresh datacenter of :data:`l2attack.TOPOLOGY`."""
    dc = datacenter_factory(l2attack.TOPOLOGY)
    world = l2attack.World(dc)
    with l2attack.Agent(dc, "web1") as agent:
        yield world, agent


def counter(w: l2attack.World, comment: str, node: str = "n1") -> int:
    """Packets the port-security rule with ``comment`` dropped on ``node``."""
    out = nft.run(names.node_ns(w.dc.name, node), "list table bridge netsim_portsec")
    line = next(line for line in out.splitlines() if f'comment "{comment}"' in line)
    return int(re.search(r"packets (\d+)", line).group(1))


def assert_honest_vms_unaffected(w: l2attack.World) -> None:
    """Every VM is answered as itself, db1 kept its address, and both sides of db1's link
    still map each other's address to the right MAC."""
    assert {vm: w.identity(vm) for vm in ("web1", "db1", "web2")} == {"web1": "web1", "db1": "db1", "web2": "web2"}
    assert w.current_link_local("db1") == w.link_local["db1"]
    assert w.neighbour("node:n1", w.link_local["db1"]) == w.mac["db1"]
    assert w.neighbour("db1", l2attack.METADATA) == w.node_mac
    assert w.fdb_port("n1", w.mac["db1"]) == w.port["db1"]


def test_vm_ports_neither_learn_nor_flood_and_pin_each_vms_mac(l2):
    w, _ = l2
    from netsim.kernel.rtnl import Rtnl
    with Rtnl.in_namespace(names.node_ns(w.dc.name, "n1")) as sock:
        entries = {mac: (port, static) for mac, port, static in sock.fdb_entries(names.NIC_INDEX)}
        for vm in ("web1", "db1"):
            options = sock.port_options(w.port[vm])
            assert (options["learning"], options["unicast_flood"]) == (0, 0), (vm, options)
            assert entries[w.mac[vm]] == (w.port[vm], True), vm
    assert w.mac["web2"] not in entries  # web2 lives on n2


@pytest.mark.parametrize("variant", list(l2attack.TAGS))
def test_arp_spoofing_of_a_neighbour_and_of_the_metadata_address_fails(l2, variant):
    w, agent = l2
    rule = "only untagged IPv4 and ARP from a VM" if l2attack.TAGS[variant] else "ARP for an address another VM owns"
    before = counter(w, rule)
    successes = [l2attack.arp_spoof_attempt(w, agent, "db1", variant) for _ in range(3)]
    assert successes == [False] * 3
    assert counter(w, rule) > before  # the rule meant for this variant is what stopped it
    if not l2attack.TAGS[variant]:
        assert counter(w, "ARP for the metadata address") > 0
    assert_honest_vms_unaffected(w)


def test_fdb_poisoning_cannot_move_a_neighbours_mac_nor_leak_its_frames(l2):
    w, agent = l2
    before = counter(w, "MAC spoofing")
    assert [l2attack.fdb_poison_attempt(w, agent, "db1") for _ in range(3)] == [False] * 3
    assert counter(w, "MAC spoofing") > before
    assert_honest_vms_unaffected(w)


def test_identity_theft_through_the_fdb_fails(l2):
    w, agent = l2
    results = []
    for _ in range(10):
        w.identity("db1")
        results.append(agent.call("steal", victim_ip=w.link_local["db1"], victim_mac=w.mac["db1"],
                                  own_mac=w.mac["web1"], node_mac=w.node_mac, timeout=0.5))
    assert not any(r["synack"] for r in results), results  # not one answer to db1 reached web1
    assert not any('"db1"' in r["answer"] for r in results)
    assert counter(w, "IPv4 from an address owned by another VM") >= 10  # the spoofed SYNs
    assert_honest_vms_unaffected(w)


def _sniffed(w: l2attack.World, frames: list[dict], rounds: int = 3) -> dict:
    """Send ``frames`` from web1 while db1 listens; what db1 saw, by outer ethertype."""
    with l2attack.Agent(w.dc, "db1") as listener, l2attack.Agent(w.dc, "web1") as sender:
        listener.write("sniff", seconds=1.0, marker=MARKER)
        listener.read()
        sender.call("send", frames=frames, rounds=rounds, gap=0.05)
        return listener.read()["seen"]


def test_only_untagged_ipv4_and_arp_pass_a_vm_port(l2):
    w, _ = l2
    icmp = {"kind": "icmp", "src": w.mac["web1"], "dst": w.mac["db1"], "ip_src": w.link_local["web1"],
            "ip_dst": w.link_local["db1"], "marker": MARKER}
    raw = {"kind": "ethertype", "src": w.mac["web1"], "dst": w.mac["db1"], "payload": MARKER + "00" * 40}
    blocked = [
        {**icmp, "tags": l2attack.TAGS["vlan0"]}, {**icmp, "tags": l2attack.TAGS["vlan0-priority"]},
        {**icmp, "tags": l2attack.TAGS["qinq"]}, {**icmp, "tags": [[0x88A8, 0, 0]]}, {**icmp, "tags": [[0x8100, 0, 7]]},
        {**raw, "type": 0x86DD}, {**raw, "type": 0x88CC}, {**raw, "type": 0x8035}, {**raw, "type": 0x9000},
        {**raw, "type": 0x0040},  # an 802.3 length field, not an ethertype
    ]
    seen = _sniffed(w, [icmp] + blocked)
    assert seen == {"0x0800": 3}, seen  # the untagged IPv4 frame, each round; nothing else
    assert counter(w, "only untagged IPv4 and ARP from a VM") >= 3 * len(blocked)
    assert_honest_vms_unaffected(w)


def test_a_frame_for_an_unknown_mac_is_not_flooded_to_other_vms(l2):
    w, _ = l2
    icmp = {"kind": "icmp", "src": w.mac["web1"], "dst": w.mac["db1"], "ip_src": w.link_local["web1"],
            "ip_dst": w.link_local["db1"], "marker": MARKER}
    # Without learning, a bridge that flooded unknown unicast would copy it to every VM.
    assert _sniffed(w, [icmp, {**icmp, "dst": "02:00:5e:00:00:99"}]) == {"0x0800": 3}


def test_ipv4_only_from_addresses_the_vm_owns_or_a_free_link_local_one(l2):
    w, _ = l2

    def echo(src: str) -> dict:
        return {"kind": "icmp", "src": w.mac["web1"], "dst": w.mac["db1"], "ip_src": src,
                "ip_dst": w.dc.routable_address("db1"), "marker": MARKER}

    spoofed = [w.link_local["db1"], w.dc.routable_address("db1"), l2attack.METADATA, w.dc.routable_address("web2"),
               "198.18.0.1", "0.0.0.0"]
    assert _sniffed(w, [echo(src) for src in spoofed]) == {}
    # Its own addresses pass, and so does a link-local address nobody owns (RFC 3927 probes
    # and claims one; a VM's first packets after a claim never wait for port security).
    free = next(f"169.254.77.{i}" for i in range(1, 255) if f"169.254.77.{i}" not in w.link_local.values())
    own = [w.link_local["web1"], w.dc.routable_address("web1"), free]
    assert _sniffed(w, [echo(src) for src in own], rounds=2) == {"0x0800": 6}
    assert counter(w, "IPv4 from an address owned by another VM") >= 3 * 2
    assert counter(w, "IPv4 from an address the VM does not own") >= 3 * 3
    assert counter(w, "IPv4 from the metadata address") >= 3
    assert_honest_vms_unaffected(w)


def test_a_flood_with_the_victims_mac_does_not_disturb_the_victim(l2):
    w, agent = l2
    poller = w.dc.popen("db1", [sys.executable, "-c", l2attack.poller_script(count=30, rate=10, timeout=2.0)],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        flood = agent.call("flood", wait=20, frames=l2attack.poison_frames(w, "web1", "db1"), rate=2000, seconds=2.0)
        out, err = poller.communicate(timeout=30)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait()
    polls = json.loads(out)
    assert flood["sent"] >= 3000 and flood["errors"] == 0, flood  # 2,000 frames/s for 2 s, bounded
    assert polls["errors"] == [] and polls["ids"] == ["db1"] * 30, polls
    assert_honest_vms_unaffected(w)


def test_caller_identity_trusts_only_the_pinned_forwarding_entry(l2, host_exec):
    w, _ = l2
    routable = w.dc.routable_address("db1")  # a peer address the server has not resolved yet

    def instance_info() -> str:
        return host_exec("db1", "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                         "--interface", routable, f"http://{l2attack.METADATA}/metadata/v1/InstanceInfo").stdout

    # Were db1's entry ever learned rather than pinned (a port that learns), it is not trusted.
    replaced = host_exec("node:n1", "bridge", "fdb", "replace", w.mac["db1"], "dev", names.vm_port("db1"),
                         "master", "dynamic")
    assert replaced.returncode == 0, replaced.stderr
    assert instance_info() == "403"
    from netsim.kernel.rtnl import Rtnl
    with Rtnl.in_namespace(names.node_ns(w.dc.name, "n1")) as sock:
        sock.pin_port(w.port["db1"], w.mac["db1"])
        sock.flush()
    assert w.fdb_port("n1", w.mac["db1"]) == w.port["db1"]
    assert w.identity("db1") == "db1"


def test_pinned_entries_survive_a_port_and_a_bridge_going_down_and_up(l2):
    w, _ = l2
    from netsim.kernel.rtnl import Rtnl
    with Rtnl.in_namespace(names.node_ns(w.dc.name, "n1")) as sock:
        # A frozen VM's port, then a failed node's bridge (netsim node fail / recover).
        for index in (w.port["db1"], names.NIC_INDEX):
            sock.set_link(index, up=False)
            sock.flush()
            sock.set_link(index, up=True)
            sock.flush()
        entries = {mac: (port, static) for mac, port, static in sock.fdb_entries(names.NIC_INDEX)}
    assert entries == {w.mac["web1"]: (w.port["web1"], True), w.mac["db1"]: (w.port["db1"], True)}
    assert w.identity("db1") == "db1" and w.identity("web1") == "web1"
