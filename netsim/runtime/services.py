"""The services a topology declares for its VMs (``services = [...]``), run inside the VMs.

Each service is ``sh -c COMMAND`` started in the VM's namespace, logged to
``services/<vm>.log`` in the state folder and journaled by PID, so ``netsim down`` ends
it. A reboot ends every process of the VM; the services are started again after boot.
"""

from __future__ import annotations

import os
import subprocess

from netsim.kernel import hostexec
from netsim.model import names
from netsim.state import StateDir
from netsim.model.topology import Datacenter


class Services:
    """Starts and tracks the declared services of every VM."""

    def __init__(self, dc: Datacenter, state: StateDir, record_pid) -> None:
        self.dc, self.state, self.record_pid = dc, state, record_pid
        self.running: dict[str, list[subprocess.Popen]] = {}

    def start(self, vm: str) -> list[int]:
        """Start the VM's declared services (none if it declares none); return their PIDs."""
        commands = self.dc.vm(vm).services
        if not commands:
            return []
        os.makedirs(self.state.file("services"), exist_ok=True)
        procs = []
        with open(self.state.file(os.path.join("services", f"{vm}.log")), "ab") as log:
            for command in commands:
                proc = hostexec.popen(names.vm_ns(self.dc.name, vm), ["sh", "-c", command], stdin=subprocess.DEVNULL,
                                      stdout=log, stderr=log, start_new_session=True,
                                      env={**os.environ, "NETSIM_VM": vm})
                self.record_pid(proc.pid, f"service of {vm}")
                procs.append(proc)
        self.running[vm] = procs
        return [p.pid for p in procs]

    def forget(self, vm: str) -> None:
        """The VM's processes were ended (reboot, removal): reap what we started."""
        for proc in self.running.pop(vm, []):
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass

    def alive(self, vm: str) -> bool:
        """True if every declared service of the VM is running."""
        procs = self.running.get(vm, [])
        return len(procs) == len(self.dc.vm(vm).services) and all(p.poll() is None for p in procs)
