"""Helpers for the link-local namespace tests: a bridge capture and a polling wait."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from netsim.linklocal.arp import ArpPacket, decode_frame
from netsim.harness.testbed import BRIDGE_INDEX, Testbed

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
SO_TIMESTAMPNS = 35  # asm-generic value, also SCM_TIMESTAMPNS


@dataclass(frozen=True)
class Captured:
    """One ARP frame seen on a bridge: kernel receive time, raw bytes, decoded packet."""

    ts: float
    raw: bytes
    pkt: ArpPacket


class BridgeCapture:
    """Record every ARP frame crossing ``br0`` of a lab node, with kernel timestamps.

    The socket is opened inside the node's namespace and puts the bridge in promiscuous
    mode (so unicast replies between VMs are seen too) for as long as it is open.
    """

    def __init__(self, lab: Testbed, node: int = 0) -> None:
        self.sock = lab.socket_in_node(node)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        mreq = struct.pack("iHH8s", BRIDGE_INDEX, PACKET_MR_PROMISC, 0, b"")
        self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        self.frames: list[Captured] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            data, anc, _, _ = self.sock.recvmsg(2048, 64)
            ts = time.time()
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    ts = sec + nsec / 1e9
            pkt = decode_frame(data)
            if pkt is not None:
                self.frames.append(Captured(ts, bytes(data), pkt))

    def stop(self) -> list[Captured]:
        """Stop capturing, close the socket and return the frames."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return self.frames

    def by_sender(self, mac: str) -> list[Captured]:
        """Frames whose ARP sender hardware address is ``mac``, in time order."""
        return sorted((f for f in self.frames if f.pkt.sha == mac), key=lambda f: f.ts)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms; fail the test with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def gaps(times: list[float]) -> list[float]:
    """Differences between consecutive times."""
    return [b - a for a, b in zip(times, times[1:])]
