"""The L2 attack kit of the security suite, shared by tests/security and bench/abuse_l2.py.

An attack runs as :mod:`l2agent` inside the attacker VM (scapy, raw frames on its eth0);
its success is judged from outside, by reading what the kernel believes (neighbour
tables, the bridge's forwarding table, a VM's claimed address) and what the metadata
server answers. Each ``*_attempt`` function makes one bounded attempt and returns True
if the attack succeeded.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from netsim.model import names
from netsim.kernel.rtnl import Rtnl
from netsim.model import addressing

AGENT = "netsim.harness.l2agent"  # run as python -m inside the attacker VM
METADATA = addressing.METADATA_ADDRESS
BROADCAST = "ff:ff:ff:ff:ff:ff"

TOPOLOGY = """
[datacenter]
timers = "fast"

[[node]]
name = "n1"
[[node]]
name = "n2"

[[availability_set]]
name = "web"
[[availability_set]]
name = "db"

[[vm]]
name = "web1"
availability_set = "web"
node = "n1"
[[vm]]
name = "db1"
availability_set = "db"
node = "n1"
[[vm]]
name = "web2"
availability_set = "web"
node = "n2"
"""
"""The attacker web1 and its victim db1 share node n1; web2 is an honest VM on n2."""

TAGS = {
    "plain": [],
    "vlan0": [[0x8100, 0, 0]],
    "vlan0-priority": [[0x8100, 5, 0]],
    "qinq": [[0x88A8, 0, 0], [0x8100, 0, 0]],
}
"""ARP spoofing variants: the 802.1Q/802.1ad headers put before the ARP, outermost first."""


class AgentError(RuntimeError):
    """The in-VM agent failed or did not answer in time."""


class Agent:
    """:mod:`l2agent` running inside ``vm`` of ``dc``; :meth:`call` sends it one command."""

    def __init__(self, dc, vm: str) -> None:
        self.vm = vm
        self.proc: subprocess.Popen = dc.popen(vm, [sys.executable, "-m", AGENT], stdin=subprocess.PIPE,
                                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def write(self, op: str, **args) -> None:
        """Send a command without waiting for its answer."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def read(self, timeout: float = 15.0) -> dict:
        """The agent's next answer; AgentError on an error, an exit or a timeout."""
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise AgentError(f"the agent in {self.vm} did not answer within {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AgentError(f"the agent in {self.vm} exited: {err.strip()[-2000:]}")
        answer = json.loads(line)
        if "error" in answer:
            raise AgentError(f"the agent in {self.vm}: {answer['error']}")
        return answer

    def call(self, op: str, wait: float = 15.0, **args) -> dict:
        """Run one command and return its answer (within ``wait`` seconds)."""
        self.write(op, **args)
        return self.read(wait)

    def close(self) -> None:
        """End the agent (by its PID, which this kit started)."""
        try:
            if self.proc.poll() is None:
                self.write("quit")
                self.proc.wait(3)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> "Agent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- what the kernel believes --------------------------------------------------------------

class World:
    """Names, addresses and kernel views of one datacenter built from :data:`TOPOLOGY`."""

    def __init__(self, dc) -> None:
        self.dc = dc
        plan = dc.topology.address_plan
        self.mac = {v.name: plan.vm(v.name).mac for v in dc.topology.vms}
        self.port = {v.name: plan.vm(v.name).port_index for v in dc.topology.vms}
        self.node_mac = addressing.node_bridge_mac(dc.name)
        self.link_local = dc.link_local_addresses()

    def neighbour(self, host: str, address: str) -> str | None:
        """The MAC ``host`` (a VM or ``node:NAME``) maps ``address`` to, or None."""
        if not address:
            return None
        with Rtnl.in_namespace(self.dc.namespace(host)) as sock:
            return sock.neighbour_mac(names.NIC_INDEX, address)

    def fdb_port(self, node: str, mac: str) -> int | None:
        """The port of ``node``'s bridge that forwards to ``mac``."""
        with Rtnl.in_namespace(self.dc.namespace(f"node:{node}")) as sock:
            return sock.fdb_port(names.NIC_INDEX, mac)

    def identity(self, vm: str, timeout: float = 3.0) -> str | None:
        """The ``ID`` the metadata server answers ``vm`` (None on any failure)."""
        out = self.dc.run(vm, ["curl", "-s", "-m", str(timeout), f"http://{METADATA}/metadata/v1/InstanceInfo"],
                          capture_output=True, text=True, timeout=timeout + 5)
        try:
            return json.loads(out.stdout)["ID"]
        except (ValueError, KeyError, TypeError):
            return None

    def current_link_local(self, vm: str) -> str | None:
        """The VM's link-local address now (read from its eth0)."""
        return self.dc.link_local_addresses()[vm]


# -- the attacks -----------------------------------------------------------------------------

def arp_spoof_frames(w: World, attacker: str, victim: str, variant: str) -> list[dict]:
    """Frames that try to make the node and the victim map the victim's link-local address
    and 169.254.169.254 to the attacker's MAC: gratuitous requests and replies, a request
    to the node and a reply and a request to the victim, inside the variant's tags."""
    tags, me, v_ll, v_mac = TAGS[variant], w.mac[attacker], w.link_local[victim], w.mac[victim]

    def arp(dst, op, psrc, pdst, hwdst="00:00:00:00:00:00"):
        return {"kind": "arp", "src": me, "dst": dst, "tags": tags, "op": op, "hwsrc": me, "psrc": psrc,
                "pdst": pdst, "hwdst": hwdst}

    return [
        arp(BROADCAST, 1, v_ll, v_ll), arp(BROADCAST, 2, v_ll, v_ll, BROADCAST),          # "I am the victim"
        arp(w.node_mac, 1, v_ll, METADATA), arp(w.node_mac, 2, v_ll, METADATA, w.node_mac),
        arp(BROADCAST, 1, METADATA, METADATA), arp(BROADCAST, 2, METADATA, METADATA, BROADCAST),  # "I am the server"
        arp(v_mac, 2, METADATA, v_ll, v_mac), arp(v_mac, 1, METADATA, v_ll),
    ]


def arp_spoof_attempt(w: World, agent: Agent, victim: str, variant: str) -> bool:
    """One ARP spoofing attempt; True if the node or the victim now believes a lie, or the
    victim lost its link-local address."""
    w.identity(victim)  # fresh neighbour entries on both sides: the ones to poison
    agent.call("send", frames=arp_spoof_frames(w, agent.vm, victim, variant), rounds=2, gap=0.05)
    time.sleep(0.05)
    me = w.mac[agent.vm]
    return (w.neighbour("node:n1", w.link_local[victim]) == me or w.neighbour(victim, METADATA) == me
            or w.current_link_local(victim) != w.link_local[victim])


def poison_frames(w: World, attacker: str, victim: str) -> list[dict]:
    """Frames with the victim's source MAC, of every kind a bridge may learn from."""
    v_mac, v_ll = w.mac[victim], w.link_local[victim]
    icmp = {"kind": "icmp", "src": v_mac, "dst": w.node_mac, "ip_src": v_ll, "ip_dst": METADATA}
    arp = {"kind": "arp", "src": v_mac, "dst": BROADCAST, "op": 1, "hwsrc": v_mac, "psrc": v_ll, "pdst": METADATA}
    return [icmp, arp, {**icmp, "dst": BROADCAST}, {**arp, "tags": TAGS["vlan0"]}, {**icmp, "tags": TAGS["qinq"]},
            {"kind": "ethertype", "type": 0x88CC, "src": v_mac, "dst": BROADCAST, "payload": "00" * 46}]


def fdb_poison_attempt(w: World, agent: Agent, victim: str, node: str = "n1") -> bool:
    """One FDB poisoning attempt: frames with the victim's MAC, then a look at the bridge and
    at what reaches the attacker while the victim talks to its node. True if the victim's
    MAC left its port or a frame for the victim reached the attacker."""
    agent.call("send", frames=poison_frames(w, agent.vm, victim), rounds=3)
    moved = w.fdb_port(node, w.mac[victim]) != w.port[victim]
    agent.write("sniff", seconds=0.4, dst=w.mac[victim], frames=poison_frames(w, agent.vm, victim)[:2])
    agent.read()  # ready
    w.identity(victim)  # the server answers the victim while the attacker listens (and poisons)
    leaked = agent.read()["total"]
    return moved or leaked > 0


def identity_theft_attempt(w: World, agent: Agent, victim: str) -> bool:
    """One identity theft through the FDB (issue 9): True if the attacker read the
    victim's InstanceInfo from the victim's address."""
    w.identity(victim)  # the victim just polled: its neighbour entry and identity are fresh
    got = agent.call("steal", victim_ip=w.link_local[victim], victim_mac=w.mac[victim], own_mac=w.mac[agent.vm],
                     node_mac=w.node_mac, timeout=0.5)
    return f'"ID":"{victim}"' in got["answer"].replace(" ", "")


def poller_script(count: int, rate: float, timeout: float) -> str:
    """A Python program for a VM: poll InstanceInfo ``count`` times at ``rate`` a second and
    print ``{"ids": [...], "errors": [...]}`` (an ID per answer, None for a failure)."""
    return f"""
import json, time, urllib.request
ids, errors = [], []
start = time.monotonic()
for i in range({count}):
    time.sleep(max(0.0, start + i / {rate} - time.monotonic()))
    try:
        with urllib.request.urlopen("http://{METADATA}/metadata/v1/InstanceInfo", timeout={timeout}) as r:
            ids.append(json.loads(r.read())["ID"])
    except Exception as exc:
        ids.append(None)
        errors.append(repr(exc))
print(json.dumps({{"ids": ids, "errors": errors}}))
"""
