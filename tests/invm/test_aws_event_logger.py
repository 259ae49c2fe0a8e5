"""The AWS event logger: its sans-IO core, and its IMDSv2 poll inside a VM of an aws
datacenter logging a scheduled reboot and a spot interruption to a UDP collector on
``ops`` (needs root)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from netsim.invm.aws_event_logger import AwsWatcher
from tests.server.aws.test_aws_datacenter import NETSIM, TOPOLOGY

EVENT = {"NotBefore": "21 Jan 2019 09:00:43 GMT", "Code": "system-reboot", "EventId": "instance-event-0d59937288b749b32"}


def test_the_watcher_logs_each_notice_once() -> None:
    w = AwsWatcher("i-0123")
    quiet = {"scheduled": "[]", "spot": None, "rebalance": None, "lifecycle": "InService"}
    assert w.observe(quiet) == []
    lines = w.observe({**quiet, "scheduled": json.dumps([EVENT]),
                       "spot": '{"action": "stop", "time": "2019-01-21T09:02:43Z"}'})
    assert lines == ["AWS scheduled event instance-event-0d59937288b749b32 of VM i-0123: system-reboot "
                     "NotBefore 21 Jan 2019 09:00:43 GMT",
                     "AWS spot interruption of VM i-0123: stop at 2019-01-21T09:02:43Z"]
    assert w.observe({**quiet, "scheduled": json.dumps([EVENT])}) == []
    assert w.observe({**quiet, "lifecycle": "Terminated"}) == ["AWS target lifecycle state of VM i-0123: Terminated"]


COLLECTOR = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5514))
print("ready", flush=True)
s.settimeout(30)
for _ in range(2):
    print(s.recv(4096).decode(errors="replace"), flush=True)
"""


@pytest.mark.root
def test_the_logger_polls_over_imdsv2_and_logs_each_notice(datacenter_factory) -> None:
    dc = datacenter_factory(TOPOLOGY)  # a2 requires tokens: the logger speaks IMDSv2
    collector = dc.popen("ops", [sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True)
    assert collector.stdout.readline().strip() == "ready"
    logger = dc.popen("a2", [sys.executable, "-m", "netsim.invm.aws_event_logger", "--syslog",
                             "198.19.255.30:5514", "--interval", "0.5", "--duration", "30"],
                      stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    for args in (["--type", "system-reboot", "--in", "600"], ["--type", "spot-interruption", "--in", "600"]):
        subprocess.run([NETSIM, "event", "add", "a2", *args, "--name", dc.name], check=True, capture_output=True,
                       timeout=30)
    out, _ = collector.communicate(timeout=30)
    assert "AWS scheduled event instance-event-" in out and ": system-reboot NotBefore " in out, out
    assert "AWS spot interruption of VM i-" in out and ": terminate at " in out, out
    logger.terminate()
    logger.wait(timeout=10)


def test_the_aws_drain_agent_drains_on_notice_and_is_ready_after() -> None:
    from netsim.invm.aws_drain_agent import AwsDrain
    core = AwsDrain()
    quiet = {"scheduled": "[]", "spot": None, "lifecycle": "InService"}
    assert core.answers(quiet) is None
    assert core.answers({**quiet, "scheduled": json.dumps([EVENT])}) == "drain"
    assert core.answers({**quiet, "scheduled": json.dumps([EVENT])}) is None
    assert core.answers(quiet) == "ready"
    assert core.answers({**quiet, "spot": '{"action": "terminate", "time": "x"}'}) == "drain"
    assert AwsDrain().answers({**quiet, "lifecycle": "Terminated"}) == "drain"
