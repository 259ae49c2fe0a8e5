"""Maintenance: the planner (update-domain walks, one-off events, service healing) and the
host agents' durable event repository.

- :mod:`~netsim.maintenance.planner`: :class:`Planner`, sans-IO; inputs take ``now``,
  outputs are actions (:mod:`~netsim.maintenance.actions`) with idempotency keys.
- :mod:`~netsim.maintenance.repository`: :class:`Repository` (SQLite, WAL) and
  :class:`NodeEventView`, the :class:`netsim_imds.events.EventView` the metadata server reads.
- :mod:`~netsim.maintenance.tables`: notices, descriptions and both state tables.

The driver's loop (exactly once, across SIGKILL):

1. start: ``repo = Repository(state.file("events.db"))``; ``planner =
   Planner.from_dict(repo.load_planner())`` (or a new one), ``planner.grace(now)``, and
   ``planner.approve(id, now)`` for each of ``repo.started_event_ids()`` (a VM may have
   approved while the daemon was down: the view writes approvals to the repository);
   check ``repo.begun_keys()`` against reality (an effect a crash interrupted);
2. for every input (a tick at ``next_deadline()``, an approval hook, a VM back, a
   heartbeat): feed it, ``repo.save_planner(planner.to_dict())`` (it holds the actions
   not yet popped), then for each of ``pop_actions()``: skip it if
   ``repo.applied(key)``; ``repo.apply(action)`` for File/Update/RemoveEvent (change and
   key in one transaction); ``begin(key)``, act, ``finish(key)`` for ApplyEffect/Heal.
"""

from netsim.maintenance.actions import Action, ApplyEffect, FileEvent, Heal, RemoveEvent, UpdateEvent
from netsim.maintenance.errors import (IllegalInput, MaintenanceError, RepositoryError, UnknownWalk,
                                       WalkInProgress)
from netsim.maintenance.planner import Planner, walk_members
from netsim.maintenance.records import WalkStatus
from netsim.maintenance.repository import NodeEventView, Repository
from netsim.maintenance.tables import MIN_NOTICE_S

__all__ = ["Action", "ApplyEffect", "FileEvent", "Heal", "IllegalInput", "MIN_NOTICE_S", "MaintenanceError",
           "NodeEventView", "Planner", "RemoveEvent", "Repository", "RepositoryError", "UnknownWalk",
           "UpdateEvent", "WalkInProgress", "WalkStatus", "walk_members"]
