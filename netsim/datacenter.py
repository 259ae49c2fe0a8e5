"""The Python API of a running datacenter: up, attach, status, exec, down, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from netsim import control, hostexec, names, netns
from netsim.builder import Progress, build
from netsim.errors import NetsimError, StateError
from netsim.rtnl import Rtnl
from netsim.state import StateDir, known_datacenters
from netsim.teardown import end_processes, remove_namespaces
from netsim.topology import addressing
from netsim.topology.model import Datacenter


def _start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat): with the PID, it
    identifies a process even after PIDs wrap around."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    state = None
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        except ChildProcessError:
            pass
        return False
    return True


class RunningDatacenter:
    """A datacenter that is up, as recorded in its state folder."""

    def __init__(self, topology: Datacenter, state: StateDir) -> None:
        self.topology = topology
        self.state = state

    @property
    def name(self) -> str:
        """The datacenter's name (and namespace prefix)."""
        return self.topology.name

    @classmethod
    def attach(cls, name: str) -> "RunningDatacenter":
        """The running datacenter ``name``; StateError if it is not up."""
        state = StateDir(name)
        return cls(state.read_datacenter(), state)

    # -- hosts --------------------------------------------------------------------------

    def namespace(self, host: str) -> str:
        """Namespace of HOST (a VM, ``node:NAME``, ``lb``, ``client``, ``ops`` or ``fabric``)."""
        return hostexec.host_namespace(self.topology, host)

    def run(self, host: str, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a command inside HOST and wait for it."""
        return hostexec.run(self.namespace(host), argv, **kwargs)

    def popen(self, host: str, argv: Sequence[str], *, track: bool = True, **kwargs) -> subprocess.Popen:
        """Start a command inside HOST; with ``track`` its PID is journaled so ``down`` ends it."""
        proc = hostexec.popen(self.namespace(host), argv, **kwargs)
        if track:
            self.record_process(proc.pid, host)
        return proc

    def record_process(self, pid: int, what: str) -> None:
        """Journal a process this datacenter started, so that ``down`` ends it by PID."""
        self.state.journal("pid", pid, _start_time(pid), what)
        self.state.close_journal()

    def routable_address(self, vm: str) -> str:
        """The routable (198.18/15) address of a VM."""
        return addressing.routable_of(self.topology, vm)

    def link_local_addresses(self) -> dict[str, str | None]:
        """Each VM's current link-local address, read from the kernel (None if it has none)."""
        out: dict[str, str | None] = {}
        for vm in self.topology.vms:
            try:
                with Rtnl.in_namespace(names.vm_ns(self.name, vm.name)) as sock:
                    found = [a for i, a, plen in sock.addresses()
                             if i == names.NIC_INDEX and a.startswith("169.254.")]
            except (NetsimError, OSError):  # a VM removed by Preempt or Terminate
                found = []
            out[vm.name] = found[0] if found else None
        return out

    def status(self) -> dict:
        """A JSON-ready description: nodes, VMs with addresses and whether each namespace exists."""
        present = set(netns.list_names(names.dc_prefix(self.name)))
        lla = self.link_local_addresses()
        try:
            snap = self.request("snapshot")
        except StateError:
            snap = {"claims": {}, "placement": {}}
        claims, placement = snap["claims"], snap["placement"]
        vms = []
        for vm in self.topology.vms:
            ns = names.vm_ns(self.name, vm.name)
            vms.append({
                "name": vm.name, "node": placement.get(vm.name, vm.node), "home_node": vm.node,
                "availability_set": vm.availability_set,
                "update_domain": vm.update_domain, "fault_domain": vm.fault_domain,
                "namespace": ns, "present": ns in present,
                "mac": addressing.vm_mac(self.name, vm.index),
                "routable": self.routable_address(vm.name), "link_local": lla.get(vm.name),
                "link_local_mode": self.topology.linklocal,
                "claim": claims.get(vm.name, {}).get("state"),
            })
        nodes = [{"name": n.name, "namespace": names.node_ns(self.name, n.name),
                  "present": names.node_ns(self.name, n.name) in present,
                  "subnet": addressing.node_addresses(n.index).subnet,
                  "metadata": addressing.METADATA_ADDRESS,
                  "failed": n.name in snap.get("failed_nodes", []),
                  "vms": [v.name for v in self.topology.vms if placement.get(v.name, v.node) == n.name]}
                 for n in self.topology.nodes]
        extras = [{"name": h, "namespace": names.extra_ns(self.name, h),
                   "present": names.extra_ns(self.name, h) in present,
                   "address": addressing.EXTRA_HOST_ADDRESSES[h]} for h in names.EXTRA_HOSTS]
        return {"name": self.name, "status": self.state.status(), "state_dir": self.state.path,
                "location": self.topology.location, "linklocal": self.topology.linklocal,
                "timers": self.topology.timers, "nodes": nodes, "vms": vms, "hosts": extras,
                "namespaces": len(present)}

    # -- daemon --------------------------------------------------------------------------

    def start_daemon(self) -> int:
        """Start the datacenter's daemon, journal its PID and wait until it answers; a
        daemon started again after a crash re-attaches to what exists and loses no event."""
        if self.daemon_pids():
            raise StateError(f"the daemon of {self.name!r} is already running (PID {self.daemon_pids()[0]})")
        log = open(self.state.file("daemon.log"), "ab")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "netsim.daemon", "--name", self.name],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    env={**os.environ, "NETSIM_STATE_DIR": os.path.dirname(self.state.path)})
        finally:
            log.close()
        self.record_process(proc.pid, "daemon")
        deadline = time.monotonic() + DAEMON_START_TIMEOUT
        while True:
            try:
                control.request(self.name, "ping", timeout=2.0)
                return proc.pid
            except StateError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = open(self.state.file("daemon.log"), errors="replace").read()[-600:]
                    raise StateError(f"the daemon of {self.name!r} did not start; its log ends:\n{tail}") from None
                time.sleep(0.05)

    def daemon_pids(self) -> list[int]:
        """PIDs of this datacenter's daemon processes that are still running."""
        return [int(r[1]) for r in self.state.read_journal()
                if r[0] == "pid" and r[-1] == "daemon" and _start_time(int(r[1])) == r[2] and _alive(int(r[1]))]

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        """End the daemon (SIGTERM: cleanly; SIGKILL: as a crash would) and wait for it."""
        pids = self.daemon_pids()
        for pid in pids:
            os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)

    def request(self, command: str, **args) -> dict:
        """Send a command to the datacenter's daemon (see :mod:`netsim.daemon`)."""
        return control.request(self.name, command, **args)

    def claims(self) -> dict[str, dict]:
        """Each VM's RFC 3927 claim: ``{"state": ..., "address": ...}`` (empty when static)."""
        return self.request("linklocal")["vms"]

    def set_link(self, vm: str, up: bool) -> None:
        """Take a VM's eth0 down or up for real; a link that comes back claims its address again."""
        self.topology.vm(vm)
        with Rtnl.in_namespace(names.vm_ns(self.name, vm)) as sock:
            sock.set_link(names.NIC_INDEX, up=up, what=f"setting eth0 of {vm} {'up' if up else 'down'}")
            sock.flush()
        if self.topology.linklocal == "claim":
            self.request("link", vm=vm, up=up)

    def wait_for_claims(self, timeout: float, progress: Progress | None = None) -> None:
        """Wait until every VM has claimed a link-local address and finished announcing it."""
        deadline = time.monotonic() + timeout
        while True:
            claims = self.claims()
            bound = sum(1 for c in claims.values() if c.get("address") and c.get("state") == "BOUND")
            if progress:
                progress("claiming link-local addresses", bound, len(self.topology.vms))
            if bound == len(self.topology.vms):
                return
            if time.monotonic() > deadline:
                raise StateError(f"only {bound} of {len(self.topology.vms)} VMs claimed a link-local address "
                                 f"within {timeout:.0f} s; see {self.state.file('daemon.log')}")
            time.sleep(0.1)

    # -- teardown ------------------------------------------------------------------------

    def down(self) -> int:
        """End the datacenter's processes, remove its namespaces and its state; idempotent."""
        with self.state.locked():
            journal = self.state.read_journal()
            pids = [int(r[1]) for r in journal if r[0] == "pid" and _start_time(int(r[1])) == r[2]]
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
                time.sleep(0.02)
            end_processes(pids, timeout=5.0)
            recorded = [r[1] for r in journal if r[0] == "ns"]
            removed = remove_namespaces(recorded + netns.list_names(names.dc_prefix(self.name)))
            self.state.remove()
        return removed


DAEMON_START_TIMEOUT = 20.0


def up(topology: Datacenter, progress: Progress | None = None, *, daemon: bool = True,
       wait_claims: float | None = 60.0) -> RunningDatacenter:
    """Build ``topology``, start its daemon (metadata servers, link-local claiming) and
    return it running; with ``linklocal = "claim"`` wait until every VM holds an address
    (at most ``wait_claims`` seconds). Anything that fails is torn down again."""
    state = build(topology, progress=progress)
    running = RunningDatacenter(topology, state)
    if not daemon:
        return running
    try:
        running.start_daemon()
        if topology.linklocal == "claim" and wait_claims:
            running.wait_for_claims(wait_claims, progress)
    except BaseException:
        running.down()
        raise
    return running


def cleanup(name: str | None = None) -> dict[str, int]:
    """Remove whatever carries netsim's prefix (of datacenter ``name``, or of all), even
    with no state left (after kill -9). Returns the namespaces removed per datacenter."""
    dcs = {names.dc_of_namespace(n) for n in netns.list_names(names.PREFIX)} | set(known_datacenters())
    if name is not None:
        dcs &= {name}
    removed = {}
    for dc in sorted(d for d in dcs if d):
        state = StateDir(dc)
        try:
            if state.exists():
                removed[dc] = RunningDatacenter(state.read_datacenter(), state).down()
                continue
        except StateError:
            pass
        with state.locked():
            removed[dc] = remove_namespaces(netns.list_names(names.dc_prefix(dc)))
            state.remove()
    return removed
