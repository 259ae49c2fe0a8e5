"""What an experiment is, as frozen data: its settings, its steps on one timeline, its checks.

:mod:`netsim.experiments.loader` builds an :class:`Experiment` from a TOML file; the
schedule (:mod:`netsim.experiments.schedule`) orders its steps; the runner
(:mod:`netsim.experiments.runner`) carries them out against a real datacenter; the checks
(:mod:`netsim.experiments.checks`) judge what it recorded. The allowed keys and ranges of
the file are here, each in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netsim.model.bounds import Bound
from netsim.model.topology import Datacenter

EXPERIMENT_S = Bound(0, 3600, lo_open=True, unit="seconds")
"""The bound of a whole experiment (``[experiment] duration``): it stops when it is over."""
AT_S = Bound(0, 3600, unit="seconds")
"""When a step is due (``at``), or how long after the step it follows (``offset``)."""
WAIT_S = Bound(0, 3600, unit="seconds")
"""A ``wait`` step's length."""
LOAD_TIMEOUT_S = Bound(0, 60, lo_open=True, unit="seconds")
"""How long one request of a ``load`` step may take before it counts as failed."""
LOAD_DELAY_S = Bound(0, 10, unit="seconds")
"""How long the web app takes to answer each request of a ``load`` step (``request_seconds``)."""
EXEC_TIMEOUT_S = Bound(0, 3600, lo_open=True, unit="seconds")
"""How long an ``exec`` step's program may run before it is ended (and fails)."""
FAILED_PCT = Bound(0, 100, unit="percent")
"""A ``load`` check's bound on the share of failed requests."""
COUNT = Bound(0, 10**9, integer=True)
"""A ``load`` check's bound on the number of failed requests."""
EXIT_CODE = Bound(0, 255, integer=True)
"""The exit status an ``exit`` check expects."""

DO = {
    "event": "event_add", "walk": "walk_start", "node_fail": "node_fail", "node_recover": "node_recover",
    "vm_start": "vm_start", "fault": "fault_add", "clear": "fault_clear", "wait": None, "load": None, "exec": None,
}
"""Each kind of step (``do``) and the daemon's control command behind it (None: run by the runner)."""

STEP_KEYS = {"name", "do", "at", "after", "offset"}
"""Keys every step may have; the others are the kind's (:data:`OWN_KEYS`) or its command's."""
OWN_KEYS = {"wait": {"seconds"}, "load": {"rate", "duration", "timeout", "request_seconds"},
            "exec": {"host", "command", "timeout"}, "clear": {"fault", "all"}}
"""The keys of the steps the runner carries out itself (the others are checked by their command)."""

CHECKS = {
    "load": {"step", "max_failed", "max_failed_pct"},
    "syslog": {"vm", "contains"},
    "recovered": {"step", "after", "within"},
    "event": {"step", "vm", "type", "state"},
    "exit": {"step", "code"},
    "output": {"step", "contains"},
}
"""Each kind of check (``kind``) and its keys."""
EVENT_STATES = ("Scheduled", "Started", "Completed", "Canceled")
"""The states an ``event`` check can wait for (the neutral event model's lifecycle)."""

AGENTS = ("webapp", "drain", "logger")
"""Programs an experiment may declare on every VM (``agents``); they run as the VMs'
services, so they start again after every reboot, as a real VM's would."""


@dataclass(frozen=True)
class Step:
    """One step of the timeline.

    ``at`` (seconds since the start) or ``after`` (another step's name: when that step
    ends) plus ``offset`` say when it is due; ``args`` are the kind's own keys (for a step
    with a control command: that command's arguments, checked by its registry)."""

    name: str
    do: str
    at: float | None = None
    after: str | None = None
    offset: float = 0.0
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One check, judged once the run is over (:mod:`netsim.experiments.checks`)."""

    kind: str
    args: dict[str, Any] = field(default_factory=dict)
    index: int = 0

    def describe(self) -> str:
        """A short name for the report, e.g. ``load(step=load, max_failed=0)``."""
        return f"{self.kind}({', '.join(f'{k}={v}' for k, v in self.args.items())})"


@dataclass(frozen=True)
class Experiment:
    """A whole experiment file, checked."""

    name: str
    topology: Datacenter
    """The topology to bring up (the default, or a file relative to the experiment's), with
    ``cloud`` applied; the runner adds the agents as services."""
    duration: float
    """The run's bound in seconds: steps still running then are ended and the run fails."""
    steps: tuple[Step, ...]
    checks: tuple[Check, ...] = ()
    agents: tuple[str, ...] = ()
    datacenter: str = "xp"
    """The datacenter's name (``--name`` overrides it)."""
    source: str | None = None

    def step(self, name: str) -> Step:
        """The step called ``name`` (KeyError if none)."""
        return {s.name: s for s in self.steps}[name]

    def needs_load_balancer(self) -> bool:
        """True when a ``load`` step sends requests through HAProxy to the VMs' web app."""
        return any(s.do == "load" for s in self.steps)

    def needs_syslog(self) -> bool:
        """True when a logger agent runs or a check reads what the VMs logged."""
        return "logger" in self.agents or any(c.kind == "syslog" for c in self.checks)
