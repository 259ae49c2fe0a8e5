"""The load balancer: Debian's HAProxy inside the ``lb`` host, on the virtual IP.

:func:`start_load_balancer` adds the virtual IP 198.19.255.100/24 to lb's ``eth0`` (by
netlink, idempotent), writes a configuration with one backend server per VM of an
availability set (its routable address, port 8080, HTTP health checks every 500 ms),
and starts ``haproxy -f CONF -db`` with :meth:`RunningDatacenter.popen` (PID journaled,
so ``netsim down`` ends it). Balancing is ``balance source`` with consistent hashing:
a client address sticks to one server, and a drained server's clients move to the
others while everyone else stays put (a stick-table would keep sending "persistent"
clients to a server in drain, which is what draining must avoid).

The runtime API listens twice: on a UNIX socket in the private folder (the harness:
:meth:`LoadBalancer.servers`, :meth:`LoadBalancer.set_state`) and on TCP
``198.19.255.10:9999`` (level admin), where a VM's drain agent sends
``set server web/web1 state drain``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

from netsim.model import names
from netsim.kernel.rtnl import Rtnl
from netsim.invm import runtime_api
from netsim.invm.errors import ScenarioError
from netsim.harness.procs import stop as stop_process
from netsim.harness.procs import wait_listening
from netsim.invm.runtime_api import ServerStatus
from netsim.model.addressing import EXTRA_HOST_ADDRESSES, LB_VIRTUAL_IP

HAPROXY = "/usr/sbin/haproxy"
FRONTEND_PORT = 80
SERVER_PORT = 8080
RUNTIME_PORT = 9999
MAX_UNIX_PATH = 100  # sun_path holds 108 bytes


def add_virtual_ip(dc, host: str = "lb", address: str = LB_VIRTUAL_IP, prefixlen: int = 24) -> None:
    """Add ``address/prefixlen`` to ``eth0`` of ``host`` (nothing happens if it is there)."""
    with Rtnl.in_namespace(dc.namespace(host)) as sock:
        sock.add_address(names.NIC_INDEX, address, prefixlen, exist_ok=True)
        sock.flush()


def haproxy_config(servers: Sequence[tuple[str, str]], *, admin_socket: str, backend: str = "web",
                   vip: str = LB_VIRTUAL_IP, port: int = FRONTEND_PORT, server_port: int = SERVER_PORT,
                   runtime: tuple[str, int] | None = (EXTRA_HOST_ADDRESSES["lb"], RUNTIME_PORT),
                   balance: str = "source", check: str = "check inter 500ms fall 2 rise 1",
                   syslog: str | None = None) -> str:
    """The HAProxy configuration: frontend ``vip:port``, backend ``backend`` with one
    server per (name, address) on ``server_port``."""
    glob = ["global",
            f"    stats socket {admin_socket} mode 600 level admin",
            "    stats timeout 10s",
            "    nbthread 2",
            "    maxconn 4096"]
    if runtime is not None:
        glob.append(f"    stats socket ipv4@{runtime[0]}:{runtime[1]} level admin")
    if syslog:
        glob.append(f"    log {syslog} local0 info")
    defaults = ["defaults",
                "    mode http",
                "    timeout connect 1s",
                "    timeout client 30s",
                "    timeout server 30s",
                "    timeout http-request 5s",
                "    timeout queue 5s",
                # A connection refused by a server that just went away is retried on
                # another one instead of failing the client's request.
                "    retries 2",
                "    option redispatch",
                # No idle server connections: a drained server's session count reaches 0
                # and stays there, and a VM that reboots leaves no half-closed connection.
                "    option http-server-close"]
    if syslog:
        defaults += ["    log global", "    option httplog"]
    front = ["frontend vip", f"    bind {vip}:{port}", f"    default_backend {backend}"]
    back = [f"backend {backend}", f"    balance {balance}"]
    if balance == "source":
        back.append("    hash-type consistent")
    back += ["    option httpchk GET /", "    http-check expect status 200"]
    back += [f"    server {name} {address}:{server_port} {check}" for name, address in servers]
    return "\n".join(glob + [""] + defaults + [""] + front + [""] + back) + "\n"


class LoadBalancer:
    """A running HAProxy (see :func:`start_load_balancer`)."""

    def __init__(self, proc: subprocess.Popen, workdir: str, backend: str, vip: str, port: int,
                 admin_socket: str, runtime: tuple[str, int] | None) -> None:
        self.proc, self.workdir, self.backend = proc, workdir, backend
        self.vip, self.port, self.admin_socket, self.runtime = vip, port, admin_socket, runtime
        self.conf_path = os.path.join(workdir, "haproxy.cfg")

    @property
    def url(self) -> str:
        """``http://VIP:PORT/``."""
        return f"http://{self.vip}:{self.port}/" if self.port != 80 else f"http://{self.vip}/"

    def command(self, line: str) -> str:
        """Any runtime API command, over the UNIX socket."""
        return runtime_api.command(self.admin_socket, line)

    def servers(self) -> dict[str, ServerStatus]:
        """The backend's servers by name: status (UP, DOWN, DRAIN, MAINT ...), sessions."""
        return runtime_api.show_stat(self.admin_socket, self.backend)

    def servers_state(self) -> list[dict[str, str]]:
        """``show servers state`` of the backend (admin and operational state bits)."""
        return runtime_api.parse_servers_state(self.command(f"show servers state {self.backend}"))

    def admin_states(self) -> dict[str, set[str]]:
        """Each server's administrative flags (``FDRAIN`` once set to drain, ``FMAINT`` ...)."""
        return {row["srv_name"]: runtime_api.admin_flags(row["srv_admin_state"]) for row in self.servers_state()}

    def set_state(self, server: str, state: str) -> None:
        """``set server BACKEND/SERVER state ready|drain|maint``."""
        runtime_api.set_server_state(self.admin_socket, self.backend, server, state)

    def wait_for(self, predicate: Callable[[dict[str, ServerStatus]], bool], timeout: float = 10.0,
                 what: str = "the expected server states") -> dict[str, ServerStatus]:
        """Wait until ``predicate(servers())`` holds; ScenarioError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            servers = self.servers()
            if predicate(servers):
                return servers
            if time.monotonic() > deadline:
                seen = ", ".join(f"{s.name}={s.status}" for s in servers.values())
                raise ScenarioError(f"HAProxy did not reach {what} within {timeout:g} s ({seen})")
            time.sleep(0.05)

    def wait_up(self, timeout: float = 10.0) -> dict[str, ServerStatus]:
        """Wait until every server passes its health check."""
        return self.wait_for(lambda s: bool(s) and all(x.status == "UP" for x in s.values()), timeout,
                             "all servers UP")

    def stop(self, timeout: float = 5.0) -> None:
        """End HAProxy by its PID."""
        stop_process(self.proc, timeout)

    def __enter__(self) -> "LoadBalancer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_load_balancer(dc, availability_set: str = "web", *, backend: str | None = None,
                        servers: Sequence[str] | None = None, port: int = FRONTEND_PORT,
                        server_port: int = SERVER_PORT, runtime_port: int | None = RUNTIME_PORT,
                        balance: str = "source", syslog: str | None = None, workdir: str | None = None,
                        timeout: float = 10.0) -> LoadBalancer:
    """Start HAProxy in ``lb`` balancing ``vip:port`` over the VMs of ``availability_set``
    (or the VMs named in ``servers``); the backend is named after the set unless
    ``backend`` is given, each server after its VM. ``syslog`` (``HOST:PORT``) sends
    HAProxy's logs there."""
    if not os.access(HAPROXY, os.X_OK):
        raise ScenarioError(f"{HAPROXY} is missing: install Debian's haproxy package (apt-get install haproxy)")
    vms = list(servers) if servers is not None else \
        [v.name for v in dc.topology.vms if v.availability_set == availability_set]
    if not vms:
        raise ScenarioError(f"no VM in availability set {availability_set!r} of datacenter {dc.name!r}; "
                            "give servers=[...] or another availability_set")
    backend = backend or availability_set
    if workdir is None:
        base = dc.state.file("scenarios")
        os.makedirs(base, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix="haproxy-", dir=base)
    os.makedirs(workdir, exist_ok=True)
    admin_socket = os.path.join(workdir, "admin.sock")
    if len(admin_socket) > MAX_UNIX_PATH:
        raise ScenarioError(f"the runtime socket path {admin_socket!r} is too long for a UNIX socket; "
                            "pass a shorter workdir")
    runtime = (EXTRA_HOST_ADDRESSES["lb"], runtime_port) if runtime_port else None
    text = haproxy_config([(vm, dc.routable_address(vm)) for vm in vms], admin_socket=admin_socket,
                          backend=backend, port=port, server_port=server_port, runtime=runtime,
                          balance=balance, syslog=syslog)
    conf = os.path.join(workdir, "haproxy.cfg")
    with open(conf, "w") as f:
        f.write(text)
    check = dc.run("lb", [HAPROXY, "-c", "-q", "-f", conf])
    if check.returncode != 0:
        raise ScenarioError(f"HAProxy rejects {conf}: {(check.stdout + check.stderr).strip()[:800]}")
    add_virtual_ip(dc)
    out = open(os.path.join(workdir, "haproxy.out"), "ab")
    try:
        proc = dc.popen("lb", [HAPROXY, "-f", conf, "-db"], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                        start_new_session=True)
    finally:
        out.close()
    lb = LoadBalancer(proc, workdir, backend, LB_VIRTUAL_IP, port, admin_socket, runtime)
    try:
        wait_listening(proc, port, address=LB_VIRTUAL_IP, timeout=timeout, what="HAProxy in lb")
        if runtime:
            wait_listening(proc, runtime[1], address=runtime[0], timeout=timeout, what="HAProxy's runtime API")
        deadline = time.monotonic() + timeout
        while not os.path.exists(admin_socket):
            if time.monotonic() > deadline:
                raise ScenarioError(f"HAProxy did not create {admin_socket}; see {workdir}/haproxy.out")
            time.sleep(0.02)
    except BaseException:
        lb.stop()
        raise
    return lb
