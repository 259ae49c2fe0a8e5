"""Checks judged on invented records; the report and the SVG timeline built from them."""

import xml.etree.ElementTree as ET

from netsim.experiments import report as reportmod
from netsim.experiments import svg
from netsim.experiments.checks import Results, judge
from netsim.experiments.loader import parse_experiment
from netsim.experiments.record import Recorder
from netsim.experiments.schedule import Schedule

FILE = '''
[experiment]
name = "t"
duration = 60
agents = ["logger"]
[[step]]
name = "reboot"
do = "event"
vm = "web1"
[[step]]
name = "fault"
do = "fault"
target = "web1"
http = 500
duration = 5
[[step]]
name = "client"
do = "exec"
host = "web1"
command = "true"
[[step]]
name = "load"
do = "load"
'''


def setup(checks: str):
    exp = parse_experiment(FILE + checks, "t.toml")
    sched = Schedule(exp.steps, exp.duration)
    sched.advance(0.0)
    rec = Recorder(wall0=1000.0)
    rec.observe_events(1.0, {"events": [{"event_id": "E1", "event_type": "Reboot", "kind": "reboot",
                                         "resources": ["web1"], "status": "Scheduled", "not_before": 1010.0}]})
    rec.observe_events(10.0, {"events": [], "history": [{"event_id": "E1", "event_type": "Reboot", "kind": "reboot",
                                                         "resources": ["web1"], "status": "Completed"}]})
    rec.observe_faults(0.5, {"faults": [{"id": "fault-1", "target": "web1", "kind": "http", "http": 500,
                                         "starts_at": 1000.2, "ends_at": 1005.2, "state": "active"}]})
    rec.observe_faults(6.0, {"faults": []})
    sched.end("reboot", 10.0)
    sched.end("fault", 5.5)
    sched.end("client", 7.0)
    sched.end("load", 20.0)
    results = Results(exits={"client": 0}, event_ids={"reboot": "E1"}, outputs={"client": "try 1: 503\ntry 2: 200\n"},
                      loads={"load": {"started": 0.0, "sent": 200, "ok": 197, "failed": 3, "errors": {"status-500": 3},
                                      "per_second": [{"second": s, "ok": 10, "failed": 1 if s in (2, 4, 6) else 0}
                                                     for s in range(20)]}},
                      syslog=[{"hostname": "web1", "app": "vm-maintenance", "message": "Scheduled event Reboot for VM "
                               "web1", "source": "198.18.0.10", "received": "x"}])
    return exp, sched, rec, results


def verdicts(checks: str) -> list[tuple[bool, str]]:
    exp, sched, rec, results = setup(checks)
    return [(v.passed, v.detail) for v in (judge(c, sched, rec, results) for c in exp.checks)]


def test_load_checks_count_and_share_of_failed_requests():
    [(ok1, d1), (ok2, d2), (ok3, _)] = verdicts('[[check]]\nkind = "load"\nmax_failed = 0\n'
                                                '[[check]]\nkind = "load"\nmax_failed_pct = 1.5\n'
                                                '[[check]]\nkind = "load"\nmax_failed = 3\nmax_failed_pct = 1.5\n')
    assert (ok1, ok2, ok3) == (False, True, True)
    assert d1 == "3 of 200 requests failed (1.50 %): status-500 3; more than 0"


def test_syslog_event_and_exit_checks():
    got = verdicts('[[check]]\nkind = "syslog"\nvm = "web1"\ncontains = "Reboot"\n'
                   '[[check]]\nkind = "syslog"\nvm = "web2"\n'
                   '[[check]]\nkind = "event"\nstep = "reboot"\nstate = "Completed"\n'
                   '[[check]]\nkind = "event"\nvm = "web1"\ntype = "Reboot"\nstate = "Started"\n'
                   '[[check]]\nkind = "event"\nvm = "web1"\ntype = "Freeze"\nstate = "Scheduled"\n'
                   '[[check]]\nkind = "exit"\nstep = "client"\n'
                   '[[check]]\nkind = "exit"\nstep = "client"\ncode = 3\n'
                   '[[check]]\nkind = "output"\nstep = "client"\ncontains = "try 2: 200"\n'
                   '[[check]]\nkind = "output"\nstep = "client"\ncontains = "404"\n')
    assert [ok for ok, _ in got] == [True, False, True, False, False, True, False, True, False]
    assert got[-1][1] == "the output of client lacks '404'"
    assert got[2][1] == "E1 was Completed at 10.0 s"
    assert got[3][1] == ("an event of web1 of type Reboot never reached Started "
                         "(seen: {'E1': ['Scheduled', 'Completed']})")


def test_recovered_measures_from_the_end_of_the_cause():
    got = verdicts('[[check]]\nkind = "recovered"\nstep = "client"\nafter = "fault"\nwithin = 2\n'
                   '[[check]]\nkind = "recovered"\nstep = "client"\nafter = "fault"\nwithin = 1\n'
                   '[[check]]\nkind = "recovered"\nstep = "load"\nafter = "fault"\nwithin = 1.5\n'
                   '[[check]]\nkind = "recovered"\nstep = "load"\nafter = "fault"\nwithin = 1\n')
    assert [ok for ok, _ in got] == [True, False, True, False]
    assert got[0][1] == "client recovered 1.5 s after fault ended (within 2 s)"
    assert got[2][1] == "load recovered 1.5 s after fault ended (within 1.5 s)"  # last failed second: 6..7


def test_the_recorder_keeps_the_first_time_of_each_state_and_sees_clearing():
    _, _, rec, _ = setup("")
    assert rec.events["E1"]["states"] == {"Scheduled": 1.0, "Completed": 10.0}
    assert rec.events["E1"]["not_before"] == 10.0
    assert rec.faults["fault-1"]["cleared"] == 6.0 and rec.fault_window("fault-1") == (0.2, 5.2)
    assert rec.faults["fault-1"]["options"] == {"http": 500}


def test_the_report_and_the_picture_are_well_formed():
    exp, sched, rec, results = setup('[[check]]\nkind = "exit"\nstep = "client"\n'
                                     '[[check]]\nkind = "load"\nmax_failed = 0\n')
    vs = [judge(c, sched, rec, results) for c in exp.checks]
    results.outputs["client"] = "hello\n"
    report = reportmod.build(exp, "xp1", sched, rec, results, vs, 20.0, 1000.0)
    assert report["passed"] is False and [c["passed"] for c in report["checks"]] == [True, False]
    assert report["load"]["load"]["per_second"][2] == [2, 10, 1]
    assert report["exec"] == {"client": {"exit": 0, "output": "hello\n"}}
    assert [s["name"] for s in report["steps"]] == ["reboot", "fault", "client", "load"]
    picture = svg.render(report)
    root = ET.fromstring(picture)  # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "FAILED" in texts and "fault-1 web1" in texts and "Reboot web1" in texts and "FAIL" in texts
    lines = reportmod.summary(report).splitlines()
    assert lines[-1] == "== FAILED: t (20 s)" and any(ln.startswith("  FAIL  load(") for ln in lines)
    line = reportmod.frame(3.0, sched, rec, {})
    assert line.startswith("t=   3.0s  steps 4/4") and "no fault" in line
