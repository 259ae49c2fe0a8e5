"""The Python API of a running datacenter: up, attach, status, exec, down, cleanup.

Teardown (:func:`remove_datacenter`, behind ``down`` and ``cleanup``) needs neither
``datacenter.json`` nor the state folder: processes come from the journal, its copy in
the run folder and the daemon's command line (each checked against its start time),
namespaces from the datacenter's prefix.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from netsim.api import control
from netsim.kernel import hostexec, netns
from netsim.model import names
from netsim.kernel.builder import Progress, build
from netsim.errors import NetsimError, StateError
from netsim.kernel.rtnl import Rtnl
from netsim.state import RunDir, StateDir, known_datacenters, known_run_datacenters
from netsim.kernel.procfs import start_time
from netsim.kernel.teardown import alive, end_recorded, netsim_daemons, remove_namespaces, signal_process
from netsim.model import addressing
from netsim.model.plan import plan_of
from netsim.model.topology import Datacenter

DAEMON_ERROR_PREFIX = "netsim-daemon: error: "
"""How the daemon's log starts the one line that says why it could not start."""


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
        started = start_time(pid)
        self.state.journal("pid", pid, started, what)
        self.state.close_journal()
        RunDir(self.name).record_process(pid, started, what)

    def routable_address(self, vm: str) -> str:
        """The routable (198.18/15) address of a VM."""
        return plan_of(self.topology).vm(vm).routable

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
        plan = plan_of(self.topology)
        vms = []
        for vm in self.topology.vms:
            ns = names.vm_ns(self.name, vm.name)
            vms.append({
                "name": vm.name, "node": placement.get(vm.name, vm.node), "home_node": vm.node,
                "availability_set": vm.availability_set,
                "update_domain": vm.update_domain, "fault_domain": vm.fault_domain,
                "namespace": ns, "present": ns in present,
                "mac": plan.vm(vm.name).mac,
                "routable": plan.vm(vm.name).routable, "link_local": lla.get(vm.name),
                "link_local_mode": self.topology.linklocal,
                "claim": claims.get(vm.name, {}).get("state"),
                "stopped": vm.name in snap.get("stopped_vms", ()),  # off until `netsim vm start`
                "containers": [{"name": c.name, "namespace": c.namespace, "present": c.namespace in present,
                                "address": c.address, "host": f"{vm.name}{names.CONTAINER_SEPARATOR}{c.name}"}
                               for c in plan.vm(vm.name).containers],
            })
        nodes = [{"name": n.name, "namespace": names.node_ns(self.name, n.name),
                  "present": names.node_ns(self.name, n.name) in present,
                  "subnet": plan.node(n.name).subnet,
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
                "namespaces": len(present), "faults": snap.get("faults", [])}

    # -- daemon --------------------------------------------------------------------------

    def start_daemon(self) -> int:
        """Start the datacenter's daemon, journal its PID and wait until it answers; a
        daemon started again after a crash re-attaches to what exists and loses no event."""
        if self.daemon_pids():
            raise StateError(f"the daemon of {self.name!r} is already running (PID {self.daemon_pids()[0]})")
        log = open(self.state.file("daemon.log"), "ab")
        log_start = log.tell()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "netsim.runtime.daemon", "--name", self.name],
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
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    raise StateError(self._start_failure(log_start, proc.returncode)) from None
                time.sleep(0.05)

    def _start_failure(self, log_start: int, status: int | None) -> str:
        """One line saying why the daemon did not start: its own error line, or the last
        line of its log (a traceback stays in the log, not on the user's terminal)."""
        path = self.state.file("daemon.log")
        try:
            with open(path, "rb") as f:
                f.seek(log_start)
                lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
        except OSError:
            lines = []
        for line in reversed(lines):
            if DAEMON_ERROR_PREFIX in line:
                return line.split(DAEMON_ERROR_PREFIX, 1)[1]
        last = lines[-1][:200] if lines else "(nothing)"
        how = "did not answer in time" if status is None else f"exited with status {status}"
        return f"the daemon of {self.name!r} {how}; the last line of {path} is: {last}"

    def daemon_processes(self) -> list[tuple[int, str]]:
        """``(pid, start time)`` of this datacenter's running daemons: recorded in the
        journal or the run folder, or recognised by their command line."""
        recorded = [(pid, started) for pid, started, what in
                    self.state.pid_records() + RunDir(self.name).pid_records() if what == "daemon"]
        found = [p for p in recorded if alive(*p)] + netsim_daemons(self.name).get(self.name, [])
        return list(dict.fromkeys(found))

    def daemon_pids(self) -> list[int]:
        """PIDs of this datacenter's daemon processes that are still running."""
        return [pid for pid, _ in self.daemon_processes()]

    def stop_daemon(self, sig: int = signal.SIGTERM) -> None:
        """End the daemon (SIGTERM: cleanly; SIGKILL: as a crash would) and wait for it."""
        procs = self.daemon_processes()
        for pid, started in procs:
            signal_process(pid, started, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(*p) for p in procs):
            time.sleep(0.02)

    def reset_events(self) -> str | None:
        """Set the event repository aside (``events.db.corrupt-TIME``, with its WAL) so that
        the next daemon starts with no events; returns where it went (None: there was none).
        The daemon must be stopped."""
        if self.daemon_pids():
            raise StateError(f"the daemon of {self.name!r} is running: use 'netsim daemon restart --reset-events "
                             f"--name {self.name}'")
        path = self.state.file("events.db")
        if not os.path.exists(path):
            return None
        aside = f"{path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
        for suffix in ("", "-wal", "-shm"):  # the WAL holds committed pages: it goes with the file
            if os.path.exists(path + suffix):
                os.replace(path + suffix, aside + suffix)
        return aside

    def request(self, command: str, **args) -> dict:
        """Send a command to the datacenter's daemon (the commands: :mod:`netsim.runtime.commands`)."""
        return control.request(self.name, command, **args)

    def add_fault(self, target: str, **options) -> dict:
        """Add a fault (issue 13) to ``target`` (a VM, ``node:NAME`` or ``all``); ``options``
        are ``fault_add``'s keys (``http=503``, ``delay=200``, ``loss=20``, ``in_=5`` or
        ``duration=30``...); returns the fault as :meth:`faults` lists it (its ``id``)."""
        if "in_" in options:
            options["in"] = options.pop("in_")
        return self.request("fault_add", target=target, **options)["fault"]

    def faults(self) -> list[dict]:
        """Every fault: id, target, kind, options, starts_at, ends_at, state."""
        return self.request("fault_list")["faults"]

    def clear_faults(self, fault_id: str | None = None) -> list[str]:
        """Remove fault ``fault_id``, or every fault when None; returns the ids removed."""
        args = {"id": fault_id} if fault_id is not None else {"all": True}
        return self.request("fault_clear", **args)["cleared"]

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
        return remove_datacenter(self.name).namespaces


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


@dataclasses.dataclass(frozen=True)
class Removal:
    """What :func:`remove_datacenter` did."""

    namespaces: int
    """Namespaces removed."""
    processes: int
    """Recorded processes (daemon, services, helpers) ended; those inside the namespaces
    are ended with them and not counted."""
    kept: str | None = None
    """Where a corrupt state folder was set aside, if it was."""
    corruption: str | None = None
    """Why the state folder was set aside."""


def remove_datacenter(name: str) -> Removal:
    """Remove datacenter ``name`` from what netsim journals and names, whatever is left of
    its state: end its recorded processes and its daemon, remove its namespaces and its
    state and run folders (a corrupt state folder is set aside instead), release the
    host settings. Idempotent."""
    state, run = StateDir(name), RunDir(name)
    with state.locked():
        procs = [(pid, started) for pid, started, _ in state.pid_records() + run.pid_records()]
        procs += netsim_daemons(name).get(name, [])
        ended = end_recorded(procs)
        removed = remove_namespaces(state.namespace_records() + netns.list_names(names.dc_prefix(name)))
        corruption = state.corruption()
        kept = state.set_aside() if corruption else None
        if not kept:
            state.remove()
        run.remove()
    return Removal(removed, ended, kept, corruption)


def down(name: str) -> Removal:
    """``netsim down``: remove datacenter ``name``; StateError if nothing of it exists."""
    if not (StateDir(name).exists() or os.path.exists(StateDir(name).path) or RunDir(name).exists()
            or netns.list_names(names.dc_prefix(name)) or netsim_daemons(name)):
        StateDir(name).read_datacenter()  # raises the "no datacenter is up" error
    return remove_datacenter(name)


def cleanup_report(name: str | None = None) -> dict[str, Removal]:
    """Remove whatever netsim made for datacenter ``name`` (or for all), even with no
    state left (after kill -9): what :func:`remove_datacenter` did, per datacenter."""
    dcs = ({names.dc_of_namespace(n) for n in netns.list_names(names.PREFIX)} | set(known_datacenters())
           | set(known_run_datacenters()) | set(netsim_daemons(name)))
    if name is not None:
        dcs &= {name}
    return {dc: remove_datacenter(dc) for dc in sorted(d for d in dcs if d and names.dc_name_problem(d) is None)}


def cleanup(name: str | None = None) -> dict[str, int]:
    """Remove whatever carries netsim's prefix (of datacenter ``name``, or of all), even
    with no state left (after kill -9). Returns the namespaces removed per datacenter."""
    return {dc: r.namespaces for dc, r in cleanup_report(name).items()}
