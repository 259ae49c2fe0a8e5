"""Reboot logging across real namespaces: rsyslog in ``ops`` receives what VMs log.

The shell script (2015 API) and the Python logger (Scheduled Events) each send exactly
ONE line per EventID however often they run, and none when nothing is pending, where
the seed's sample logged on every run without an event and never with one.

UDP gives no acknowledgement, so "no line arrived" is shown with a marker: after the
program under test, the same VM sends a marker line on the same path; once the
collector has the marker it has everything sent before it.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import time

import pytest

from netsim.harness.syslog import SyslogCollector, start_collector

SCRIPT = str(pathlib.Path(__file__).resolve().parents[2] / "scripts" / "is-vm-in-maint.sh")
TAG = "vm-maintenance"

# The seed's sample (samples/IsVmInMaint.sh after "Adopt to /metadata URI", 2015-09-17),
# unchanged but for logger's target and tag: the unquoted test is the bug.
SEED_SAMPLE = """
result=`curl -s http://169.254.169.254/metadata/v1/maintenance | grep -i EventID`
if [ -n $result ]; then
 logger -n "$SYSLOG_SERVER" -P "$SYSLOG_PORT" -d -t seed-sample Incoming VM reboot
fi
"""

_marks = itertools.count(1)


def mark(dc, vm: str, collector: SyslogCollector) -> None:
    """Send a marker from ``vm`` and wait until the collector has it (and so everything
    ``vm`` sent before)."""
    text = f"marker-{os.getpid()}-{next(_marks)}"
    sent = dc.run(vm, ["logger", "-n", collector.address, "-P", str(collector.port), "-d", "-t", "marker", text])
    assert sent.returncode == 0, sent.stderr
    collector.wait_for(lambda ls: any(line.message == text for line in ls), timeout=5)


def tagged(collector: SyslogCollector, app: str) -> list:
    """The lines with APP-NAME / TAG ``app``."""
    return [line for line in collector.lines() if line.app == app]


@pytest.mark.root
def test_shell_script_logs_one_line_per_event_and_none_without(datacenter_factory, stopper, tmp_path):
    dc = datacenter_factory()
    collector = start_collector(dc)
    stopper(collector)
    env = {**os.environ, "SYSLOG_SERVER": collector.address, "SYSLOG_PORT": str(collector.port),
           "MAINT_STATE_FILE": str(tmp_path / "web1.ids")}

    # Nothing pending: the seed's sample logs anyway; the script does not.
    seed = dc.run("web1", ["sh", "-c", SEED_SAMPLE], env=env)
    assert seed.returncode == 0
    script = dc.run("web1", ["sh", SCRIPT], env=env)
    assert script.returncode == 0, script.stderr
    mark(dc, "web1", collector)
    assert [line.message for line in tagged(collector, "seed-sample")] == ["Incoming VM reboot"]
    assert tagged(collector, TAG) == []

    # An event pending for web1: the script, run twice (two cron runs), logs it ONCE.
    event = dc.request("event_add", vm="web1", type="Reboot", **{"in": 120})["event"]
    for _ in range(2):
        script = dc.run("web1", ["sh", SCRIPT], env=env)
        assert script.returncode == 0, script.stderr
    # The seed's sample, meanwhile, fails its own test: the JSON splits into words.
    seed = dc.run("web1", ["sh", "-c", SEED_SAMPLE], env=env)
    assert "[" in seed.stderr and ("too many arguments" in seed.stderr or "unexpected operator" in seed.stderr)
    mark(dc, "web1", collector)

    lines = tagged(collector, TAG)
    assert len(lines) == 1, lines
    assert event["event_id"] in lines[0].message and "VM web1" in lines[0].message
    assert lines[0].source == dc.routable_address("web1")
    assert len(tagged(collector, "seed-sample")) == 1  # still only the false alarm
    assert (tmp_path / "web1.ids").read_text().split() == [event["event_id"]]

    # web3 shares web1's node and availability set but the 2015 API shows it nothing.
    env3 = {**env, "MAINT_STATE_FILE": str(tmp_path / "web3.ids")}
    assert dc.run("web3", ["sh", SCRIPT], env=env3).returncode == 0
    mark(dc, "web3", collector)
    assert len(tagged(collector, TAG)) == 1


@pytest.mark.root
def test_python_logger_logs_each_event_id_once(datacenter_factory, stopper, spawn, tmp_path):
    dc = datacenter_factory()
    collector = start_collector(dc)
    stopper(collector)
    state = str(tmp_path / "logger.ids")
    once = ["--once", "--syslog", collector.target, "--state", state]

    # Nothing pending: nothing logged.
    assert spawn(dc, "web1", "netsim.invm.event_logger", *once, log="once0.log").wait(20) == 0
    mark(dc, "web1", collector)
    assert tagged(collector, TAG) == []

    # Two --once runs while an event is pending: one line (the state file remembers).
    event = dc.request("event_add", vm="web1", type="Reboot", **{"in": 120})["event"]
    for i in (1, 2):
        assert spawn(dc, "web1", "netsim.invm.event_logger", *once, log=f"once{i}.log").wait(20) == 0
    mark(dc, "web1", collector)
    lines = tagged(collector, TAG)
    assert len(lines) == 1, lines
    line = lines[0]
    assert event["event_id"] in line.message and "Reboot for VM web1" in line.message
    assert line.protocol == "1" and line.hostname == "web1"  # RFC 5424, the VM's name as HOSTNAME

    # --loop (no state): a new event is logged once although the document changes again
    # (another VM's event, broadcast to the availability set) and is polled every second.
    # Events are never approved here: approval would start them, and a Reboot or
    # Redeploy really ends web1's processes.
    loop = spawn(dc, "web1", "netsim.invm.event_logger", "--loop", "--rfc", "3164",
                 "--syslog", collector.target, log="loop.log")
    first = lambda ls: [x for x in ls if x.app == TAG and x.procid == str(loop.pid)]  # noqa: E731
    collector.wait_for(lambda ls: len(first(ls)) == 1, timeout=10)  # the pending event, seen fresh
    second = dc.request("event_add", vm="web1", type="Redeploy", **{"in": 120})["event"]
    collector.wait_for(lambda ls: len(first(ls)) == 2, timeout=10)
    dc.request("event_add", vm="web3", type="Reboot", **{"in": 120})  # web3's, not web1's
    time.sleep(2.5)  # at least two more polls
    mark(dc, "web1", collector)
    mine = first(collector.lines())
    assert len(mine) == 2, mine
    assert event["event_id"] in mine[0].message and second["event_id"] in mine[1].message
    assert mine[1].protocol == "0"  # RFC 3164
    assert loop.proc.poll() is None, loop.output()
