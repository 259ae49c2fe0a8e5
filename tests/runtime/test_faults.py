"""Faults across real namespaces (issue 13): every HTTP fault as a client inside a VM sees
it, link faults measured inside a VM, partitions, clear, a daemon killed with SIGKILL that
keeps its faults, cleanup after a crash.

One datacenter (the default topology: web1 and web3 on n1, web2 on n2) serves the module;
each test clears its faults.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess

import pytest

from netsim.api import datacenter as dcapi
from netsim.harness.pytest_plugin import unique_name
from netsim.kernel import netns, qdisc
from netsim.model import load, names

pytestmark = pytest.mark.root

INFO = "/metadata/v1/InstanceInfo"
MD = "http://169.254.169.254"


@pytest.fixture(scope="module")
def dc(netsim_state_dir):
    from dataclasses import replace
    running = dcapi.up(replace(load(), name=unique_name()))
    yield running
    running.down()


@pytest.fixture(autouse=True)
def no_faults_left(dc):
    yield
    dc.clear_faults()


def curl(dc, vm: str, path: str = INFO, *extra: str, timeout: float = 5) -> tuple[int, int, str, str]:
    """(curl's exit code, HTTP status, headers, body) of one request from inside ``vm``."""
    out = dc.run(vm, ["curl", "-s", "-i", "-m", str(timeout), *extra, MD + path], capture_output=True,
                 timeout=timeout + 10)
    text = out.stdout.replace("\r\n", "\n")  # text mode may or may not have translated it
    head, _, body = text.partition("\n\n")
    m = re.match(r"HTTP/1\.1 (\d+)", head)
    return out.returncode, int(m.group(1)) if m else 0, head, body


def timed(dc, vm: str, path: str = INFO) -> float:
    """Seconds one request from inside ``vm`` took (curl's own clock)."""
    out = dc.run(vm, ["curl", "-s", "-o", "/dev/null", "-m", "20", "-w", "%{time_total}", MD + path],
                 capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out
    return float(out.stdout)


def test_a_status_fault_answers_with_retry_after_only_its_vm(dc):
    fault = dc.add_fault("web1", http=503, duration=120)
    assert fault["id"].startswith("fault-") and fault["kind"] == "http" and fault["state"] == "active"
    rc, status, head, body = curl(dc, "web1")
    assert (rc, status) == (0, 503) and re.search(r"(?im)^retry-after: \d+", head)
    assert fault["id"] in json.loads(body)["error"]
    assert curl(dc, "web3")[1] == 200  # same node, another VM
    dc.clear_faults(fault["id"])
    assert curl(dc, "web1")[1] == 200


def test_a_node_fault_hits_every_vm_of_the_node_and_a_path_prefix_only_its_paths(dc):
    dc.add_fault("node:n1", http=500, path="/metadata/v1/")
    assert curl(dc, "web1")[1] == 500 and curl(dc, "web3")[1] == 500
    assert curl(dc, "web2")[1] == 200  # node n2
    assert curl(dc, "web1", "/metadata/instance?api-version=2021-02-01", "-H", "Metadata: true")[1] == 200


def test_a_probability_applies_to_a_share_of_requests(dc):
    dc.add_fault("all", http=429, probability=0.5)
    script = ("for i in $(seq 40); do curl -s -o /dev/null -w '%{http_code}\\n' -m 5 " + MD + INFO + "; done")
    codes = dc.run("web2", ["sh", "-c", script], capture_output=True, text=True, timeout=60).stdout.split()
    assert len(codes) == 40 and set(codes) == {"200", "429"}  # both: 2**-39 chance of failing by luck


def test_a_delay_holds_the_answer_and_a_hang_never_answers_until_cleared(dc):
    dc.add_fault("web1", delay=400, jitter=50)
    assert timed(dc, "web1") >= 0.3
    dc.clear_faults()
    hang = dc.add_fault("web1", hang=True)
    assert curl(dc, "web1", timeout=1)[0] == 28  # curl: operation timed out
    proc = dc.popen("web1", ["curl", "-s", "-m", "20", "-o", "/dev/null", "-w", "%{http_code}", MD + INFO],
                    stdout=subprocess.PIPE, text=True)
    try:
        import time
        time.sleep(0.5)  # let the request reach the server and hang there
        dc.clear_faults(hang["id"])
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out == "200"  # the hung request is answered once its fault is gone


def test_reset_truncate_and_dribble(dc):
    fault = dc.add_fault("web1", reset=True)
    assert curl(dc, "web1")[0] == 56  # curl: failure receiving data (connection reset)
    dc.clear_faults(fault["id"])
    path = "/metadata/instance?api-version=2021-02-01"
    full = curl(dc, "web1", path, "-H", "Metadata: true")[3]
    assert len(full) > 200
    fault = dc.add_fault("web1", truncate=100)
    rc, status, _, body = curl(dc, "web1", path, "-H", "Metadata: true")
    assert (rc, status, len(body)) == (18, 200, 100)  # curl: partial file
    dc.clear_faults(fault["id"])
    dc.add_fault("web1", rate=len(full) * 2)  # about half a second for the body
    rc, status, _, body = curl(dc, "web1", path, "-H", "Metadata: true")
    assert (rc, status, body) == (0, 200, full)
    assert timed(dc, "web1", INFO) < 5  # another path, small body: dribbled too, and complete


def test_a_fault_starts_later_and_ends_by_itself(dc):
    fault = dc.add_fault("web1", http=500, **{"in_": 60}, duration=30)
    assert fault["state"] == "pending" and fault["ends_at"] - fault["starts_at"] == 30
    assert curl(dc, "web1")[1] == 200
    dc.clear_faults()
    fault = dc.add_fault("web1", http=500, duration=1)
    assert curl(dc, "web1")[1] == 500
    import time
    time.sleep(1.2)
    assert curl(dc, "web1")[1] == 200
    assert [f["state"] for f in dc.faults()] == ["ended"]


def _ping_loss(dc, vm: str, count: int = 100) -> float:
    out = dc.run(vm, ["ping", "-q", "-n", "-c", str(count), "-i", "0.01", "-W", "1", "169.254.169.254"],
                 capture_output=True, text=True, timeout=60).stdout
    return float(re.search(r"([\d.]+)% packet loss", out).group(1))


def test_link_loss_is_measured_inside_the_vm_and_cleared(dc):
    assert _ping_loss(dc, "web1") == 0
    fault = dc.add_fault("web1", loss=50)
    assert fault["kind"] == "link"
    assert 15 <= _ping_loss(dc, "web1") <= 85  # binomial(100, 0.5): outside by luck ~1e-12
    assert _ping_loss(dc, "web3", 20) == 0
    dc.clear_faults()
    assert _ping_loss(dc, "web1", 20) == 0


def _qdisc(dc, node: str, vm: str) -> str:
    return dc.run(f"node:{node}", ["tc", "qdisc", "show", "dev", names.vm_port(vm)],
                  capture_output=True, text=True).stdout


def test_a_link_rate_on_all_vms_puts_a_qdisc_on_every_port_and_clear_removes_it(dc):
    dc.add_fault("all", latency=0, rate=50000)  # a link option makes --rate the link's (alone: the dribble)
    for vm in dc.topology.vms:
        assert "tbf" in _qdisc(dc, _node_of(dc, vm.name), vm.name)
    dc.clear_faults()
    for vm in dc.topology.vms:
        assert "tbf" not in _qdisc(dc, _node_of(dc, vm.name), vm.name)


def _node_of(dc, vm: str) -> str:
    return dc.request("snapshot")["placement"][vm]


def test_netem_options_take_netem_or_the_delay_line_and_bad_combinations_say_so_in_one_line(dc):
    dc.add_fault("web1", latency=50, jitter=5)
    if qdisc.netem_available():
        assert "netem" in _qdisc(dc, "n1", "web1")
    else:  # no netem in this kernel: the port's frames go through netsim's delay line
        assert "clsact" in _qdisc(dc, "n1", "web1") and "netem" not in _qdisc(dc, "n1", "web1")
    dc.clear_faults()
    with pytest.raises(Exception) as exc:
        dc.add_fault("web1", reorder=20)
    assert "--latency" in str(exc.value) and "\n" not in str(exc.value)
    assert dc.faults() == []


def test_a_vm_partition_cuts_it_from_its_metadata_service_only(dc):
    dc.add_fault("web1", partition=True)
    assert curl(dc, "web1", timeout=1)[0] == 28
    assert curl(dc, "web3")[1] == 200
    ping = dc.run("web1", ["ping", "-c", "1", "-W", "2", dc.routable_address("web3")], capture_output=True)
    assert ping.returncode == 0  # the VM keeps its network
    dc.clear_faults()
    assert curl(dc, "web1")[1] == 200


def test_a_node_partition_cuts_it_from_the_fabric(dc):
    dc.add_fault("node:n2", partition=True)
    cut = dc.run("web1", ["ping", "-c", "1", "-W", "1", dc.routable_address("web2")], capture_output=True)
    assert cut.returncode != 0
    assert curl(dc, "web2")[1] == 200  # its own metadata server is on the node
    dc.clear_faults()
    back = dc.run("web1", ["ping", "-c", "1", "-W", "2", dc.routable_address("web2")], capture_output=True)
    assert back.returncode == 0


def test_a_daemon_killed_keeps_its_faults_with_their_remaining_time(dc):
    http = dc.add_fault("web1", http=503, duration=600)
    link = dc.add_fault("web3", loss=100)
    dc.stop_daemon(signal.SIGKILL)
    dc.start_daemon()
    faults = {f["id"]: f for f in dc.faults()}
    assert faults[http["id"]]["ends_at"] == http["ends_at"] and faults[http["id"]]["state"] == "active"
    assert link["id"] in faults
    assert curl(dc, "web1")[1] == 503
    assert _ping_loss(dc, "web3", 10) == 100
    dc.clear_faults()
    assert _ping_loss(dc, "web3", 10) == 0
    added = dc.add_fault("web1", http=500)
    assert int(added["id"].split("-")[1]) > int(link["id"].split("-")[1])  # ids are never given twice


def test_cleanup_after_a_crash_removes_every_fault_rule_and_qdisc():
    from dataclasses import replace
    running = dcapi.up(replace(load(), name=unique_name()))
    try:
        running.add_fault("node:n1", partition=True)
        running.add_fault("all", rate=10000)
        running.stop_daemon(signal.SIGKILL)
    finally:
        dcapi.cleanup(running.name)
    assert netns.list_names(names.dc_prefix(running.name)) == []


def netsim(*args: str) -> subprocess.CompletedProcess:
    import sys
    return subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_the_cli_adds_lists_and_clears_and_status_and_watch_show_faults(dc):
    added = netsim("fault", "add", "web1", "--http", "429", "--path", "/metadata/", "--duration", "300",
                   "--name", dc.name)
    assert added.returncode == 0, added.stderr
    fault_id = added.stdout.split()[0]
    assert fault_id.startswith("fault-") and "--http 429" in added.stdout
    listed = json.loads(netsim("fault", "list", "--json", "--name", dc.name).stdout)
    assert [(f["id"], f["http"], f["path"], f["state"]) for f in listed] == [(fault_id, 429, "/metadata/", "active")]
    assert fault_id in netsim("fault", "list", "--name", dc.name).stdout
    assert f"fault {fault_id}" in netsim("status", "--name", dc.name).stdout
    assert f"fault {fault_id} active" in netsim("watch", "--count", "1", "--name", dc.name).stdout
    cleared = netsim("fault", "clear", "--all", "--name", dc.name)
    assert cleared.returncode == 0 and fault_id in cleared.stdout
    assert json.loads(netsim("fault", "list", "--json", "--name", dc.name).stdout) == []


def test_the_fault_fixture_adds_and_clears(datacenter, fault, host_exec):
    made = fault("web2", http=503, duration=60)
    assert made["state"] == "active"
    out = host_exec("web2", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", MD + INFO).stdout
    assert out == "503"
    assert [f["id"] for f in datacenter.faults()] == [made["id"]]


def test_a_vm_fault_follows_the_vm_when_it_moves(dc):
    import time
    before = _node_of(dc, "web1")
    dc.add_fault("web1", latency=0, rate=20000)
    dc.add_fault("web1", loss=100)
    dc.request("event_add", vm="web1", type="Redeploy", duration=2, **{"in": 0})
    deadline = time.monotonic() + 60
    while _node_of(dc, "web1") == before or dc.request("snapshot")["events"]:
        assert time.monotonic() < deadline, dc.request("snapshot")
        time.sleep(0.2)
    after = _node_of(dc, "web1")
    assert "tbf" in _qdisc(dc, after, "web1")  # shaped again on its new node
    assert _ping_loss(dc, "web1", 10) == 100
    dc.clear_faults()
    assert "tbf" not in _qdisc(dc, after, "web1")
    assert _ping_loss(dc, "web1", 10) == 0


@pytest.mark.parametrize("cloud,path,header", [
    ("aws", "/latest/meta-data/instance-id", "X-No-Header: 1"),
    ("gcp", "/computeMetadata/v1/instance/name", "Metadata-Flavor: Google"),
])
def test_http_faults_serve_every_flavor(datacenter_factory, fault, cloud, path, header):
    dc = datacenter_factory(f'[datacenter]\ncloud = "{cloud}"\nlinklocal = "static"\n[[node]]\nname = "n1"\n'
                            '[[vm]]\nname = "v1"\n')
    assert curl(dc, "v1", path, "-H", header)[1] == 200
    fault("v1", http=429, path=path)
    rc, status, head, _ = curl(dc, "v1", path, "-H", header)
    assert status == 429 and re.search(r"(?im)^retry-after: 1", head)
    fault("node:n1", reset=True)
    assert curl(dc, "v1", path, "-H", header)[1] == 429  # the first fault that matches decides
    assert curl(dc, "v1", path.rsplit("/", 1)[0] + "/", "-H", header)[0] == 56  # another path: the node's reset


def test_a_link_rate_is_felt_inside_the_vm(dc):
    def ping() -> tuple[float, float]:
        out = dc.run("web3", ["ping", "-q", "-n", "-c", "10", "-i", "0.05", "-s", "1400", "-W", "3", "169.254.169.254"],
                     capture_output=True, text=True, timeout=60).stdout
        loss = float(re.search(r"([\d.]+)% packet loss", out).group(1))
        rtt = re.search(r"= [\d.]+/[\d.]+/([\d.]+)", out)
        return loss, float(rtt.group(1)) if rtt else 0.0
    loss, worst = ping()
    assert loss == 0 and worst < 200
    dc.add_fault("web3", latency=0, rate=3000)  # 14 KB of echo replies at 3 KB/s: queued, then dropped
    loss, worst = ping()
    assert loss > 0 or worst >= 200, (loss, worst)
