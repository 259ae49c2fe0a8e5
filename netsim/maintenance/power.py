"""Stopped VMs as a part of :class:`~netsim.maintenance.planner.Planner` (a mixin, pure).

A VM that a stop event (AWS's ``instance-stop``, a spot interruption's ``stop`` or
``hibernate``, GCE's preemption) powered off stays off until its owner starts it again
(``netsim vm start``). The planner knows it (:meth:`~netsim.maintenance.fleet.Fleet.is_stopped`,
set when the stop's effect is reported done) because maintenance treats such a VM as AWS
treats a stopped instance: a later pause, reboot, redeploy or stop that reaches it (an
update-domain walk, a one-off event) has no effect on it and is Completed for it at its
start, so the VM stays off; service healing moves its port off a failed node but does not
power it on (:attr:`~netsim.maintenance.actions.Heal.stay_off`); a preempt or terminate
still removes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from netsim.model import gcedata, vmdata

if TYPE_CHECKING:
    from netsim.maintenance.fleet import Fleet


class PowerInputs:
    """Inputs and readings of the VMs' power (a mixin: it uses the planner's fleet)."""

    _fleet: "Fleet"

    def vm_started(self, vm: str) -> bool:
        """``vm``, stopped, was powered on again (``netsim vm start``); False if it was not stopped."""
        was = self._fleet.is_stopped(vm)
        self._fleet.set_stopped(vm, False)
        return was

    def stopped_vms(self) -> list[str]:
        """The VMs that are powered off until someone starts them, sorted."""
        return self._fleet.stopped()


def power_policy(dc: Any, vm: Any) -> dict[str, bool]:
    """The keyword arguments of :meth:`~netsim.maintenance.fleet.Fleet.set_policy` for topology VM
    ``vm`` of datacenter ``dc``: GCE's scheduling (live migration, automatic restart) and Azure's
    Spot eviction policy (Deallocate stops rather than deletes)."""
    live_migrates, restarts = gcedata.host_maintenance_policy(dc, vm)
    return {"live_migrates": live_migrates, "restarts": restarts,
            "deallocates": vmdata.eviction_deallocates(dc, vm)}
