"""The scenario components' pure parts: formats, parsers, configurations and the sans-IO
cores, on invented timelines and bytes. Nothing here sends a packet."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from netsim.invm import runtime_api
from netsim.invm.drain_agent import (TRANSITIONS, AgentError, Approve, DrainAgent, Log, Phase, QueryStats,
                                          SetState)
from netsim.invm.errors import RuntimeApiError
from netsim.invm.event_logger import EventLogger, read_state, record_state, resources_of
from netsim.harness.haproxy import haproxy_config
from netsim.invm.imds import ImdsError, patiently, retrying
from netsim.harness.loadgen import MAX_FAILURE_RECORDS, Tally
from netsim.harness.procs import _hex_address
from netsim.invm.runtime_api import ServerStatus
from netsim.harness.syslog import collector_config, parse_line
from netsim.invm.syslog_client import parse_target, priority, rfc3164, rfc5424

NOW = 1442299371.5  # 2015-09-15 06:42:51.5 UTC, the seed README's EventCreationTime


# -- syslog lines -----------------------------------------------------------------------

def test_rfc5424_line_is_exact():
    line = rfc5424("Incoming VM reboot", now=NOW, hostname="web1", app="vm-maintenance", procid=42,
                   msgid="SCHEDEVT")
    assert line == b"<13>1 2015-09-15T06:42:51.500000Z web1 vm-maintenance 42 SCHEDEVT - Incoming VM reboot"


def test_rfc5424_nil_and_unprintable_fields():
    line = rfc5424("m", now=NOW, hostname="", app="a b", procid=None, msgid=None, facility="local0",
                   severity="info")
    assert line.startswith(b"<134>1 2015-09-15T06:42:51.500000Z - a_b - - - m")


def test_rfc3164_line_is_exact():
    line = rfc3164("hello", now=NOW, hostname="web1", tag="vm-maintenance", pid=7)
    assert line == b"<13>Sep 15 06:42:51 web1 vm-maintenance[7]: hello"
    assert rfc3164("x", now=NOW - 14 * 86400, hostname="h", tag="t").startswith(b"<13>Sep  1 ")


def test_priority_and_target_errors():
    assert priority("user", "notice") == 13 and priority("local7", "debug") == 191
    with pytest.raises(ValueError, match="facilities"):
        priority("nope", "info")
    assert parse_target("198.19.255.30") == ("198.19.255.30", 514)
    assert parse_target("198.19.255.30:1514") == ("198.19.255.30", 1514)
    with pytest.raises(ValueError, match="port"):
        parse_target("198.19.255.30:x")


# -- the collector ----------------------------------------------------------------------

def test_collector_config_reads_udp_only_and_writes_its_own_file(tmp_path):
    text = collector_config(str(tmp_path), str(tmp_path / "messages.log"), 514)
    assert 'module(load="imudp")' in text and 'port="514"' in text
    modules = [ln for ln in text.splitlines() if ln.startswith("module(")]
    assert modules == ['module(load="imudp")'] and "/var/log" not in text
    assert f'file="{tmp_path}/messages.log"' in text
    if shutil.which("rsyslogd") or os.path.exists("/usr/sbin/rsyslogd"):
        conf = tmp_path / "rsyslog.conf"
        conf.write_text(text)
        check = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr


def test_parse_line():
    line = parse_line("2026-01-01T00:00:00+00:00\t198.18.0.2\tweb1\tvm-maintenance\t42\t1\tmsg\twith tab\n")
    assert line.source == "198.18.0.2" and line.app == "vm-maintenance" and line.procid == "42"
    assert line.protocol == "1" and line.message == "msg\twith tab"
    assert parse_line("garbage\n") is None


# -- HAProxy --------------------------------------------------------------------------------

STAT = """# pxname,svname,qcur,qmax,scur,smax,slim,stot,status,weight,check_status,
vip,FRONTEND,,,3,5,4096,100,OPEN,,,
web,web1,0,0,2,4,,40,DRAIN,1,L7OK,
web,web2,0,0,0,3,,30,UP,1,L7OK,
web,web3,0,0,0,1,,30,DOWN,1,L4CON,
web,BACKEND,0,0,2,5,410,100,UP,2,,

"""

SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight
3 web 1 web1 198.18.0.2 2 8 1
3 web 2 web2 198.18.1.2 2 0 1

"""


def test_parse_stat_keeps_servers_only():
    servers = {s.name: s for s in runtime_api.parse_stat(STAT)}
    assert set(servers) == {"web1", "web2", "web3"}
    assert servers["web1"] == ServerStatus("web", "web1", "DRAIN", 2, 40, 1, "L7OK")
    assert servers["web1"].out_of_rotation and servers["web3"].out_of_rotation
    assert not servers["web2"].out_of_rotation
    assert not ServerStatus("web", "x", "UP 1/2", 0, 0, 1, "").out_of_rotation
    with pytest.raises(RuntimeApiError):
        runtime_api.parse_stat("Unknown command.\n")


def test_servers_state_and_admin_flags():
    rows = runtime_api.parse_servers_state(SERVERS_STATE)
    assert [r["srv_name"] for r in rows] == ["web1", "web2"]
    assert runtime_api.admin_flags(rows[0]["srv_admin_state"]) == {"FDRAIN"}
    assert runtime_api.admin_flags(0x09) == {"FMAINT", "FDRAIN"}


def test_runtime_target_and_state_checks():
    assert runtime_api.parse_target("198.19.255.10:9999") == ("198.19.255.10", 9999)
    assert runtime_api.parse_target("/run/x/admin.sock") == "/run/x/admin.sock"
    with pytest.raises(ValueError):
        runtime_api.set_server_state("/nonexistent.sock", "web", "web1", "sleep")
    with pytest.raises(RuntimeApiError, match="nonexistent"):
        runtime_api.command("/nonexistent/admin.sock", "show stat")


def test_haproxy_config_is_valid_and_balances_by_source(tmp_path):
    text = haproxy_config([("web1", "198.18.0.2"), ("web2", "198.18.1.2")],
                          admin_socket=str(tmp_path / "admin.sock"))
    assert "bind 198.19.255.100:80" in text
    assert "balance source" in text and "hash-type consistent" in text
    assert "server web1 198.18.0.2:8080 check inter 500ms fall 2 rise 1" in text
    assert "stats socket ipv4@198.19.255.10:9999 level admin" in text
    assert "option http-server-close" in text and "option redispatch" in text
    if os.path.exists("/usr/sbin/haproxy"):  # -c parses and checks; it binds nothing
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(text)
        check = subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", str(conf)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_proc_net_address_notation():
    assert _hex_address("198.19.255.10") == "0AFF13C6"


# -- the event logger's core ------------------------------------------------------------------

def doc(incarnation: int, *events: dict) -> dict:
    return {"DocumentIncarnation": incarnation, "Events": list(events)}


def ev(event_id: str, *resources: str, status: str = "Scheduled", kind: str = "Reboot") -> dict:
    return {"EventId": event_id, "EventType": kind, "ResourceType": "VirtualMachine", "Resources": list(resources),
            "EventStatus": status, "NotBefore": "Mon, 19 Sep 2016 18:29:47 GMT",
            "Description": "Host server is undergoing maintenance."}


def test_event_logger_logs_each_event_once_and_only_on_new_incarnations():
    core = EventLogger("web1")
    assert core.observe(doc(1)) == []
    first = core.observe(doc(2, ev("A", "web1"), ev("B", "web2")))
    assert [r.event_id for r in first] == ["A"]  # B is broadcast to the set, not web1's
    assert "Reboot for VM web1: EventId A status Scheduled" in first[0].message
    core.sent("A")
    assert core.observe(doc(2, ev("A", "web1"))) == []  # same incarnation: not looked at
    assert core.observe(doc(3, ev("A", "web1", status="Started"))) == []  # same id, new status
    assert [r.event_id for r in core.observe(doc(4, ev("A", "web1"), ev("C", "web1")))] == ["C"]


def test_event_logger_retries_a_lost_send_and_can_log_everything():
    core = EventLogger("web1")
    assert [r.event_id for r in core.observe(doc(2, ev("A", "web1")))] == ["A"]
    core.send_failed()
    assert [r.event_id for r in core.observe(doc(2, ev("A", "web1")))] == ["A"]
    every = EventLogger("web1", only_mine=False)
    records = every.observe(doc(2, ev("B", "web2", "web3")))
    assert "VMs web2,web3 (seen by web1)" in records[0].message
    assert resources_of({"Resources": ["_web1", "web2"]}) == ["web1", "web2"]  # 2017-03-01 names


def test_event_logger_state_file(tmp_path):
    path = str(tmp_path / "d" / "ids")
    assert read_state(path) == set()
    record_state(path, "A")
    record_state(path, "B")
    assert read_state(path) == {"A", "B"}


# -- the drain agent's core -------------------------------------------------------------------

def stats(**servers: tuple[str, int]) -> dict[str, ServerStatus]:
    return {n: ServerStatus("web", n, st, k, 0, 1, "L7OK") for n, (st, k) in servers.items()}


def actions(out: list, kind: type) -> list:
    return [a for a in out if isinstance(a, kind)]


def ready_agent(t: float = 0.0, **kw) -> DrainAgent:
    agent = DrainAgent("web1", **kw)
    assert actions(agent.start(t), SetState) == [SetState("ready")]
    agent.state_set("ready", True, t)
    assert agent.phase is Phase.WATCHING
    return agent


def test_drain_agent_drains_waits_for_sessions_then_approves():
    agent = ready_agent()
    assert agent.document(doc(1), 1.0) == []
    out = agent.document(doc(2, ev("E", "web1")), 2.0)
    assert actions(out, SetState) == [SetState("drain")] and agent.phase is Phase.DRAINING
    assert agent.tick(2.0) == []  # the drain is in flight
    agent.state_set("drain", True, 2.1)
    assert agent.tick(2.1) == [QueryStats()]
    waiting = agent.stats(stats(web1=("DRAIN", 2), web2=("UP", 5)), 2.1)
    assert actions(waiting, Approve) == [] and "waiting for web1 (DRAIN, 2 sessions)" in waiting[0].text
    assert agent.tick(2.2) == []  # next show stat is due at 2.3
    assert agent.tick(2.35) == [QueryStats()]
    assert agent.stats(stats(web1=("DRAIN", 1)), 2.3) == []  # logged once only
    done = agent.stats(stats(web1=("DRAIN", 0), web2=("UP", 5)), 2.5)
    assert actions(done, Approve) == [Approve("E")] and agent.phase is Phase.APPROVING
    agent.approved(True, 2.6)
    assert agent.phase is Phase.IMPACT
    assert agent.document(doc(3, ev("E", "web1", status="Started")), 3.0) == []
    out = agent.document(doc(4), 10.0)  # gone without a reboot ending us: ready again
    assert actions(out, SetState) == [SetState("ready")] and agent.phase is Phase.STARTING
    agent.state_set("ready", True, 10.1)
    assert agent.phase is Phase.WATCHING


def test_drain_agent_waits_for_every_resource_of_the_event():
    agent = ready_agent()
    agent.document(doc(2, ev("E", "web1", "web3")), 0.0)
    agent.state_set("drain", True, 0.0)
    assert actions(agent.stats(stats(web1=("DRAIN", 0), web3=("UP", 1)), 0.1), Approve) == []
    assert actions(agent.stats(stats(web1=("DRAIN", 0), web3=("DRAIN", 0)), 0.3), Approve) == [Approve("E")]


def test_drain_agent_approves_after_the_drain_timeout_and_retries_failures():
    agent = ready_agent(drain_timeout=5.0)
    agent.document(doc(2, ev("E", "web1")), 0.0)
    agent.state_set("drain", False, 0.0, "connection refused")
    assert agent.tick(0.5) == []                      # retry after RETRY_INTERVAL
    assert agent.tick(1.0) == [SetState("drain")]
    agent.state_set("drain", True, 1.0)
    agent.stats(stats(web1=("DRAIN", 3)), 1.0)
    out = agent.tick(5.0)
    assert actions(out, Approve) == [Approve("E")] and "approving anyway" in actions(out, Log)[0].text
    agent.approved(False, 5.0, "HTTP 500")
    assert agent.tick(5.5) == [] and agent.tick(6.0) == [Approve("E")]
    agent.approved(True, 6.0)
    assert agent.phase is Phase.IMPACT


def test_drain_agent_ignores_the_event_that_rebooted_it_and_drains_on_unnoticed_ones():
    agent = ready_agent()
    assert agent.document(doc(5, ev("OLD", "web1", status="Started")), 0.0) == []
    assert agent.phase is Phase.WATCHING
    out = agent.document(doc(6, ev("OLD", "web1", status="Started"), ev("NEW", "web1", status="Started")), 1.0)
    assert actions(out, SetState) == [SetState("drain")] and agent.phase is Phase.IMPACT
    assert actions(out, Approve) == []


def test_drain_agent_event_canceled_while_draining_and_other_vms_events():
    agent = ready_agent()
    assert agent.document(doc(2, ev("X", "web2")), 0.0) == []  # broadcast, not ours
    assert agent.document(doc(3, ev("F", "web1", kind="Freeze")), 0.0) != []
    agent.state_set("drain", True, 0.1)
    out = agent.document(doc(4), 0.5)  # canceled: Scheduled -> removed
    assert actions(out, SetState) == [SetState("ready")] and agent.phase is Phase.STARTING
    picky = ready_agent(event_types=("Reboot",))
    assert picky.document(doc(2, ev("F", "web1", kind="Freeze")), 0.0) == []


def test_drain_agent_transition_table():
    reachable = {Phase.STARTING} | set(TRANSITIONS.values())
    assert reachable == set(Phase)
    agent = DrainAgent("web1")
    with pytest.raises(AgentError, match="'drained' is not allowed in phase 'starting'"):
        agent._go("drained")


# -- metadata client helpers and the load generator's tally ------------------------------------

def test_retrying_and_patiently_on_an_invented_clock():
    calls, slept = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ImdsError("429", status=429, retry_after=2)
        return "ok"
    assert retrying(flaky, sleep=slept.append) == "ok" and slept == [2, 2]

    now = [0.0]

    def down():
        raise ImdsError("unreachable")

    def sleep(s: float) -> None:
        now[0] += s
    with pytest.raises(ImdsError):
        patiently(down, timeout=3.0, interval=0.5, clock=lambda: now[0], sleep=sleep)
    assert 2.5 <= now[0] <= 3.0


def test_tally_summary():
    t = Tally()
    t.success(0, "198.19.255.200", "web1", 0.001)
    t.success(1, "198.19.255.200", "web1", 0.003)
    t.failure(1, "timeout", at=1.25, source="198.19.255.201", phase="head", elapsed=2.0004)
    s = t.summary(3, url="u")
    assert (s["sent"], s["ok"], s["failed"]) == (3, 2, 1) and s["errors"] == {"timeout": 1}
    assert s["failures"] == [{"at": 1.25, "kind": "timeout", "source": "198.19.255.201", "phase": "head",
                              "elapsed": 2.0}]
    assert s["per_second"] == [{"second": 0, "ok": 1, "failed": 0}, {"second": 1, "ok": 1, "failed": 1},
                               {"second": 2, "ok": 0, "failed": 0}]
    assert s["by_source"] == {"198.19.255.200": {"web1": 2}} and s["latency_ms"]["max"] == 3.0


def test_tally_keeps_the_first_failures_in_full_and_counts_all():
    t = Tally()
    for i in range(MAX_FAILURE_RECORDS + 50):
        t.failure(0, "refused", at=i, phase="connect")
    s = t.summary(1)
    assert s["failed"] == MAX_FAILURE_RECORDS + 50 and len(s["failures"]) == MAX_FAILURE_RECORDS
    assert s["failures"][-1]["at"] == MAX_FAILURE_RECORDS - 1


# -- the shell script, offline: the metadata service is a folder, logger a recorder ----------

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "is-vm-in-maint.sh")


@pytest.fixture
def offline(tmp_path):
    """``run(maintenance_json)`` runs the script against files and returns (status, logger calls)."""
    md = tmp_path / "md" / "metadata" / "v1"
    md.mkdir(parents=True)
    (md / "InstanceInfo").write_text('{"ID":"web1","UD":"0","FD":"0"}')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "logger"
    fake.write_text(f'#!/bin/sh\nprintf "%s|" "$@" >> {calls}\necho >> {calls}\n')
    fake.chmod(0o755)

    def run(maintenance: str | None, **env: str):
        if maintenance is None:
            (md / "maintenance").unlink(missing_ok=True)
        else:
            (md / "maintenance").write_text(maintenance)
        full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "METADATA_URL": f"file://{tmp_path}/md",
                "MAINT_STATE_FILE": str(tmp_path / "state" / "ids"), **env}
        done = subprocess.run(["sh", SCRIPT], env=full, capture_output=True, text=True, timeout=20)
        logged = calls.read_text().splitlines() if calls.exists() else []
        return done, logged
    return run


EVENT = '{"EventID": "1D1A5B7B-0000-4E0C-9B79-6D9D2C7A2C8E", "EventCreationTime": "9\\/15\\/2015 6:42:51 AM"}'


def test_script_logs_nothing_without_an_event(offline):
    done, logged = offline("{}", SYSLOG_SERVER="198.19.255.30")
    assert done.returncode == 0 and logged == [], done.stderr


def test_script_logs_one_line_per_event_id(offline):
    for _ in range(3):
        done, logged = offline(EVENT, SYSLOG_SERVER="198.19.255.30", SYSLOG_PORT="1514")
        assert done.returncode == 0, done.stderr
    assert len(logged) == 1
    args = logged[0].split("|")
    assert args[:4] == ["-n", "198.19.255.30", "-P", "1514"] and "-d" in args
    assert args[args.index("-t") + 1] == "vm-maintenance"
    assert args[-2] == ("Incoming VM maintenance (reboot): VM web1 EventID 1D1A5B7B-0000-4E0C-9B79-6D9D2C7A2C8E "
                        "created 9/15/2015 6:42:51 AM")
    done, logged = offline(EVENT.replace("1D1A", "2E2B"))  # a new event, to the local syslog
    assert len(logged) == 2 and not logged[1].startswith("-n|")


def test_script_fails_when_the_metadata_service_does_not_answer(offline):
    done, logged = offline(None)
    assert done.returncode == 1 and "no answer" in done.stderr and logged == []
