"""Bad input, at every subcommand and at the daemon's control socket (issue 9).

Every subcommand of the CLI has rows of bad input in :data:`ROWS` (a subcommand without a
row fails :func:`test_the_table_covers_every_subcommand`); each row runs ``netsim`` as a
user does and must end with exit 2, exactly one line on stderr and no traceback. Rows
that need a running datacenter share one, built once for the module. Then the control
protocol is fed what a client could send (NaN, Infinity, 1e308, strings, wrong types):
each refusal leaves the planner, the repository and ``netsim events --json`` unchanged,
and the VMs' ``/metadata/scheduledevents`` keeps answering 200.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import replace

import pytest

from netsim.tools import cli
from netsim.api import control
from netsim.api import datacenter as dcapi
from netsim.harness.pytest_plugin import unique_name
from netsim.model import load

SCHEDULED = "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01"
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "netsim", "experiments", "examples",
                        "playbook.toml")  # a good experiment file, for the rows about the other arguments

# (subcommand, arguments, what stderr must say). "{dc}" is the module's datacenter,
# "{garbage}", "{fd0}", "{ud}" topology files of binary bytes, fault_domains = 0 and a
# 20-digit update domain. A row without "{dc}" needs no datacenter.
ROWS = [
    ("up", ["--name", ""], "datacenter name ''"),
    ("up", ["--name", "../../etc"], "lowercase letter"),
    ("up", ["--name", "a-b"], "lowercase letter"),
    ("up", ["{garbage}"], "not a TOML text file"),
    ("up", ["{fd0}"], "fault_domains"),
    ("up", ["{ud}"], "update_domain must be an integer from 0 to 19"),
    ("up", ["/nonexistent/dir/dc.toml"], "cannot read the topology file"),
    ("up", ["{ctr}"], "field 'vm[0].containers': container name 'Bad_Name' must start with a lowercase letter"),
    ("up", ["{mi}"], "field 'vm[0].identity': unknown identity 'nobody'"),
    ("up", ["{tags}"], "field 'vm[0].tags': must be a table"),
    ("down", ["--name", "../x"], "lowercase letter"),
    ("down", ["--name", "nosuchdc"], "'nosuchdc'"),
    ("cleanup", ["--name", ""], "datacenter name ''"),
    ("cleanup", ["--name", "../../etc"], "lowercase letter"),
    ("status", ["--name", "Dc1"], "lowercase letter"),
    ("exec", ["--name", "{dc}", "web1", "--", "/nonexistent/bin"], "cannot run '/nonexistent/bin'"),
    ("exec", ["--name", "{dc}", "nosuchvm", "--", "true"], "no host 'nosuchvm'"),
    ("exec", ["--name", "{dc}", "web1"], "give a command after '--'"),
    ("exec", ["--name", "{dc}", "web1/unknown", "--", "true"], "VM 'web1' has no container 'unknown'"),
    ("exec", ["--name", "{dc}", "nosuchvm/c1", "--", "true"], "no VM 'nosuchvm'"),
    ("reach", ["--name", "{dc}", "--timeout", "nan"], "--timeout: must be a number"),
    ("reach", ["--timeout", "-1"], "cannot be negative"),
    ("demo", ["--rate", "0"], "--rate: must be a number from 0 (excluded)"),
    ("demo", ["--notice", "inf"], "--notice: must be a number from 0 to 3600"),
    ("demo", ["--name", "../x"], "lowercase letter"),
    ("capture", ["--name", "{dc}", "n1", "-o", "/nonexistent/dir/x.pcap", "--duration", "1"],
     "cannot write the capture to /nonexistent/dir/x.pcap"),
    ("capture", ["--name", "{dc}", "n9", "--duration", "1"], "no node 'n9'"),
    ("capture", ["n1", "--duration", "inf"], "--duration: must be a number"),
    ("link", ["--name", "{dc}", "nosuchvm", "down"], "no VM 'nosuchvm'"),
    ("link", ["--name", "{dc}", "web1", "sideways"], "invalid choice"),
    ("event add", ["--name", "{dc}", "web1", "--in", "inf"], "--in: must be a number from 0 to 604800 seconds"),
    ("event add", ["--name", "{dc}", "web1", "--in", "1e308"], "--in: must be a number"),
    ("event add", ["--name", "{dc}", "web1", "--in", "nan"], "--in: must be a number"),
    ("event add", ["--name", "{dc}", "web1", "--in", "-5"], "cannot be negative"),
    ("event add", ["--name", "{dc}", "web1", "--duration", "5.5"], "--duration: must be an integer"),
    ("event add", ["--name", "{dc}", "web1", "--duration", "99999999999999999999"], "or -1"),
    ("event add", ["--name", "{dc}", "web1", "--type", "Nap"], "invalid choice"),
    ("event add", ["--name", "{dc}", "nosuchvm", "--in", "60"], "no vm 'nosuchvm'"),  # the daemon's answer
    ("event approve", ["--name", "{dc}", "nosuchid"], "no event nosuchid"),
    ("event cancel", ["--name", "{dc}", "nosuchid"], "no live event 'nosuchid'"),
    ("events", ["--name", ""], "datacenter name ''"),
    ("maintenance start", ["--name", "{dc}", "web", "--notice", "nan"], "--notice: must be a number"),
    ("maintenance start", ["--name", "{dc}", "web", "--downtime", "inf"], "--downtime: must be a number"),
    ("maintenance start", ["--name", "{dc}", "nosuchset"], "no availability set 'nosuchset'"),
    ("maintenance status", ["--name", "../x"], "lowercase letter"),
    ("event add", ["--name", "{dc}", "web1", "--action", "fly"], "invalid choice"),
    ("event add", ["--name", "{dc}", "web1", "--type", "Reboot", "--action", "stop"], "'Reboot:stop' is not one of"),
    ("vm start", ["--name", "{dc}", "nosuchvm"], "no vm 'nosuchvm'"),
    ("node", ["--name", "{dc}", "fail", "nosuchnode"], "no node 'nosuchnode'"),
    ("node", ["--name", "{dc}", "explode", "n1"], "invalid choice"),
    ("watch", ["--interval", "-1"], "--interval: must be a number from 0.05"),
    ("watch", ["--name", "{dc}", "--interval", "nan"], "--interval: must be a number"),
    ("watch", ["--count", "-1"], "--count: must be an integer"),
    ("daemon", ["--name", "{dc}", "stop"], "invalid choice"),
    ("daemon", ["start", "--name", ""], "datacenter name ''"),
    ("fault add", ["web1"], "a fault needs an HTTP option"),
    ("fault add", ["web1", "--http", "200"], "--http: must be an integer from 400 to 599"),
    ("fault add", ["web1", "--loss", "nan"], "--loss: must be a number from 0 (excluded) to 100 percent"),
    ("fault add", ["web1", "--delay", "inf"], "--delay: must be a number from 0 to 600000 ms"),
    ("fault add", ["web1", "--probability", "2", "--http", "500"], "--probability: must be a number"),
    ("fault add", ["web1", "--http", "503", "--loss", "5"], "one fault is of one kind"),
    ("fault add", ["web1", "--hang", "--reset"], "does one of --http, --hang, --reset, --truncate, --rate"),
    ("fault add", ["all", "--partition"], "takes a VM (cut from its metadata service) or node:NAME"),
    ("fault add", ["web1", "--reorder", "5", "--loss", "1"], "--reorder needs --latency"),
    ("fault add", ["web1", "--path", "x", "--http", "500"], "--path is a path prefix starting with '/'"),
    ("fault add", ["--name", "{dc}", "nosuchvm", "--http", "500"], "no vm 'nosuchvm'"),  # the daemon's answer
    ("fault add", ["--name", "{dc}", "node:n9", "--partition"], "no node 'n9'"),
    ("fault list", ["--name", "../x"], "lowercase letter"),
    ("fault clear", ["--name", "{dc}"], "one of the arguments id --all is required"),
    ("fault clear", ["--name", "{dc}", "fault-999"], "no fault 'fault-999'"),
    ("experiment run", ["{garbage}"], "not a TOML text file"),
    ("experiment run", ["{fd0}"], "unknown table [node]"),
    ("experiment run", ["/nonexistent/dir/x.toml"], "cannot read the experiment file"),
    ("experiment run", [PLAYBOOK, "--json", "/nonexistent/dir/r.json"], "cannot write the JSON report"),
    ("experiment run", [PLAYBOOK, "--svg", "/"], "cannot write the SVG timeline"),
    ("experiment run", [PLAYBOOK, "--name", "../x"], "lowercase letter"),
    ("experiment check", ["{garbage}"], "not a TOML text file"),
    ("experiment check", ["{ud}"], "unknown table"),
]


def netsim(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the CLI as a user does (the environment carries the private NETSIM_STATE_DIR)."""
    proc = subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def topology_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Bad topology files: binary bytes, ``fault_domains = 0``, a 20-digit update domain."""
    folder = tmp_path_factory.mktemp("bad-topologies")
    files = {"garbage": bytes(range(256)) * 16,
             "fd0": b'[[node]]\nname = "n1"\n[[availability_set]]\nname = "s"\nfault_domains = 0\n'
                    b'[[vm]]\nname = "v1"\navailability_set = "s"\n',
             "ud": b'[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\nupdate_domain = 99999999999999999999\n',
             "ctr": b'[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\ncontainers = ["Bad_Name"]\n',
             "mi": b'[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\nidentity = ["system", "nobody"]\n',
             "tags": b'[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\ntags = "env=prod"\n'}
    paths = {}
    for key, data in files.items():
        path = folder / f"{key}.toml"
        path.write_bytes(data)
        paths[key] = str(path)
    return paths


@pytest.fixture(scope="module")
def shared_dc(netsim_state_dir: str):
    """One default datacenter (fast timers) for every row and test of this module."""
    running = dcapi.up(replace(load(), name=unique_name(), timers="fast"))
    try:
        yield running
    finally:
        running.down()


def test_the_table_covers_every_subcommand():
    covered = {command for command, _, _ in ROWS}
    assert covered == set(cli.command_names()), "add rows for every new subcommand (and none for removed ones)"
    assert "event add" in covered and "maintenance status" in covered and len(covered) >= 17


def test_argparse_errors_are_one_line_too():
    for args in ([], ["event"], ["maintenance"], ["nosuchcommand"], ["status", "--bogus"]):
        proc = netsim(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("netsim: error: "), proc.stderr


@pytest.mark.root
@pytest.mark.parametrize("command, args, words", ROWS, ids=[f"{c}:{' '.join(a)}"[:60] for c, a, _ in ROWS])
def test_bad_input_is_one_line_and_exit_2(request, topology_files, netsim_state_dir, command, args, words):
    values = dict(topology_files)
    if any("{dc}" in a for a in args):
        values["dc"] = request.getfixturevalue("shared_dc").name
    argv = command.split() + [a.format(**values) for a in args]
    proc = netsim(*argv)
    assert proc.returncode == 2, (argv, proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("netsim: error: "), proc.stderr
    assert words in lines[0], lines[0]


# -- the control protocol -----------------------------------------------------------------

def _raw(dc: dcapi.RunningDatacenter, line: bytes) -> dict:
    """Send one raw line to the control socket and return the daemon's answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(dc.state.file(control.SOCKET_NAME))
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def _observe(dc: dcapi.RunningDatacenter) -> tuple:
    """What a refused input must not change: the planner's events and walks (as the daemon
    and as SQLite hold them), the repository's events, and ``netsim events --json``."""
    snap = dc.request("snapshot")
    listed = json.loads(netsim("events", "--name", dc.name, "--json", check=True).stdout)
    with closing(sqlite3.connect(f"file:{dc.state.file('events.db')}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT * FROM events ORDER BY node, rowid").fetchall()  # every column
        saved = json.loads(db.execute("SELECT state FROM planner WHERE id = 1").fetchone()[0])
    return (snap["events"], snap["walks"], listed, rows, saved["records"], saved["walks"])


_vm_turn = iter(range(10**6))


def _scheduled_events_answer(dc: dcapi.RunningDatacenter) -> dict:
    """GET scheduledevents from a VM (round robin over the VMs: the service allows 5 a second)."""
    vm = dc.topology.vms[next(_vm_turn) % len(dc.topology.vms)].name
    for _ in range(3):
        out = dc.run(vm, ["curl", "-s", "-m", "5", "-w", "\n%{http_code}", "-H", "Metadata: true", SCHEDULED],
                     timeout=10).stdout
        body, _, code = out.rpartition("\n")
        if code != "429":
            break
        time.sleep(1.0)
    assert code == "200", (vm, code, body)
    return json.loads(body)


REFUSED = [
    # (command, arguments, words of the refusal)
    ("event_add", {"vm": "web1", "in": float("nan")}, "notice (--in) must be a number"),
    ("event_add", {"vm": "web1", "in": float("inf")}, "notice (--in) must be a number"),
    ("event_add", {"vm": "web1", "in": 1e308}, "notice (--in) must be a number"),
    ("event_add", {"vm": "web1", "in": "inf"}, "notice (--in) must be a number"),
    ("event_add", {"vm": "web1", "in": True}, "notice (--in) must be a number"),
    ("event_add", {"vm": "web1", "in": 60, "duration": 1e300}, "duration (--duration) must be an integer"),
    ("event_add", {"vm": "web1", "in": 60, "duration": "nan"}, "duration (--duration) must be an integer"),
    ("event_add", {"vm": "web1", "in": 60, "duration": -3}, "duration (--duration) must be an integer"),
    ("event_add", {"vm": ["web1"], "in": 60}, "no vm ['web1']"),
    ("event_add", {"vm": "web1", "in": 60, "type": "Nap"}, "not one of"),
    ("walk_start", {"avset": "web", "notice": float("nan")}, "notice (--notice) must be a number"),
    ("walk_start", {"avset": "web", "notice": 60, "downtime": float("inf")}, "downtime (--downtime) must be"),
    ("walk_start", {"avset": "web", "notice": "900"}, "notice (--notice) must be a number"),
    ("walk_start", {"avset": None}, "no availability set None"),
    ("approve", {"id": 7}, "an event id is a string"),
    ("cancel", {"id": {"x": 1}}, "an event id is a string"),
    ("link", {"vm": "web1", "up": "false"}, "'up' must be true or false"),
    ("link", {"vm": "nosuchvm", "up": True}, "no vm 'nosuchvm'"),
    ("node_fail", {"node": 1}, "no node 1"),
    ("node_fail", {}, "node_fail needs the argument 'node'"),
    ("walk_start", {"avset": "web", "notice": 60, "speed": 2}, "walk_start takes no argument 'speed'"),
    ("nap", {}, "unknown command 'nap'"),
]


@pytest.mark.root
def test_refused_control_inputs_change_nothing_and_events_stay_served(shared_dc):
    dc = shared_dc
    # Something to keep: a one-off event and a walk in its notice (nothing starts within the test).
    kept = dc.request("event_add", vm="web2", type="Freeze", duration=5, **{"in": 3600})["event"]["event_id"]
    dc.request("walk_start", avset="web", notice=3600, downtime=1)
    before = _observe(dc)
    assert [e["event_id"] for e in before[2]][0] == kept and before[1][0]["state"] == "notice"
    assert len(_scheduled_events_answer(dc)["Events"]) == 2
    for command, args, words in REFUSED:
        with pytest.raises(control.ControlError) as info:
            dc.request(command, **args)
        assert words in str(info.value) and "\n" not in str(info.value), (command, args, str(info.value))
        assert _observe(dc) == before, (command, args)
        served = _scheduled_events_answer(dc)
        assert sorted(e["EventId"] for e in served["Events"]) == sorted(e["event_id"] for e in before[2])
    for line in (b"[1, 2]\n", b"not json\n", b'"event_add"\n', b"[" * 60000 + b"\n"):
        answer = _raw(dc, line)
        assert answer["ok"] is False and answer["error"], (line[:20], answer)
        assert _observe(dc) == before
    assert dc.request("ping")["pid"] > 0  # the daemon is still there
