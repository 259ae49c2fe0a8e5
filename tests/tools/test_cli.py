"""The netsim command as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.root


def netsim(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def load_default_text():
    from importlib import resources
    return resources.files("netsim.model").joinpath("default.toml").read_text()


def test_up_status_exec_reach_down(tmp_path, netsim_state_dir):
    name = f"cli{os.getpid() % 10000}"
    topo = tmp_path / "fast.toml"
    topo.write_text(load_default_text().replace('timers = "rfc"', 'timers = "fast"'))
    out = netsim("up", str(topo), "--name", name).stdout
    assert f"datacenter {name} is up: 2 nodes, 3 VMs" in out
    try:
        status = json.loads(netsim("status", "--name", name, "--json").stdout)
        assert [v["name"] for v in status["vms"]] == ["web1", "web2", "web3"]
        assert all(v["present"] for v in status["vms"]) and status["namespaces"] == 9
        assert all(v["link_local"].startswith("169.254.") for v in status["vms"])
        assert status["vms"][0]["link_local"] != status["vms"][2]["link_local"]
        text = netsim("status", "--name", name).stdout
        assert "web1" in text and "198.18.0.2" in text
        addr = netsim("exec", "--name", name, "web1", "--", "ip", "-o", "-4", "addr", "show", "eth0").stdout
        assert "198.18.0.2/24" in addr
        rows = json.loads(netsim("reach", "--name", name, "--json").stdout)
        cell = {(r["from"], r["to"], r["kind"]): r["reachable"] for r in rows}
        assert cell[("web1", "web3", "link-local")] and not cell[("web2", "web1", "link-local")]
        assert cell[("web2", "web1", "routable")] and cell[("client", "web3", "routable")]
        assert all(r["reachable"] for r in rows if r["kind"] == "metadata")
        matrix = netsim("reach", "--name", name).stdout
        assert matrix.splitlines()[1].split() == ["web1", ".", "R-", "RL", "R", "R", "R", "M"]
        added = netsim("event", "add", "--name", name, "web1", "--type", "Freeze", "--in", "60",
                       "--duration", "5").stdout
        event_id = added.split()[0]
        listed = json.loads(netsim("events", "--name", name, "--json").stdout)
        assert [(e["event_id"], e["event_type"], e["status"]) for e in listed] == [(event_id, "Freeze", "Scheduled")]
        assert "Started" in netsim("event", "approve", "--name", name, event_id).stdout
        seen = netsim("exec", "--name", name, "web3", "--", "curl", "-s", "-H", "Metadata: true",
                      "http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01").stdout
        assert json.loads(seen)["Events"][0]["EventStatus"] == "Started"
        netsim("link", "--name", name, "web3", "down")
        assert json.loads(netsim("status", "--name", name, "--json").stdout)["vms"][2]["link_local"] is None
        netsim("link", "--name", name, "web3", "up")
        pcap = tmp_path / "n1.pcap"
        assert "frames written" in netsim("capture", "--name", name, "n1", "-o", str(pcap), "--duration", "1").stdout
        assert pcap.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")
    finally:
        down = netsim("down", "--name", name)
    assert "9 namespaces removed" in down.stdout


def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path, netsim_state_dir):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\nnode = "n7"\n')
    for args in (["up", str(bad)], ["down", "--name", "nosuchdc"], ["exec", "--name", "nosuchdc", "x", "--", "true"],
                 ["up", str(tmp_path / "missing.toml")]):
        proc = netsim(*args, check=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert proc.stderr.startswith("netsim: error: ")
    assert f"{bad}:5, field 'vm[0].node'" in netsim("up", str(bad), check=False).stderr
