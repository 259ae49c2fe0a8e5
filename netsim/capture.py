"""``netsim capture``: a node bridge's frames written to a pcap file (tcpdump, Wireshark).

The capture socket is opened inside the node's namespace and bound to its bridge, so it
sees every frame any VM of the node sends or receives; nothing is captured in the host.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from netsim import names
from netsim.safety import emulated_socket

ETH_P_ALL = 0x0003
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET


def capture(node_ns: str, path: str, duration: float, ifname: str = names.NODE_BRIDGE,
            max_frames: int | None = None) -> int:
    """Write the frames seen on ``ifname`` of ``node_ns`` for ``duration`` seconds; return the count."""
    sock = emulated_socket(node_ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    count = 0
    try:
        sock.bind((ifname, ETH_P_ALL))
        deadline = time.monotonic() + duration
        with open(path, "wb") as out:
            out.write(PCAP_HEADER)
            while (left := deadline - time.monotonic()) > 0 and (max_frames is None or count < max_frames):
                if not select.select([sock], [], [], left)[0]:
                    continue
                frame = sock.recv(65535)
                now = time.time()
                out.write(struct.pack("<IIII", int(now), int((now % 1) * 1e6), len(frame), len(frame)) + frame)
                count += 1
    finally:
        sock.close()
    return count
