"""Drain this VM from HAProxy before its maintenance, then approve the event (runs in a VM).

The seed README's second use (``shared/reference/cloud-metadata-apis.md`` section 1.2),
on Azure's current API (section 2):

1. on start-up (that is, after every boot) set this VM's server ``ready`` over HAProxy's
   runtime API (TCP ``198.19.255.10:9999``);
2. poll Scheduled Events once a second; on a ``Scheduled`` event whose ``Resources``
   include this VM, ``set server BACKEND/VM state drain``;
3. wait until every affected server of the backend is out of rotation (drained, or
   down) with 0 current sessions (``show stat``), at most ``--drain-timeout`` seconds,
   because approving starts the event for *all* its resources (section 2.4);
4. POST StartRequests for the event; when the event is gone (it passed, or was
   canceled) without a reboot ending this process, set the server ``ready`` again.

Events that were already Started when the agent started are the ones that rebooted
the VM: they are ignored. A Started event never seen Scheduled (no notice) is drained
for, with nothing to approve.

    python -m netsim.invm.drain_agent --lb 198.19.255.10:9999 --backend web

Everything it does goes to stderr (and, with ``--syslog HOST:PORT``, to syslog).
:class:`DrainAgent` is the sans-IO core: inputs carry ``now`` and it returns actions;
transitions live in :data:`TRANSITIONS`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from netsim.invm import runtime_api
from netsim.invm.errors import RuntimeApiError, ScenarioError
from netsim.invm.event_logger import resources_of
from netsim.invm.imds import METADATA_ADDRESS, Imds, ImdsError, retrying, start_in_vm
from netsim.invm.runtime_api import ServerStatus

POLL_INTERVAL = 1.0     # Scheduled Events, as Azure advises (section 2.5)
STATS_INTERVAL = 0.2    # show stat while draining
RETRY_INTERVAL = 1.0    # a failed runtime API or approval call is retried after this
DRAIN_TIMEOUT = 30.0
EVENT_TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")


class Phase(Enum):
    """Where the agent is."""

    STARTING = "starting"      # setting its server ready
    WATCHING = "watching"      # polling for events
    DRAINING = "draining"      # drain requested; waiting for sessions to reach 0
    APPROVING = "approving"    # POST StartRequests sent or being retried
    IMPACT = "impact"          # approved or started: waiting for the event to pass


# (phase, input) -> next phase. Any other pair is a bug in the agent (AgentError).
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.STARTING, "ready set"): Phase.WATCHING,
    (Phase.WATCHING, "event scheduled"): Phase.DRAINING,
    (Phase.WATCHING, "event started"): Phase.IMPACT,
    (Phase.DRAINING, "drained"): Phase.APPROVING,
    (Phase.DRAINING, "drain timeout"): Phase.APPROVING,
    (Phase.DRAINING, "event started"): Phase.IMPACT,
    (Phase.DRAINING, "event gone"): Phase.STARTING,
    (Phase.APPROVING, "approved"): Phase.IMPACT,
    (Phase.APPROVING, "event started"): Phase.IMPACT,
    (Phase.APPROVING, "event gone"): Phase.STARTING,
    (Phase.IMPACT, "event gone"): Phase.STARTING,
}


class AgentError(ScenarioError):
    """An input arrived that the agent's transition table does not allow (a bug)."""


@dataclass(frozen=True)
class SetState:
    """Run ``set server BACKEND/SERVER state STATE``; report with :meth:`DrainAgent.state_set`."""

    state: str


@dataclass(frozen=True)
class QueryStats:
    """Run ``show stat``; report with :meth:`DrainAgent.stats`."""


@dataclass(frozen=True)
class Approve:
    """POST StartRequests for ``event_id``; report with :meth:`DrainAgent.approved`."""

    event_id: str


@dataclass(frozen=True)
class Log:
    """Tell the operator."""

    text: str


Action = SetState | QueryStats | Approve | Log


class DrainAgent:
    """The agent's logic for VM ``vm`` whose HAProxy server is ``server`` (default: ``vm``).

    Other resources of an event are looked up in ``show stat`` under their VM names.
    """

    def __init__(self, vm: str, server: str | None = None, *, drain_timeout: float = DRAIN_TIMEOUT,
                 event_types: tuple[str, ...] = EVENT_TYPES) -> None:
        self.vm, self.server = vm, server or vm
        self.drain_timeout, self.event_types = drain_timeout, event_types
        self.phase = Phase.STARTING
        self.event_id: str | None = None
        self.resources: tuple[str, ...] = ()
        self.ignored: set[str] | None = None  # known after the first document
        self.wanted: str | None = None        # the server state the agent is after
        self.state_done = False               # ... and HAProxy has confirmed it
        self._in_flight = False               # a SetState or Approve awaits its report
        self._retry_at = 0.0
        self._stats_at = 0.0
        self._drain_deadline = 0.0
        self._waiting_logged = False
        self._last_error = ""                 # the same failure is logged once

    def _go(self, event: str) -> None:
        nxt = TRANSITIONS.get((self.phase, event))
        if nxt is None:
            raise AgentError(f"drain agent of {self.vm}: input {event!r} is not allowed in phase "
                             f"{self.phase.value!r}")
        self.phase = nxt

    def _set(self, state: str) -> SetState:
        self.wanted, self.state_done, self._in_flight = state, False, True
        return SetState(state)

    # -- inputs --------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The agent starts (after a boot): set the server ready."""
        return [Log(f"{self.vm}: starting; setting server {self.server} ready"), self._set("ready")]

    def state_set(self, state: str, ok: bool, now: float, error: str = "") -> list[Action]:
        """Report of a :class:`SetState`."""
        self._in_flight = False
        if state != self.wanted:
            return []  # superseded while it ran
        if not ok:
            self._retry_at = now + RETRY_INTERVAL
            repeated, self._last_error = error == self._last_error, error
            return [] if repeated else [Log(f"{self.vm}: could not set {self.server} {state} ({error}); "
                                            "retrying every second")]
        self.state_done, self._last_error = True, ""
        if state == "ready" and self.phase is Phase.STARTING:
            self._go("ready set")
        return [Log(f"{self.vm}: server {self.server} set {state}")]

    def document(self, doc: Mapping, now: float) -> list[Action]:
        """A Scheduled Events document."""
        mine = [e for e in doc.get("Events") or [] if isinstance(e, dict) and self.vm in resources_of(e)
                and e.get("EventType") in self.event_types]
        if self.ignored is None:
            # Started before we ran: the event that rebooted this VM. Not ours to handle.
            self.ignored = {e.get("EventId") for e in mine if e.get("EventStatus") == "Started"}
        by_id = {e.get("EventId"): e for e in mine if e.get("EventId") not in self.ignored}
        if self.phase in (Phase.DRAINING, Phase.APPROVING, Phase.IMPACT):
            event = by_id.get(self.event_id)
            if event is None:
                gone = self.event_id
                self._go("event gone")
                self.event_id, self.resources = None, ()
                return [Log(f"{self.vm}: event {gone} is gone; setting {self.server} ready again"),
                        self._set("ready")]
            if event.get("EventStatus") == "Started" and self.phase is not Phase.IMPACT:
                self._go("event started")
                return [Log(f"{self.vm}: event {self.event_id} started")]
            return []
        if self.phase is not Phase.WATCHING or not by_id:
            return []
        event = next(iter(by_id.values()))
        self.event_id = event["EventId"]
        self.resources = tuple(resources_of(event))
        if event.get("EventStatus") == "Started":
            self._go("event started")
            return [Log(f"{self.vm}: {event.get('EventType')} {self.event_id} started without notice; "
                        f"draining {self.server}"), self._set("drain")]
        self._go("event scheduled")
        self._drain_deadline = now + self.drain_timeout
        self._stats_at = now
        self._waiting_logged = False
        return [Log(f"{self.vm}: {event.get('EventType')} {self.event_id} scheduled for "
                    f"{','.join(self.resources)} NotBefore {event.get('NotBefore')}; draining {self.server}"),
                self._set("drain")]

    def stats(self, servers: Mapping[str, ServerStatus], now: float) -> list[Action]:
        """Report of a :class:`QueryStats`: the backend's servers by name."""
        self._stats_at = now + STATS_INTERVAL
        if self.phase is not Phase.DRAINING or not self.state_done:
            return []
        names = {self.server} | {r for r in self.resources if r in servers}
        if self.server not in servers:
            return [Log(f"{self.vm}: no server {self.server} in the backend; approving")] + \
                self._approve("drain timeout")
        waiting = {n: servers[n].sessions for n in names if not (servers[n].out_of_rotation and servers[n].sessions == 0)}
        if waiting:
            if self._waiting_logged:
                return []
            self._waiting_logged = True
            return [Log(f"{self.vm}: waiting for " + ", ".join(
                f"{n} ({servers[n].status}, {k} sessions)" for n, k in sorted(waiting.items())))]
        return [Log(f"{self.vm}: {', '.join(sorted(names))} drained (0 sessions)")] + self._approve("drained")

    def stats_failed(self, now: float) -> list[Action]:
        """A :class:`QueryStats` failed: try again later."""
        self._stats_at = now + RETRY_INTERVAL
        return []

    def approved(self, ok: bool, now: float, error: str = "") -> list[Action]:
        """Report of an :class:`Approve`."""
        self._in_flight = False
        if self.phase is not Phase.APPROVING:
            return []
        if not ok:
            self._retry_at = now + RETRY_INTERVAL
            return [Log(f"{self.vm}: approving {self.event_id} failed ({error}); retrying")]
        self._go("approved")
        return [Log(f"{self.vm}: approved {self.event_id} (StartRequests)")]

    def tick(self, now: float) -> list[Action]:
        """Time passed: retries, ``show stat`` while draining, the drain timeout."""
        if self._in_flight or now < self._retry_at:
            return []
        if self.phase is Phase.DRAINING and now >= self._drain_deadline:
            return [Log(f"{self.vm}: not drained within {self.drain_timeout:g} s; approving anyway")] + \
                self._approve("drain timeout")
        if self.wanted and not self.state_done:
            return [self._set(self.wanted)]
        if self.phase is Phase.DRAINING and now >= self._stats_at:
            return [QueryStats()]
        if self.phase is Phase.APPROVING:
            self._in_flight = True
            return [Approve(self.event_id or "")]
        return []

    def _approve(self, why: str) -> list[Action]:
        self._go(why)
        self._in_flight = True
        return [Approve(self.event_id or "")]


# -- driver ------------------------------------------------------------------------------

def _say(text: str, syslog=None) -> None:
    print(f"drain_agent: {text}", file=sys.stderr, flush=True)
    if syslog is not None:
        try:
            syslog.send(text, msgid="DRAIN")
        except OSError:
            pass


def run(agent: DrainAgent, imds: Imds, lb: runtime_api.Target, backend: str, *, syslog=None,
        duration: float | None = None, clock=time.monotonic, sleep=time.sleep) -> int:
    """Drive ``agent``: execute its actions, feed back their results, poll once a second."""
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    end = None if duration is None else clock() + duration
    queue: list[Action] = agent.start(clock())
    next_poll = clock()
    while not stopping and (end is None or clock() < end):
        while queue:
            action = queue.pop(0)
            now = clock()
            if isinstance(action, Log):
                _say(action.text, syslog)
            elif isinstance(action, SetState):
                try:
                    runtime_api.set_server_state(lb, backend, agent.server, action.state)
                    queue += agent.state_set(action.state, True, clock())
                except RuntimeApiError as exc:
                    queue += agent.state_set(action.state, False, clock(), str(exc))
            elif isinstance(action, QueryStats):
                try:
                    queue += agent.stats(runtime_api.show_stat(lb, backend), clock())
                except RuntimeApiError as exc:
                    _say(f"show stat failed: {exc}", syslog)
                    queue += agent.stats_failed(now)
            elif isinstance(action, Approve):
                try:
                    retrying(lambda: imds.approve([action.event_id]), attempts=3)
                    queue += agent.approved(True, clock())
                except ImdsError as exc:
                    queue += agent.approved(False, clock(), str(exc))
        now = clock()
        if now >= next_poll:
            next_poll = now + POLL_INTERVAL
            try:
                queue += agent.document(imds.scheduled_events(), now)
            except (ImdsError, ValueError) as exc:
                _say(f"metadata service: {exc}", syslog)
        queue += agent.tick(clock())
        if not queue:
            sleep(0.05)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.drain_agent --lb HOST:PORT --backend NAME [...]``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.drain_agent", description=__doc__.split("\n")[0])
    ap.add_argument("--lb", default="198.19.255.10:9999", help="HAProxy runtime API, HOST:PORT")
    ap.add_argument("--backend", default="web", help="HAProxy backend holding this VM's server")
    ap.add_argument("--server", help="this VM's server name in the backend (default: the VM's name)")
    ap.add_argument("--vm", help="this VM's name (default: asked from the metadata service)")
    ap.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT,
                    help="approve anyway after this many seconds of draining")
    ap.add_argument("--types", default=",".join(EVENT_TYPES), help="event types to drain for (comma-separated)")
    ap.add_argument("--syslog", metavar="HOST[:PORT]", help="also log to this syslog collector (UDP)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)

    try:
        imds, vm = start_in_vm("drain_agent", args.vm, args.metadata)
    except ImdsError as exc:
        _say(f"cannot learn this VM's name: {exc}")
        return 1
    syslog = None
    if args.syslog:
        from netsim.invm.syslog_client import UdpSyslog, parse_target
        host, port = parse_target(args.syslog)
        syslog = UdpSyslog(host, port, hostname=vm, app="drain-agent")
    agent = DrainAgent(vm, args.server, drain_timeout=args.drain_timeout,
                       event_types=tuple(t for t in args.types.split(",") if t))
    return run(agent, imds, runtime_api.parse_target(args.lb), args.backend, syslog=syslog,
               duration=args.duration)


if __name__ == "__main__":
    sys.exit(main())
