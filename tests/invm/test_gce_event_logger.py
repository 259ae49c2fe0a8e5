"""The GCE event logger: its sans-IO core, and its long poll inside a VM of a gcp
datacenter logging a live migration to a UDP collector on ``ops`` (needs root)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from netsim.invm.gce_event_logger import GceWatcher
from tests.server.gcp.test_gcp_datacenter import NETSIM, TOPOLOGY


def test_the_watcher_logs_each_change_once_and_nothing_quiet() -> None:
    w = GceWatcher("web1")
    assert w.observe({"maintenanceEvent": "NONE", "preempted": "FALSE", "upcomingMaintenance": {}}) == []
    assert w.observe({"maintenanceEvent": "NONE", "preempted": "FALSE", "upcomingMaintenance": {}}) == []
    lines = w.observe({"maintenanceEvent": "MIGRATE_ON_HOST_MAINTENANCE", "preempted": "FALSE",
                       "upcomingMaintenance": {"type": "SCHEDULED"}})
    assert lines == ["GCE maintenanceEvent of VM web1: MIGRATE_ON_HOST_MAINTENANCE",
                     'GCE upcomingMaintenance of VM web1: {"type": "SCHEDULED"}']
    assert w.observe({"maintenanceEvent": "NONE", "preempted": "FALSE", "upcomingMaintenance": {}})[0].endswith("NONE")


COLLECTOR = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5514))
print("ready", flush=True)
s.settimeout(30)
print(s.recv(4096).decode(errors="replace"), flush=True)
"""


@pytest.mark.root
def test_the_logger_long_polls_and_logs_a_migration_at_once(datacenter_factory) -> None:
    dc = datacenter_factory(TOPOLOGY)
    collector = dc.popen("ops", [sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    assert collector.stdout.readline().strip() == "ready"
    logger = dc.popen("web1", [sys.executable, "-m", "netsim.invm.gce_event_logger", "--syslog",
                               "198.19.255.30:5514", "--duration", "30"], stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)  # parked on its long poll
    added = time.time()
    subprocess.run([NETSIM, "event", "add", "web1", "--type", "MIGRATE_ON_HOST_MAINTENANCE", "--in", "600",
                    "--name", dc.name], check=True, capture_output=True, timeout=30)
    out, _ = collector.communicate(timeout=30)
    assert "GCE upcomingMaintenance of VM web1" in out or "GCE maintenanceEvent of VM web1" in out, out
    assert time.time() - added < 3.0
    logger.terminate()
    logger.wait(timeout=10)


def test_the_gce_drain_agent_drains_on_notice_and_is_ready_after() -> None:
    from netsim.invm.gce_drain_agent import GceDrain
    core = GceDrain()
    quiet = {"maintenanceEvent": "NONE", "upcomingMaintenance": {}}
    assert core.document(quiet) is None
    assert core.document({"maintenanceEvent": "NONE", "upcomingMaintenance": {"type": "SCHEDULED"}}) == "drain"
    assert core.document({"maintenanceEvent": "MIGRATE_ON_HOST_MAINTENANCE", "upcomingMaintenance": {}}) is None
    assert core.document(quiet) == "ready" and core.document(quiet) is None
