"""Process helpers for the scenario services: wait for a listener, stop by PID.

A process started in a namespace is observed through ``/proc/PID/net/{tcp,udp}``,
which shows the sockets of *that process's* network namespace: the harness learns
that a server listens without sending a packet from the host's namespace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from netsim.invm.errors import ScenarioError

_TCP_LISTEN = "0A"
_UDP_UNCONNECTED = "07"


def _sockets(pid: int, proto: str) -> list[tuple[str, int, str]]:
    """(hex local address, port, state) of every IPv4 ``proto`` socket in PID's namespace."""
    out = []
    try:
        with open(f"/proc/{pid}/net/{proto}") as f:
            next(f)
            for line in f:
                fields = line.split()
                addr, _, port = fields[1].partition(":")
                out.append((addr, int(port, 16), fields[3]))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        pass
    return out


def _hex_address(address: str) -> str:
    """``/proc/net`` notation of an IPv4 address (little-endian hex on x86 and arm)."""
    return "".join(f"{int(b):02X}" for b in reversed(address.split(".")))


def listening(pid: int, port: int, proto: str = "tcp", address: str | None = None) -> bool:
    """True if PID's namespace has a ``proto`` socket listening on ``port`` (and ``address``,
    or the wildcard, when given)."""
    want = _TCP_LISTEN if proto == "tcp" else _UDP_UNCONNECTED
    accept = None if address is None else {_hex_address(address), "00000000"}
    return any(p == port and st == want and (accept is None or a in accept)
               for a, p, st in _sockets(pid, proto))


def wait_listening(proc: subprocess.Popen, port: int, proto: str = "tcp", *, address: str | None = None,
                   timeout: float = 10.0, what: str = "server") -> None:
    """Wait until ``proc`` listens on ``port``; ScenarioError if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while not listening(proc.pid, port, proto, address):
        if proc.poll() is not None:
            raise ScenarioError(f"{what} (PID {proc.pid}) exited with status {proc.returncode} "
                                f"before listening on {proto} port {port}; see its log")
        if time.monotonic() > deadline:
            raise ScenarioError(f"{what} (PID {proc.pid}) did not listen on {proto} port {port} "
                                f"within {timeout:g} s; see its log")
        time.sleep(0.02)


def stop(proc: subprocess.Popen, timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
    """End ``proc`` by its PID: ``sig``, then SIGKILL after ``timeout``; returns its status."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout)
    return proc.returncode
