"""Maintenance: the planner (update-domain walks, one-off events, service healing) and the
host agents' durable event repository.

- :mod:`~netsim.maintenance.planner`: :class:`Planner`, sans-IO; inputs take ``now``,
  outputs are actions (:mod:`~netsim.maintenance.actions`) with idempotency keys.
- :mod:`~netsim.maintenance.repository`: :class:`Repository` (SQLite, WAL): live events per
  node, history, the approvals inbox, the exactly-once ledger and the planner's state;
  :mod:`~netsim.maintenance.view`: :class:`NodeEventView`, the
  :class:`netsim_imds.events.EventView` the metadata server reads.
- :mod:`~netsim.maintenance.tables`: both state tables. Events are the cloud-neutral
  model of :mod:`netsim_imds.events`; notices, impacts and texts are the flavor's.

The driver's loop (exactly once, across SIGKILL):

1. start: ``repo = Repository(state.file("events.db"))``; ``planner =
   Planner.from_dict(repo.load_planner())`` (or a new one), ``planner.grace(now)``;
   check ``repo.begun_keys()`` against reality (an effect a crash interrupted);
2. for every input (a tick at ``next_deadline()``, the approvals in ``repo.approvals()``
   that VMs left in the inbox, a VM back, a heartbeat): feed it, then in one
   transaction: for each of ``pop_actions()`` skip it if ``repo.applied(key)``,
   ``repo.apply(action)`` for File/Update/Remove/EndEvent, ``begin(key)`` for
   ApplyEffect/Heal; ``repo.clear_approvals(fed)``; ``repo.save_planner(planner.to_dict())``.
   Then act and ``finish(key)`` for each effect begun. The planner alone writes status.
"""

from netsim.maintenance.actions import Action, ApplyEffect, EndEvent, FileEvent, Heal, RemoveEvent, UpdateEvent
from netsim.maintenance.errors import (IllegalInput, MaintenanceError, RepositoryError, UnknownWalk,
                                       WalkInProgress)
from netsim.maintenance.planner import Planner, walk_members
from netsim.maintenance.records import WalkStatus
from netsim.maintenance.repository import Repository
from netsim.maintenance.view import NodeEventView

__all__ = ["Action", "ApplyEffect", "EndEvent", "FileEvent", "Heal", "IllegalInput", "MaintenanceError",
           "NodeEventView", "Planner", "RemoveEvent", "Repository", "RepositoryError", "UnknownWalk",
           "UpdateEvent", "WalkInProgress", "WalkStatus", "walk_members"]
