"""The daemon's metadata service in a real datacenter: identity, scoping, port security, events."""

import json
import socket
import time

import pytest

from netsim.kernel import netns
from netsim.kernel.safety import emulated_socket
from netsim.model import addressing

pytestmark = pytest.mark.root


def curl(host_exec, host, path, *headers, method="GET", data=None):
    argv = ["curl", "-s", "-m", "3", "-o", "-", "-w", "\n%{http_code}", "-X", method]
    for h in headers:
        argv += ["-H", h]
    if data is not None:
        argv += ["-H", "Content-Type: application/json", "--data", data]
    out = host_exec(host, *argv, f"http://169.254.169.254{path}").stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


def test_each_vm_gets_its_own_identity_from_its_own_node(datacenter, host_exec):
    for vm in datacenter.topology.vms:
        code, body = curl(host_exec, vm.name, "/metadata/v1/InstanceInfo")
        assert code == 200
        assert json.loads(body) == {"ID": vm.name, "UD": str(vm.update_domain), "FD": str(vm.fault_domain)}
    code, body = curl(host_exec, "web2", "/metadata/instance?api-version=2021-02-01", "Metadata: true")
    doc = json.loads(body)
    assert code == 200 and doc["compute"]["name"] == "web2" and doc["compute"]["platformFaultDomain"] == "1"
    ipv4 = doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]
    assert ipv4["privateIpAddress"] == datacenter.routable_address("web2")
    code, text = curl(host_exec, "web3", "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                      "Metadata: true")
    assert (code, text) == (200, "web3")


def test_a_peer_that_is_no_vm_of_the_node_gets_403(datacenter, host_exec):
    code, body = curl(host_exec, "node:n1", "/metadata/v1/InstanceInfo")
    assert code == 403 and "error" in json.loads(body)


def test_no_path_reaches_another_nodes_metadata_server(datacenter, host_exec, assert_unreachable):
    # A route through the gateway ends at the VM's own node, never at node 1.
    assert host_exec("web2", "ip", "route", "add", "169.254.169.254/32", "via", "198.18.1.1").returncode == 0
    code, body = curl(host_exec, "web2", "/metadata/v1/InstanceInfo")
    assert code == 200 and json.loads(body)["ID"] == "web2"
    # Node 1's server listens only on its link-local address, not on its routable gateway.
    assert_unreachable("web2", "198.18.0.1", port=80)
    assert_unreachable("client", "198.18.0.1", port=80)


def _frame(dst: str, src: str, op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    from scapy.layers.l2 import ARP, Ether
    return bytes(Ether(dst=dst, src=src) / ARP(op=op, hwsrc=sha, psrc=spa, hwdst=tha, pdst=tpa))


def test_a_rogue_vm_spoofing_arp_changes_nothing(datacenter, host_exec):
    dc = datacenter
    web1_ll = dc.link_local_addresses()["web1"]
    web1_mac, web3_mac = addressing.vm_mac(dc.name, 0), addressing.vm_mac(dc.name, 2)
    # Let web1 talk to the server first, so both sides have neighbour entries to poison.
    assert curl(host_exec, "web1", "/metadata/v1/InstanceInfo")[0] == 200
    rogue = emulated_socket(dc.namespace("web3"), socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    try:
        rogue.bind(("eth0", 0))
        bcast = "ff:ff:ff:ff:ff:ff"
        for _ in range(3):
            for op in (1, 2):  # gratuitous request and reply
                rogue.send(_frame(bcast, web3_mac, op, web3_mac, "169.254.169.254", bcast, "169.254.169.254"))
                rogue.send(_frame(bcast, web3_mac, op, web3_mac, web1_ll, bcast, web1_ll))
                rogue.send(_frame(bcast, web1_mac, op, web1_mac, web1_ll, bcast, web1_ll))  # spoofed source MAC
            time.sleep(0.4)
    finally:
        rogue.close()
    code, body = curl(host_exec, "web1", "/metadata/v1/InstanceInfo")
    assert code == 200 and json.loads(body)["ID"] == "web1"
    assert json.loads(curl(host_exec, "web3", "/metadata/v1/InstanceInfo")[1])["ID"] == "web3"
    neigh = host_exec("web1", "ip", "neigh", "show", "169.254.169.254").stdout
    assert web3_mac not in neigh
    assert web3_mac not in host_exec("node:n1", "ip", "neigh", "show", web1_ll).stdout
    counters = host_exec("node:n1", "nft", "list", "table", "bridge", "netsim_portsec").stdout
    for what in ("MAC spoofing", "ARP for the metadata address", "another VM owns"):
        line = next(line for line in counters.splitlines() if what in line and "forward" not in line)
        assert "packets 0 " not in line, line


def test_events_are_served_to_the_avset_and_approval_starts_them(datacenter, host_exec):
    event = datacenter.request("event_add", vm="web1", type="Reboot", duration=30, **{"in": 60})["event"]
    code, body = curl(host_exec, "web1", "/metadata/v1/maintenance")
    assert code == 200 and json.loads(body)["EventID"] == event["event_id"]
    # Scheduled Events are broadcast to the availability set: web2 on node 2 sees it too.
    se = json.loads(curl(host_exec, "web2", "/metadata/scheduledevents?api-version=2020-07-01", "Metadata: true")[1])
    assert [e["EventId"] for e in se["Events"]] == [event["event_id"]]
    assert se["Events"][0]["Resources"] == ["web1"] and se["Events"][0]["EventStatus"] == "Scheduled"
    body = json.dumps({"StartRequests": [{"EventId": event["event_id"]}]})
    code, _ = curl(host_exec, "web2", "/metadata/scheduledevents?api-version=2020-07-01", "Metadata: true",
                   method="POST", data=body)
    assert code == 200
    # web1 itself is rebooting now; web3 (same set, same node) sees the Started event.
    after = json.loads(curl(host_exec, "web3", "/metadata/scheduledevents?api-version=2020-07-01",
                            "Metadata: true")[1])
    assert after["Events"][0]["EventStatus"] == "Started" and after["Events"][0]["NotBefore"] == ""
    assert after["DocumentIncarnation"] > se["DocumentIncarnation"]
    # The 2015 API needs no header; the current one does.
    assert curl(host_exec, "web3", "/metadata/scheduledevents?api-version=2020-07-01")[0] == 400


def test_reach_matrix_includes_each_vms_metadata_endpoint(datacenter):
    from netsim.tools.reach import matrix
    rows = matrix(datacenter.topology, datacenter.link_local_addresses(), metadata=True)
    md = {r["from"]: r["reachable"] for r in rows if r["kind"] == "metadata"}
    assert md == {"web1": True, "web2": True, "web3": True}
    assert all(netns.inode_of(datacenter.namespace(h)) for h in md)
