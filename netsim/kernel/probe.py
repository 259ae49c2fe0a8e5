"""Reachability probes sent from inside emulated hosts: ICMP echo and TCP connect.

Each source gets one socket opened inside its namespace; all probes of a round go out
together and replies are matched by identifier and sequence, so a matrix of hundreds of
pairs costs one timeout, not one per pair, and no process is started.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from dataclasses import dataclass

from netsim.kernel.safety import emulated_socket

ECHO_REQUEST, ECHO_REPLY = 8, 0


@dataclass(frozen=True)
class Probe:
    """One question: can ``src_ns`` reach ``address`` (on TCP ``port``, or by ICMP if None)?"""

    src_ns: str
    address: str
    port: int | None = None


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident: int, seq: int) -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    payload = b"netsim-reach"
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, _checksum(header + payload), ident, seq) + payload


def run_probes(probes: list[Probe], timeout: float = 1.0, attempts: int = 2) -> dict[Probe, bool]:
    """Answer every probe; ICMP is retried ``attempts`` times within ``timeout`` seconds."""
    result = {p: False for p in probes}
    icmp = [p for p in probes if p.port is None]
    tcp = [p for p in probes if p.port is not None]
    deadline = time.monotonic() + timeout
    socks: dict[str, socket.socket] = {}
    pending_tcp: dict[socket.socket, Probe] = {}
    try:
        for p in icmp:
            if p.src_ns not in socks:
                socks[p.src_ns] = emulated_socket(p.src_ns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        for p in tcp:
            s = emulated_socket(p.src_ns, socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((p.address, p.port))
            if rc in (0, errno.EINPROGRESS):
                pending_tcp[s] = p
            else:
                s.close()
        ident = os.getpid() & 0xFFFF
        seq_of = {p: i for i, p in enumerate(icmp)}
        by_seq = {i: p for p, i in seq_of.items()}
        waiting = set(icmp)
        by_fd = {s.fileno(): (ns, s) for ns, s in socks.items()}
        for attempt in range(attempts):
            for p in waiting:
                try:
                    socks[p.src_ns].sendto(_echo(ident, seq_of[p]), (p.address, 0))
                except OSError:
                    pass  # no route: the probe simply fails
            round_end = min(deadline, time.monotonic() + timeout / attempts) if attempt < attempts - 1 else deadline
            while (waiting or pending_tcp) and (left := round_end - time.monotonic()) > 0:
                readable, writable, _ = select.select(list(socks.values()) if waiting else [],
                                                      list(pending_tcp), [], left)
                for s in readable:
                    ns = by_fd[s.fileno()][0]
                    data, (src, _) = s.recvfrom(2048)
                    ihl = (data[0] & 0x0F) * 4
                    kind, _, _, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
                    p = by_seq.get(rseq)
                    if kind == ECHO_REPLY and rid == ident and p and p.src_ns == ns and p.address == src:
                        result[p] = True
                        waiting.discard(p)
                for s in writable:
                    p = pending_tcp.pop(s)
                    result[p] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                    s.close()
            if not waiting:
                break
    finally:
        for s in list(socks.values()) + list(pending_tcp):
            s.close()
    return result
