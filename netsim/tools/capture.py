"""``netsim capture``: a node bridge's frames written to a pcap file (tcpdump, Wireshark).

The capture socket is opened inside the node's namespace and bound to its bridge, so it
sees every frame any VM of the node sends or receives; nothing is captured in the host.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable

from netsim.model import names
from netsim.errors import NetsimError
from netsim.kernel.safety import emulated_socket


class CaptureError(NetsimError):
    """The capture file cannot be written (names the file and the OS's reason)."""


ETH_P_ALL = 0x0003
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET


def capture(node_ns: str, path: str, duration: float, ifname: str = names.NODE_BRIDGE,
            max_frames: int | None = None, started: Callable[[], None] | None = None) -> int:
    """Write the frames seen on ``ifname`` of ``node_ns`` for ``duration`` seconds; return the count.

    ``started`` is called once the file and the socket are open, when capturing begins."""
    try:  # opened first: a bad path is the user's to fix, before anything is captured
        out = open(path, "wb")
    except OSError as exc:
        raise CaptureError(f"cannot write the capture to {path}: {exc.strerror}; give a writable path "
                           "with -o") from None
    try:
        sock = emulated_socket(node_ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except BaseException:
        out.close()
        raise
    count = 0
    try:
        sock.bind((ifname, ETH_P_ALL))
        if started is not None:
            started()
        deadline = time.monotonic() + duration
        with out:
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
        out.close()
    return count
