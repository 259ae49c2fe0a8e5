"""Experiments end to end, across real namespaces: a real datacenter, real events and
faults, a client in a VM, checks that pass and one that fails, the report and the picture."""

import json
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from netsim.api import datacenter as dcapi
from netsim.experiments.loader import parse_experiment
from netsim.experiments.runner import run
from netsim.harness.pytest_plugin import unique_name
from netsim.kernel import netns
from netsim.model import names

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "netsim" / "experiments" / "examples"

SMALL = '''
[experiment]
name = "small"
duration = 60
agents = ["logger"]

[[step]]
name = "reboot"
do = "event"
vm = "web1"
type = "Reboot"
in = 1
duration = 2

[[step]]
name = "outage"
do = "fault"
target = "web2"
http = 503
duration = 2

[[step]]
name = "client"
do = "exec"
at = 0.3
host = "web2"
timeout = 30
# retries until the metadata service answers 200 again (at most 40 tries)
command = "for i in $(seq 40); do c=$(curl -s -m 1 -o /dev/null -w '%{http_code}' http://169.254.169.254/metadata/v1/InstanceInfo); echo \\"try $i: $c\\"; [ \\"$c\\" = 200 ] && exit 0; sleep 0.25; done; exit 1"

[[step]]
name = "settle"
do = "wait"
after = "reboot"
seconds = 0.5

[[step]]
name = "blocker"
do = "fault"
target = "web3"
http = 500              # until cleared

[[step]]
name = "unblock"
do = "clear"
fault = "blocker"
after = "settle"

[[check]]
kind = "event"
step = "reboot"
state = "Completed"

[[check]]
kind = "recovered"
step = "client"
after = "outage"
within = 5

[[check]]
kind = "syslog"
vm = "web1"
contains = "Reboot"

[[check]]
kind = "exit"
step = "client"

[[check]]
kind = "event"          # fails: nothing happens to web3
vm = "web3"
state = "Started"
'''


def netsim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True,
                          timeout=240)


@pytest.mark.root
def test_a_small_experiment_runs_end_to_end_and_a_failed_check_exits_1(netsim_state_dir, tmp_path):
    path, out, picture = tmp_path / "small.toml", tmp_path / "report.json", tmp_path / "timeline.svg"
    path.write_text(SMALL)
    name = unique_name()
    proc = netsim("experiment", "run", str(path), "--name", name, "--json", str(out), "--svg", str(picture))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"^t=\s+\d+\.\d+s  steps \d/6 running: ", proc.stdout, re.M), proc.stdout  # the live timeline
    assert "== FAILED: small" in proc.stdout
    report = json.loads(out.read_text())
    verdicts = {c["check"]: c["passed"] for c in report["checks"]}
    assert list(verdicts.values()) == [True, True, True, True, False], report["checks"]
    steps = {s["name"]: s for s in report["steps"]}
    assert all(s["ok"] and s["phase"] == "ended" for s in steps.values()), steps
    assert steps["settle"]["started"] >= steps["reboot"]["ended"]
    assert steps["settle"]["ended"] - steps["settle"]["started"] == pytest.approx(0.5, abs=0.002)  # its own end
    [event] = [e for e in report["events"] if e["vms"] == ["web1"]]
    assert list(event["states"]) == ["Scheduled", "Started", "Completed"]
    outage, blocker = sorted(report["faults"], key=lambda f: f["target"])
    assert (outage["target"], outage["kind"], outage["options"]) == ("web2", "http", {"http": 503})
    assert outage["state"] == "ended" and outage["cleared"] is None
    assert blocker["target"] == "web3" and blocker["cleared"] is not None  # by the clear step
    assert steps["blocker"]["ended"] >= steps["unblock"]["started"]
    output = report["exec"]["client"]["output"]
    assert "503" in output and output.rstrip().endswith(": 200"), output  # it saw the fault, then recovered
    assert any(ln["hostname"] == "web1" and "Reboot" in ln["message"] for ln in report["syslog"])
    root = ET.fromstring(picture.read_text())
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # Everything it brought up is gone.
    assert not netns.list_names(names.dc_prefix(name))
    assert not dcapi.StateDir(name).exists()


@pytest.mark.root
def test_the_seed_walk_example_keeps_every_request_with_drain_agents(netsim_state_dir):
    text = (EXAMPLES / "seed-walk.toml").read_text()
    text = text.replace("notice = 8 ", "notice = 2 ").replace("downtime = 10 ", "downtime = 3 ")
    text = text.replace("rate = 100 ", "rate = 60 ")
    exp = parse_experiment(text, str(EXAMPLES / "seed-walk.toml"))
    assert exp.step("walk").args == {"avset": "web", "notice": 2, "downtime": 3}
    report = run(exp, name=unique_name())
    assert report["passed"], (report["checks"], [s for s in report["steps"] if not s["ok"]])
    load = report["load"]["load"]
    assert load["failed"] == 0 and load["sent"] >= 60 * 10
    reboots = sorted((e["states"]["Started"], e["vms"]) for e in report["events"] if "Started" in e["states"])
    assert [vms for _, vms in reboots] == [["web1"], ["web2"], ["web3"]]  # one update domain at a time


@pytest.mark.root
def test_the_playbook_example_client_retries_through_each_fault_and_gets_the_document(netsim_state_dir):
    exp = parse_experiment((EXAMPLES / "playbook.toml").read_text(), str(EXAMPLES / "playbook.toml"))
    report = run(exp, name=unique_name())
    assert report["passed"], (report["checks"], report["exec"])
    assert [c["kind"] for c in report["checks"]] == ["recovered", "exit", "output", "output", "output", "output"]
    assert ": 200, vmId" in report["exec"]["agent"]["output"]
    assert [f["options"] for f in report["faults"]] == [
        {"http": 500, "path": "/metadata/instance"}, {"hang": True, "path": "/metadata/instance"},
        {"http": 404, "path": "/metadata/instance"}, {"truncate": 200, "path": "/metadata/instance"}]


@pytest.mark.root
def test_a_bad_experiment_file_exits_2_with_one_line_naming_file_line_and_field(netsim_state_dir, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[experiment]\nduration = 30\n[[step]]\ndo = "event"\nvm = "web9"\n')
    for sub in ("run", "check"):
        proc = netsim("experiment", sub, str(path))
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith(f"netsim: error: {path}:5, field 'step[0].vm': ") and "web9" in proc.stderr


NODE = '''
[experiment]
duration = 60

[[step]]
name = "fail"
do = "node_fail"
node = "n2"

[[step]]
name = "down"
do = "wait"
seconds = 3

[[step]]
name = "recover"
do = "node_recover"
node = "n2"
after = "down"

[[step]]
name = "probe"
do = "exec"
host = "web2"
after = "recover"
offset = 1
command = ["curl", "-s", "-m", "2", "http://169.254.169.254/metadata/v1/InstanceInfo"]

[[check]]
kind = "exit"
step = "probe"
'''


@pytest.mark.root
def test_a_node_fails_and_recovers_on_the_timeline_and_its_vm_answers_after(netsim_state_dir, tmp_path):
    report = run(parse_experiment(NODE, str(tmp_path / "node.toml")), name=unique_name())
    assert report["passed"], report["steps"]
    steps = {s["name"]: s for s in report["steps"]}
    # The order the file asks for (times are the schedule's; no duration is asserted).
    assert steps["recover"]["started"] >= steps["down"]["ended"] == steps["down"]["started"] + 3
    assert steps["probe"]["started"] >= steps["recover"]["ended"] + 1.0
    assert json.loads(report["exec"]["probe"]["output"])["ID"] == "web2"
