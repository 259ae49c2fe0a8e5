"""The anchor of bench/aws.py's token load: a bare IMDSv2 responder, on the same machine, in the same run.

One process (uvloop when installed, as the daemon) listens on 169.254.169.254:PORT inside every
node namespace and answers what the load sends with fixed bytes and no parsing beyond the end
of the head: a ``PUT`` gets a 44-byte token, sent with IP TTL = 1 and the connection's TTL set
back before the next answer (the one socket option IMDSv2 needs), anything else gets an
instance id. What the token load measures against it is what this machine, its kernel path
(veth, bridge, namespaces) and the load generator allow at all; the ratio of the real server
to it is steadier on a shared host than either figure alone.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

PORT = 8080
"""The anchor's port: the daemon keeps port 80 (it stays up, idle, meanwhile)."""
TOKEN = b"A" * 44
INSTANCE_ID = b"i-0123456789abcdef0"

RESPONDER = r'''
import asyncio, os, socket, sys
sys.path.insert(0, sys.argv[1])
from netsim.kernel import netns
from netsim.runtime.loop import loop_factory

PUT = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n"
       b"X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n\r\n" + b"A" * 44)
GET = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 19\r\n\r\ni-0123456789abcdef0"


class Bare(asyncio.Protocol):
    def connection_made(self, transport):
        self.t, self.buf, self.sock, self.ttl = transport, b"", None, False

    def data_received(self, data):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            if self.sock is None:
                self.sock = socket.socket(fileno=os.dup(self.t.get_extra_info("socket").fileno()))
            if head.startswith(b"PUT"):
                self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
                self.ttl = True
                self.t.write(PUT)
            else:
                if self.ttl:
                    self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 64)
                    self.ttl = False
                self.t.write(GET)

    def connection_lost(self, exc):
        if self.sock is not None:
            self.sock.close()


async def main():
    loop = asyncio.get_running_loop()
    for ns in sys.argv[3].split(","):
        sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("169.254.169.254", int(sys.argv[2])))
        sock.listen(1024)
        sock.setblocking(False)
        await loop.create_server(Bare, sock=sock)
    print("ready", flush=True)
    await asyncio.Event().wait()


factory, _ = loop_factory()
with asyncio.Runner(loop_factory=factory) as runner:
    runner.run(main())
'''


@contextlib.contextmanager
def bare_responder(root: str, namespaces: list[str], port: int = PORT) -> Iterator[int]:
    """Run the bare responder in ``namespaces`` (node namespaces of a datacenter) while the
    block runs; yields its PID (for its CPU time). ``root``: the checkout, for ``netsim``."""
    proc = subprocess.Popen([sys.executable, "-c", RESPONDER, root, str(port), ",".join(namespaces)],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the bare responder did not start (exit {proc.poll()})")
        yield proc.pid
    finally:
        proc.kill()  # ours, by PID
        proc.wait()
