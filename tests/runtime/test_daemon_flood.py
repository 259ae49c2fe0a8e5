"""The daemon's metadata service under a flood from one VM (issue 9), in a real datacenter.

web1 floods its node's server (n1); web3 (same node) and web2 (node n2) poll 10 times a
second. Each flood runs in a child process inside web1 for FLOOD_SECONDS and stops by
itself. Asserted: honest VMs see 0 errors within a generous bound, the control socket
answers meanwhile, the daemon's memory and daemon.log stay bounded, and the requests
that used to write tracebacks are answered 400 with none in the log.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from netsim.api import control
from netsim.kernel.safety import emulated_socket
from netsim.harness.flood import run_flood

pytestmark = pytest.mark.root

FLOOD_SECONDS = 5.0
HONEST_P99_BOUND = 0.3   # seconds; generous (the benchmark reports the figure, goal 50 ms)
CONTROL_BOUND = 2.0      # seconds for one control request during the flood (it used to time out at 10)
RSS_BOUND_MB = 150.0
LOG_BOUND = 64 * 1024    # bytes daemon.log may grow by during one flood


def test_one_vm_flooding_delays_nobody_and_the_daemon_stays_bounded(datacenter) -> None:
    dc = datacenter
    (pid,) = dc.daemon_pids()
    for kind in ("pipeline", "noread", "headers"):
        report = run_flood(kind, dc.namespace("web1"), [dc.namespace("web3"), dc.namespace("web2")],
                           FLOOD_SECONDS, pid=pid, log_path=dc.state.file("daemon.log"),
                           probe=lambda: control.request(dc.name, "events", timeout=CONTROL_BOUND + 3))
        assert report.stats["sent"] > 100_000, (kind, report.stats)  # it did flood
        for ns, result in report.honest.items():
            assert result.errors == [], (kind, ns, result.errors[:5])
            assert len(result.latencies) >= 30 and result.p99() < HONEST_P99_BOUND, \
                (kind, ns, sorted(result.latencies)[-5:])
        answered = [t for t in report.probes if t is not None]
        assert report.probes and len(answered) == len(report.probes), (kind, report.probes)
        assert max(answered) < CONTROL_BOUND, (kind, answered)
        assert report.rss_peak_mb <= RSS_BOUND_MB, (kind, report.rss_peak_mb)
        assert report.log_growth <= LOG_BOUND, (kind, report.log_growth)


def _answer(dc, raw: bytes) -> bytes:
    sock = emulated_socket(dc.namespace("web3"), socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(3)
        sock.connect(("169.254.169.254", 80))
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    return data


def test_requests_that_wrote_tracebacks_answer_400_and_leave_no_traceback(datacenter) -> None:
    dc = datacenter
    path = dc.state.file("daemon.log")
    start = os.path.getsize(path)
    body = b"[" * 60_000
    post = (b"POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: h\r\nMetadata: true\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)) + body
    for _ in range(20):
        assert _answer(dc, b"GET http://[::1/x HTTP/1.1\r\nHost: h\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    for _ in range(3):  # the current API is rate limited (5/s): stay under it
        assert _answer(dc, post).startswith(b"HTTP/1.1 400 ")
    time.sleep(0.2)
    with open(path, "rb") as f:
        f.seek(start)
        grown = f.read()
    assert b"Traceback" not in grown and b"Fatal error" not in grown, grown[-2000:]
    assert len(grown) < 4096, len(grown)
