"""Link faults netem would make, across real namespaces, on whichever path the kernel takes
(netem, or netsim's delay line when the kernel has no netem): latency, duplicates,
reordering and corruption seen from inside a VM, the metadata service answered under
latency, clear, a daemon killed and started again, cleanup after a crash.

Bounds are generous (issue 13): a round trip is at least the delay, and at most 3 x the
delay + 200 ms on average.
"""

from __future__ import annotations

import re
import signal

import pytest

from netsim.api import datacenter as dcapi
from netsim.harness.pytest_plugin import unique_name
from netsim.kernel import delayline, netns, qdisc
from netsim.model import load, names
# The fixtures: one datacenter for the module (web1 and web3 on n1, web2 on n2), each test's faults cleared.
from tests.runtime.test_faults import dc, no_faults_left  # noqa: F401

pytestmark = pytest.mark.root

MD = "169.254.169.254"


def ping(dc, vm: str, count: int, interval: float, *extra: str) -> str:
    return dc.run(vm, ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2", *extra, MD],
                  capture_output=True, text=True, timeout=60).stdout


def rtts(out: str) -> tuple[float, float]:
    """(min, avg) round trip in ms of a ping's summary."""
    m = re.search(r"= ([\d.]+)/([\d.]+)/", out)
    assert m, out
    return float(m.group(1)), float(m.group(2))


def loss(out: str) -> float:
    return float(re.search(r"([\d.]+)% packet loss", out).group(1))


def taps(dc, node: str) -> list[str]:
    out = dc.run(f"node:{node}", ["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return re.findall(rf"({names.PREFIX}d[qr])@", out)


def test_latency_with_jitter_is_seen_from_inside_the_vm_once_per_round_trip(dc):
    fault = dc.add_fault("web1", latency=100, jitter=10)
    assert fault["state"] == "active"
    low, avg = rtts(ping(dc, "web1", 10, 0.05))
    assert low >= 90 and avg <= 3 * 100 + 200, (low, avg)
    assert rtts(ping(dc, "web3", 5, 0.05))[0] < 90  # same node, another VM: not delayed
    dc.clear_faults()
    assert rtts(ping(dc, "web1", 5, 0.05))[0] < 90


def test_the_metadata_service_answers_under_latency(dc):
    dc.add_fault("web1", latency=100)
    out = dc.run("web1", ["curl", "-s", "-o", "/dev/null", "-m", "20", "-w", "%{http_code} %{time_total}",
                          f"http://{MD}/metadata/v1/InstanceInfo"], capture_output=True, text=True, timeout=30)
    status, seconds = out.stdout.split()
    # The handshake's SYN-ACK and the answer are both delayed: two round trips at least.
    assert status == "200" and float(seconds) >= 0.2, out
    # A document of more than one segment (maybe one GSO frame) arrives whole, byte for byte.
    dc.clear_faults()
    argv = ["curl", "-s", "-m", "20", "-H", "Metadata: true", f"http://{MD}/metadata/instance?api-version=2021-02-01"]
    plain = dc.run("web1", argv, capture_output=True, timeout=30).stdout
    dc.add_fault("web1", latency=50, jitter=20)
    assert len(plain) > 1500 and dc.run("web1", argv, capture_output=True, timeout=30).stdout == plain


def test_duplicates_are_seen(dc):
    dc.add_fault("web1", duplicate=50)
    assert "DUP!" in ping(dc, "web1", 20, 0.02)  # none in 20 by luck: 2**-20
    dc.clear_faults()
    assert "DUP!" not in ping(dc, "web1", 10, 0.02)


def test_reordering_is_seen(dc):
    dc.add_fault("web1", reorder=25, latency=50)
    out = ping(dc, "web1", 60, 0.005)
    seqs = [int(s) for s in re.findall(r"icmp_seq=(\d+)", out)]
    assert len(seqs) >= 50 and seqs != sorted(seqs), out  # replies arrive out of order


def test_corruption_is_caught_by_the_vm_checksums(dc):
    dc.add_fault("web1", corrupt=20)
    # binomial(200, 0.2): no corrupted reply by luck ~1e-19
    assert loss(ping(dc, "web1", 200, 0.005)) > 0
    dc.clear_faults()
    assert loss(ping(dc, "web1", 20, 0.01)) == 0


def test_clear_removes_the_line_and_a_killed_daemon_puts_it_back(dc):
    node = dc.request("snapshot")["placement"]["web1"]
    dc.add_fault("web1", latency=80)
    if not qdisc.netem_available():
        assert sorted(taps(dc, node)) == [delayline.TAP_INTO, delayline.TAP_OUT]
    dc.stop_daemon(signal.SIGKILL)
    dc.start_daemon()
    assert rtts(ping(dc, "web1", 5, 0.05))[0] >= 80
    dc.clear_faults()
    assert taps(dc, node) == []
    assert "clsact" not in dc.run(f"node:{node}", ["tc", "qdisc", "show", "dev", names.vm_port("web1")],
                                  capture_output=True, text=True).stdout
    assert rtts(ping(dc, "web1", 5, 0.05))[0] < 80


def test_a_killed_daemon_clearing_nothing_still_leaves_no_redirect(dc):
    node = dc.request("snapshot")["placement"]["web1"]
    fault = dc.add_fault("web1", latency=50, duration=1)
    dc.stop_daemon(signal.SIGKILL)
    import time
    time.sleep(1.2)  # the fault ends while no daemon runs
    dc.start_daemon()
    assert [f["state"] for f in dc.faults()] == ["ended"] and fault["id"]
    assert taps(dc, node) == []
    assert loss(ping(dc, "web1", 5, 0.05)) == 0


def test_down_and_cleanup_after_a_crash_leave_nothing():
    from dataclasses import replace
    running = dcapi.up(replace(load(), name=unique_name()))
    try:
        running.add_fault("all", latency=20, duplicate=10)
        running.stop_daemon(signal.SIGKILL)
    finally:
        dcapi.cleanup(running.name)
    assert netns.list_names(names.dc_prefix(running.name)) == []


def test_two_vms_of_one_node_each_get_their_own_line(dc):
    dc.add_fault("web1", latency=300)
    dc.add_fault("web3", latency=20, duplicate=100)  # web1 and web3 share node n1's tap
    one, three = ping(dc, "web1", 5, 0.05), ping(dc, "web3", 5, 0.05)
    assert rtts(one)[0] >= 300 and "DUP!" not in one
    # One copy per reply (ping may end before the last one): a written frame is not
    # redirected again (a loop would multiply them).
    assert 20 <= rtts(three)[0] < 300 and re.search(r"\+[45] duplicates", three), three
    dc.clear_faults(dc.faults()[0]["id"])  # web1's line goes, web3's stays
    assert rtts(ping(dc, "web1", 5, 0.05))[0] < 20 and "DUP!" in ping(dc, "web3", 3, 0.05)


def test_a_line_follows_its_vm_when_it_moves(dc):
    import time
    before = dc.request("snapshot")["placement"]["web1"]
    dc.add_fault("web1", latency=100)
    dc.request("event_add", vm="web1", type="Redeploy", duration=2, **{"in": 0})
    deadline = time.monotonic() + 60
    while dc.request("snapshot")["placement"]["web1"] == before or dc.request("snapshot")["events"]:
        assert time.monotonic() < deadline, dc.request("snapshot")
        time.sleep(0.2)
    after = dc.request("snapshot")["placement"]["web1"]
    assert rtts(ping(dc, "web1", 5, 0.05))[0] >= 100  # delayed on its new node
    if not qdisc.netem_available():
        assert taps(dc, before) == [] and taps(dc, after) != []  # web3 stays on n1 without a line
    dc.clear_faults()
    assert taps(dc, after) == []
