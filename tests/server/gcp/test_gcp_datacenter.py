"""The GCE flavor served by a real datacenter's daemon to its VMs (needs root): curl from
inside a VM, a long poll woken by ``netsim event add``, live migration and preemption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.root

TOPOLOGY = """
[datacenter]
cloud = "gcp"
linklocal = "static"

[[node]]
name = "n1"

[[availability_set]]
name = "web"

[[vm]]
name = "web1"
availability_set = "web"

[[vm]]
name = "web2"
availability_set = "web"
"""
BASE = "http://169.254.169.254/computeMetadata/v1/"
NETSIM = os.path.join(os.path.dirname(sys.executable), "netsim")


@pytest.fixture
def gcp_dc(datacenter_factory):
    """A running gcp datacenter of two VMs on one node."""
    dc = datacenter_factory(TOPOLOGY)
    assert dc.topology.cloud == "gcp" and dc.topology.location == "us-central1-a"
    return dc


def curl(dc, vm: str, path: str, *extra: str) -> tuple[int, dict[str, str], str]:
    out = dc.run(vm, ["curl", "-s", "-i", "-m", "20", *extra, BASE + path], capture_output=True, text=True,
                 timeout=30).stdout
    head, _, body = out.partition("\n\n")  # text mode: CRLF read as LF
    lines = head.split("\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def google(dc, vm, path, *extra):
    return curl(dc, vm, path, "-H", "Metadata-Flavor: Google", *extra)


def event_add(dc, vm: str, kind: str, *args: str) -> None:
    subprocess.run([NETSIM, "event", "add", vm, "--type", kind, *args, "--name", dc.name],
                   check=True, capture_output=True, timeout=30)


def test_a_vm_reads_its_own_metadata_with_the_header_only(gcp_dc) -> None:
    status, headers, _ = curl(gcp_dc, "web1", "instance/name")
    assert status == 403 and headers["metadata-flavor"] == "Google"
    status, headers, body = google(gcp_dc, "web1", "instance/name")
    assert (status, body) == (200, "web1") and headers["etag"]
    assert google(gcp_dc, "web2", "instance/name")[2] == "web2"
    assert google(gcp_dc, "web1", "instance/zone")[2].endswith("/zones/us-central1-a")
    assert google(gcp_dc, "web1", "instance/network-interfaces/0/ip")[2] == gcp_dc.routable_address("web1")
    doc = json.loads(google(gcp_dc, "web1", "?recursive=true")[2])
    assert doc["instance"]["maintenanceEvent"] == "NONE" and doc["project"]["projectId"]
    assert curl(gcp_dc, "web1", "instance/name", "-H", "Metadata-Flavor: Google",
                "-H", "X-Forwarded-For: 198.18.0.9")[0] == 403
    assert google(gcp_dc, "web1", "instance/name?nope=1")[0] == 400


def long_poll(dc, vm: str, query: str = "") -> subprocess.Popen:
    """A ``wait_for_change`` on maintenance-event from inside ``vm`` (curl, in the background)."""
    url = BASE + "instance/maintenance-event?wait_for_change=true&timeout_sec=60" + query
    proc = dc.popen(vm, ["curl", "-s", "-m", "70", "-H", "Metadata-Flavor: Google", url],
                    stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # parked by now
    assert proc.poll() is None, "the long poll returned at once"
    return proc


def test_a_long_poll_wakes_on_a_live_migration_and_the_vm_is_paused(gcp_dc) -> None:
    etag = google(gcp_dc, "web1", "instance/maintenance-event")[1]["etag"]  # read: warned from now on
    poll = long_poll(gcp_dc, "web1", f"&last_etag={etag}")
    added = time.time()
    event_add(gcp_dc, "web1", "MIGRATE_ON_HOST_MAINTENANCE", "--in", "3")
    out, _ = poll.communicate(timeout=30)
    assert out == "MIGRATE_ON_HOST_MAINTENANCE" and time.time() - added < 2.5
    status, headers, body = google(gcp_dc, "web1", "instance/upcoming-maintenance")
    assert json.loads(body)["maintenance_status"] in ("PENDING", "ONGOING")
    # Back to NONE after the migration (3 s notice + 0.3 s pause).
    done = google(gcp_dc, "web1", "instance/maintenance-event")
    deadline = time.time() + 20
    while done[2] != "NONE" and time.time() < deadline:
        done = google(gcp_dc, "web1", "instance/maintenance-event?wait_for_change=true&timeout_sec=20&last_etag="
                      + done[1]["etag"])
    assert done[2] == "NONE" and time.time() - added >= 3.0
    log = open(gcp_dc.state.file("daemon.log")).read()
    assert "web1 frozen" in log and "web1 thawed" in log


def test_a_timeout_returns_the_unchanged_value(gcp_dc) -> None:
    started = time.time()
    status, _, body = google(gcp_dc, "web2", "instance/maintenance-event?wait_for_change=true&timeout_sec=2")
    assert (status, body) == (200, "NONE") and 1.8 <= time.time() - started < 5


def test_preemption_sets_preempted_then_stops_the_vm(gcp_dc) -> None:
    assert google(gcp_dc, "web2", "instance/preempted")[2] == "FALSE"
    event_add(gcp_dc, "web2", "preemption", "--in", "2")
    assert google(gcp_dc, "web2", "instance/preempted")[2] == "TRUE"
    log = gcp_dc.state.file("daemon.log")
    deadline = time.time() + 15
    while "web2 powered off" not in open(log).read() and time.time() < deadline:
        time.sleep(0.2)
    assert "web2 powered off" in open(log).read()
    assert os.path.exists(f"/run/netns/{gcp_dc.namespace('web2')}")  # stopped, not deleted
    out = gcp_dc.run("web2", ["curl", "-s", "-m", "2", BASE], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0  # its link is down: no answer


def test_metadata_names_resolve_inside_the_vm_only(gcp_dc) -> None:
    with open("/etc/hosts") as f:
        host_hosts = f.read()
    for url in ("http://metadata.google.internal/computeMetadata/v1/instance/name",
                "http://metadata/computeMetadata/v1/instance/name"):
        out = gcp_dc.run("web1", ["curl", "-s", "-m", "10", "-H", "Metadata-Flavor: Google", url],
                         capture_output=True, text=True, timeout=30)
        assert out.stdout == "web1", (url, out.stderr)
    with open("/etc/hosts") as f:
        assert f.read() == host_hosts  # the host's resolver files are untouched
    assert os.path.exists(f"/etc/netns/{gcp_dc.namespace('web1')}/hosts")


# Runs inside a VM: 40 long polls at once; prints how many got 429, holds them a moment,
# closes them, then shows that a new one parks again (the slots were freed).
FLOOD = """
import socket, time
REQ = (b"GET /computeMetadata/v1/instance/maintenance-event?wait_for_change=true&timeout_sec=60 HTTP/1.1\\r\\n"
       b"Host: metadata\\r\\nMetadata-Flavor: Google\\r\\n\\r\\n")
def poll():
    s = socket.create_connection(("169.254.169.254", 80), timeout=10)
    s.sendall(REQ)
    return s
socks = [poll() for _ in range(40)]
time.sleep(1.0)
refused = 0
for s in socks:
    s.setblocking(False)
    try:
        refused += s.recv(4096).startswith(b"HTTP/1.1 429")
    except BlockingIOError:
        pass
print(refused, flush=True)
time.sleep(2.0)
for s in socks:
    s.close()
time.sleep(0.5)
s = poll()
s.settimeout(1.0)
try:
    print("answered", s.recv(4096)[:12], flush=True)
except socket.timeout:
    print("parked", flush=True)
"""


def test_parked_polls_are_bounded_per_vm_and_freed_when_clients_leave(gcp_dc) -> None:
    proc = gcp_dc.popen("web1", [sys.executable, "-c", FLOOD], stdout=subprocess.PIPE, text=True)
    refused = int(proc.stdout.readline())
    assert refused == 40 - 16  # the driver's parked_per_caller (netsim_imds.fairness.Limits)
    status, _, body = google(gcp_dc, "web2", "instance/name")  # the node keeps serving others
    assert (status, body) == (200, "web2")
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "parked"


def wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_a_termination_stops_the_vm_and_restarts_it(gcp_dc) -> None:
    key = "instance/maintenance-event"
    assert google(gcp_dc, "web1", key)[2] == "NONE"  # read: warned
    event_add(gcp_dc, "web1", "TERMINATE_ON_HOST_MAINTENANCE", "--in", "2", "--duration", "2")
    assert google(gcp_dc, "web1", key)[2] == "TERMINATE_ON_HOST_MAINTENANCE"
    log = gcp_dc.state.file("daemon.log")
    assert wait_for(lambda: "web1 powered off" in open(log).read())
    assert wait_for(lambda: "web1 powered on" in open(log).read())
    assert wait_for(lambda: google(gcp_dc, "web1", key)[2] == "NONE")


def test_a_maintenance_walk_is_announced_as_a_termination(gcp_dc) -> None:
    assert google(gcp_dc, "web1", "instance/maintenance-event")[2] == "NONE"
    subprocess.run([NETSIM, "maintenance", "start", "web", "--notice", "30", "--downtime", "1", "--name", gcp_dc.name],
                   check=True, capture_output=True, timeout=30)
    doc = json.loads(google(gcp_dc, "web1", "instance/upcoming-maintenance")[2])
    assert doc["maintenance_status"] == "PENDING" and doc["type"] == "SCHEDULED"
    assert google(gcp_dc, "web1", "instance/maintenance-event")[2] == "TERMINATE_ON_HOST_MAINTENANCE"
