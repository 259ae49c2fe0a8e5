"""Containers inside VMs across real namespaces (needs root): each container is one routed
hop behind its VM, NATed out of the VM's eth0 with the VM's link-local source, so Azure's
and GCE's metadata services answer it as its VM; a VM's reboot ends the containers'
processes and keeps their network, a Redeploy takes them along, a Terminate removes them;
``down`` and ``cleanup`` (even after a crash) leave no container namespace behind. AWS's
hop limit seen from real containers is in :mod:`tests.server.aws.test_containers`.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import replace

import pytest

from netsim.api import datacenter as dcapi
from netsim.harness.pytest_plugin import unique_name
from netsim.kernel import netns, procfs
from netsim.model import names
from netsim.model.load import parse
from netsim.model.plan import plan_of
from tests.model.test_containers import TOPOLOGY
from tests.server.gcp.test_clients import CLIENTS, GOOGLE_AUTH
from tests.server.support import in_ci
from tests.server.aws.test_aws_datacenter import NETSIM, NO_PROXY, wait_until

pytestmark = pytest.mark.root

# web1 on n1 with containers c1 and c2, web2 on n2 with container app.
AZURE = TOPOLOGY.format(keys='containers = ["c1", "c2"]')

COMPUTE_NAME = "http://169.254.169.254/metadata/instance/compute/name?api-version=2021-02-01&format=text"

# Inside a VM: print the source address and IP TTL of the first TCP segment that leaves
# eth0 for the metadata address (a container's, NATed by the VM).
SNIFF = r"""
import json, socket
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL: outgoing frames too
sniff.bind(("eth0", 0))
sniff.settimeout(15)
print("ready", flush=True)
while True:
    frame, where = sniff.recvfrom(65536)
    ip = frame[14:]
    if (where[2] == socket.PACKET_OUTGOING and frame[12:14] == b"\x08\x00" and ip[9] == 6
            and socket.inet_ntoa(ip[16:20]) == "169.254.169.254"):
        print(json.dumps({"src": socket.inet_ntoa(ip[12:16]), "ttl": ip[8]}), flush=True)
        break
"""


@pytest.fixture(scope="module")
def azure_dc(netsim_state_dir: str):
    """One Azure datacenter (claimed link-local addresses, fast timers) for the read-only tests."""
    running = dcapi.up(replace(parse(AZURE), name=unique_name(), timers="fast"))
    try:
        for vm in ("web1", "web2"):  # each VM's first answer (its node learns it), then the tests
            wait_until(lambda: compute_name(running, vm), 20, f"{vm}'s first answer")
        yield running
    finally:
        running.down()


def compute_name(dc, host: str) -> str:
    out = dc.run(host, ["curl", "-s", "-m", "5", "-H", "Metadata: true", COMPUTE_NAME], env=NO_PROXY)
    return out.stdout


def test_a_container_has_its_own_namespace_one_routed_hop_behind_its_vm(azure_dc) -> None:
    plan = plan_of(azure_dc.topology)
    c1 = plan.vm("web1").container("c1")
    assert azure_dc.namespace("web1/c1") == c1.namespace and c1.namespace in netns.list_names()
    gateway = plan.vm("web1").gateway  # the node's bridge, one hop beyond the VM
    one = azure_dc.run("web1/c1", ["ping", "-n", "-c", "1", "-W", "2", "-t", "1", gateway])
    assert f"From {c1.gateway} icmp_seq=1 Time to live exceeded" in one.stdout, one.stdout
    two = azure_dc.run("web1/c1", ["ping", "-n", "-c", "1", "-W", "2", "-t", "2", gateway])
    assert two.returncode == 0 and f"from {gateway}" in two.stdout, two.stdout
    addresses = azure_dc.run("web1/c1", ["cat", "/proc/net/fib_trie"]).stdout
    assert c1.address in addresses and plan.vm("web1").routable not in addresses


def test_azure_answers_a_container_as_its_vm(azure_dc) -> None:
    assert [compute_name(azure_dc, h) for h in ("web1/c1", "web1/c2", "web2/app", "web1")] == [
        "web1", "web1", "web2", "web1"]


def test_a_containers_packets_leave_the_vm_with_its_link_local_source_and_ttl_minus_one(azure_dc) -> None:
    sniffer = azure_dc.popen("web1", [sys.executable, "-c", SNIFF], stdout=subprocess.PIPE, text=True)
    try:
        assert sniffer.stdout.readline().strip() == "ready"
        assert compute_name(azure_dc, "web1/c1") == "web1"
        seen = json.loads(sniffer.stdout.readline())
    finally:
        sniffer.kill()
        sniffer.wait()
    assert seen == {"src": azure_dc.link_local_addresses()["web1"], "ttl": 63}


def test_status_and_reach_show_each_vms_containers(azure_dc) -> None:
    status = azure_dc.status()
    web1 = next(v for v in status["vms"] if v["name"] == "web1")
    assert [(c["host"], c["present"], c["address"]) for c in web1["containers"]] == [
        ("web1/c1", True, "198.19.252.2"), ("web1/c2", True, "198.19.252.3")]
    text = subprocess.run([NETSIM, "status", "--name", azure_dc.name], capture_output=True, text=True,
                          check=True, timeout=30).stdout
    assert "container web1/c2" in text and "container web2/app" in text
    inside = subprocess.run([NETSIM, "exec", "--name", azure_dc.name, "web2/app", "--", "cat", "/proc/net/fib_trie"],
                            capture_output=True, text=True, check=True, timeout=30).stdout
    assert "198.19.252.2" in inside and plan_of(azure_dc.topology).vm("web2").routable not in inside
    shown = json.loads(subprocess.run([NETSIM, "status", "--json", "--name", azure_dc.name], capture_output=True,
                                      text=True, check=True, timeout=30).stdout)
    web2_app = plan_of(azure_dc.topology).vm("web2").container("app")
    assert shown["vms"][1]["containers"][0]["namespace"] == web2_app.namespace
    rows = json.loads(subprocess.run([NETSIM, "reach", "--json", "--name", azure_dc.name], capture_output=True,
                                     text=True, check=True, timeout=60).stdout)
    metadata = {r["from"]: r["reachable"] for r in rows if r["kind"] == "metadata"}
    assert metadata == {"web1": True, "web2": True, "web1/c1": True, "web1/c2": True, "web2/app": True}
    assert all(r["reachable"] for r in rows if r["from"] == "web1/c1" and r["kind"] == "routable")
    assert not any(r["to"].count("/") for r in rows)  # a container is nobody's destination
    matrix = subprocess.run([NETSIM, "reach", "--name", azure_dc.name], capture_output=True, text=True,
                            check=True, timeout=60).stdout
    assert any(line.startswith("web2/app ") for line in matrix.splitlines())


def test_a_freeze_pauses_the_containers_and_a_reboot_ends_their_processes_keeping_their_network(
        datacenter_factory) -> None:
    dc = datacenter_factory(AZURE)
    sleeper = dc.popen("web1/c1", ["sleep", "600"])
    dc.request("event_add", vm="web1", type="Freeze", duration=2, **{"in": 0})
    wait_until(lambda: procfs.task_state(sleeper.pid) == "T", 20, "the freeze to stop the container's process")
    wait_until(lambda: procfs.task_state(sleeper.pid) == "S", 20, "the thaw to resume it")
    wait_until(lambda: not dc.request("events")["events"], 20, "the freeze to complete")
    dc.request("event_add", vm="web1", type="Reboot", duration=1, **{"in": 0})
    wait_until(lambda: sleeper.poll() is not None, 20, "the reboot to end the container's process")
    wait_until(lambda: not dc.request("events")["events"], 20, "the reboot to complete")
    assert wait_until(lambda: compute_name(dc, "web1/c1"), 20, "web1/c1's metadata") == "web1"


def test_a_redeploy_takes_the_containers_along_and_a_terminate_removes_them(datacenter_factory) -> None:
    dc = datacenter_factory(AZURE)
    dc.request("event_add", vm="web1", type="Redeploy", duration=1, **{"in": 0})
    wait_until(lambda: (s := dc.request("snapshot"))["placement"]["web1"] == "n2" and not s["events"], 30,
               "the redeploy to n2")
    assert wait_until(lambda: compute_name(dc, "web1/c2"), 20, "web1/c2's metadata from n2") == "web1"
    ours = plan_of(dc.topology).vm("web2").container("app").namespace
    assert ours in netns.list_names()
    dc.request("event_add", vm="web2", type="Terminate", **{"in": 0})
    wait_until(lambda: ours not in netns.list_names(), 30, "the terminate to remove web2's container")
    assert compute_name(dc, "web1/c1") == "web1"  # web1 (now on web2's node) is not touched


def test_down_and_a_cleanup_after_a_crash_leave_no_container_namespace(datacenter_factory) -> None:
    topology = AZURE.replace('node = "n2"\n', 'node = "n1"\n')
    first = datacenter_factory(topology)
    containers = [c.namespace for p in plan_of(first.topology).vms.values() for c in p.containers]
    assert len(containers) == 3 and set(containers) <= set(netns.list_names(names.dc_prefix(first.name)))
    sleeper = first.popen("web1/c2", ["sleep", "600"], track=False)  # only the namespace knows it
    first.down()
    assert not netns.list_names(names.dc_prefix(first.name)) and sleeper.wait(timeout=10) is not None

    crashed = datacenter_factory(topology)
    crashed.popen("web2/app", ["sleep", "600"], track=False)
    crashed.stop_daemon(signal.SIGKILL)
    shutil.rmtree(crashed.state.path)
    out = subprocess.run([NETSIM, "cleanup", "--name", crashed.name], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # fabric, 3 hosts, 2 nodes, 2 VMs, 3 containers
    assert f"datacenter {crashed.name}: 11 namespaces removed" in out.stdout
    assert not netns.list_names(names.dc_prefix(crashed.name))


GCE = """
[datacenter]
cloud = "gcp"
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "g1"
containers = ["pod1"]

[[vm]]
name = "g2"
containers = ["pod1"]
"""


def test_gce_answers_a_container_as_its_vm_by_the_metadata_servers_name(datacenter_factory) -> None:
    dc = datacenter_factory(GCE)
    url = "http://metadata.google.internal/computeMetadata/v1/instance/name"
    for vm in ("g1", "g2"):
        wait_until(lambda: dc.run(vm, ["curl", "-s", "-m", "5", "-H", "Metadata-Flavor: Google", url],
                                  env=NO_PROXY).stdout, 20, f"{vm}'s first answer")
        out = dc.run(f"{vm}/pod1", ["curl", "-s", "-m", "5", "-H", "Metadata-Flavor: Google", url], env=NO_PROXY)
        assert out.stdout == vm, out.stderr
    if not CLIENTS.exists():  # curl's part is done; google-auth's needs scripts/setup
        reason = f"google-auth is missing from {CLIENTS}: run scripts/setup (it installs it there)"
        pytest.fail(reason) if in_ci() else pytest.skip(reason)
    out = dc.run("g2/pod1", [str(CLIENTS), "-c", GOOGLE_AUTH], env={**NO_PROXY, "HOME": "/nonexistent"}, timeout=60)
    assert out.returncode == 0 and "name g2" in out.stdout.splitlines(), out.stderr[-2000:]
