"""The driver of an experiment: the only part that reads a clock, sleeps and talks to a datacenter.

:func:`run` brings up the experiment's own datacenter (the topology with the agents
declared as every VM's services, so they start again after each reboot), starts what the
steps need (HAProxy in ``lb`` for ``load`` steps, rsyslog in ``ops`` for the logger agent),
then loops: observe the daemon (events, walks, faults), end the steps that are over,
start the steps the :class:`~netsim.experiments.schedule.Schedule` says are due, show a
line of the live timeline every second, sleep until the next deadline (at most
``interval``). It stops when every step is over or at the experiment's bound, judges the
checks and tears down everything it brought up, whatever happened.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

from netsim.api import datacenter as dcapi
from netsim.errors import NetsimError, StateError
from netsim.experiments import handles, report
from netsim.experiments.checks import Results, judge
from netsim.experiments.record import Recorder
from netsim.experiments.schedule import Schedule, background
from netsim.experiments.spec import Experiment
from netsim.harness.haproxy import start_load_balancer
from netsim.harness.loadgen import add_source_addresses
from netsim.harness.syslog import start_collector
from netsim.model.addressing import EXTRA_HOST_ADDRESSES
from netsim.model.topology import Datacenter
from netsim.state import StateDir
from netsim.tools import demo

LOGGERS = {"azure": "-m netsim.invm.event_logger --loop --interval 0.5 --syslog {syslog} --state {state}/$NETSIM_VM",
           "aws": "-m netsim.invm.aws_event_logger --interval 1 --syslog {syslog}",
           "gcp": "-m netsim.invm.gce_event_logger --syslog {syslog}"}
"""The event logger of each flavor (``agents = ["logger"]``): it sends what the VM sees of
its events to the collector in ``ops``."""
AGENTS_READY_S = 30.0
"""How long the drain agents may take to set their servers ready before the run starts."""


def topology_of(exp: Experiment, name: str) -> Datacenter:
    """The experiment's topology named ``name``, with its agents as every VM's services: the
    web app (for load steps) and the drain agent as the demo declares them, the logger."""
    topo = replace(exp.topology, name=name)
    if "webapp" in exp.agents or "drain" in exp.agents or exp.needs_load_balancer():
        topo = replace(demo.scenario_topology("drain" in exp.agents, topo), timers=exp.topology.timers)
    if "logger" in exp.agents:
        state = os.path.join(StateDir(name).path, "logger")
        line = LOGGERS.get(topo.cloud, LOGGERS["azure"]).format(syslog=EXTRA_HOST_ADDRESSES["ops"], state=state)
        topo = replace(topo, vms=tuple(replace(v, services=v.services + (f"mkdir -p {state}; {sys.executable} {line}",))
                                       for v in topo.vms))
    return topo


def run(exp: Experiment, *, name: str | None = None, show: Callable[[str], None] | None = None,
        interval: float = 0.25) -> dict:
    """Run ``exp`` on a datacenter of its own (``name``, default the file's ``datacenter``)
    and return the report (:mod:`netsim.experiments.report`); the datacenter is torn down
    before this returns, whatever happened."""
    dc = dcapi.up(topology_of(exp, name or exp.datacenter))
    try:
        return _Run(exp, dc, show, interval).go()
    finally:
        dc.down()


def service_log(dc: dcapi.RunningDatacenter, vm: str) -> str:
    """What the VM's services wrote so far (``services/VM.log`` in the state folder)."""
    path = dc.state.file(os.path.join("services", f"{vm}.log"))
    return open(path, errors="replace").read() if os.path.exists(path) else ""


class _Run:
    def __init__(self, exp: Experiment, dc: dcapi.RunningDatacenter, show, interval: float) -> None:
        self.exp, self.dc, self.show, self.interval = exp, dc, show, interval
        self.handles: dict[str, handles.Handle] = {}
        self.fault_ids: dict[str, str] = {}
        self.results = Results()
        self.lb = self.collector = None
        self.uses_faults = any(s.do in ("fault", "clear") for s in exp.steps)
        self.t0 = time.monotonic()

    def go(self) -> dict:
        exp, dc = self.exp, self.dc
        try:
            self._setup()
            work = tempfile.mkdtemp(prefix="experiment-", dir=dc.state.path)
            self.t0, wall0 = time.monotonic(), time.time()
            sched, rec = Schedule(exp.steps, exp.duration), Recorder(wall0)
            shown = -1.0
            while True:
                now = self.now()
                self._observe(now, rec)
                self._end_finished(now, sched, rec)
                if sched.foreground_done():
                    for st in sched.running():
                        if background(st.step):
                            self.handles[st.step.name].stop()
                    self._end_finished(now, sched, rec)
                for step in sched.advance(now):
                    self._start(step, now, sched, work)
                if self.show and now - shown >= 1.0:
                    shown = now
                    self.show(report.frame(now, sched, rec, self.handles))
                if sched.done():
                    break
                if now >= exp.duration:
                    for st in sched.running():
                        if st.step.name in self.handles:
                            self.handles[st.step.name].stop()
                    sched.expire(now)
                    break
                deadline = sched.next_deadline()
                wait = self.interval if deadline is None else min(self.interval, deadline - now)
                time.sleep(max(0.01, wait))
            ended = self.now()
            self._observe(ended, rec)
            self._collect()
            verdicts = [judge(c, sched, rec, self.results) for c in exp.checks]
            return report.build(exp, dc.name, sched, rec, self.results, verdicts, ended, wall0)
        finally:
            for h in self.handles.values():
                h.stop()
            if self.lb is not None:
                self.lb.stop()
            if self.collector is not None:
                self.collector.stop()

    def now(self) -> float:
        """Seconds since the experiment began (the one clock of the run)."""
        return time.monotonic() - self.t0

    def _setup(self) -> None:
        dc, exp = self.dc, self.exp
        if exp.needs_load_balancer():
            self.lb = start_load_balancer(dc)
            self.lb.wait_up(timeout=20)
            add_source_addresses(dc, demo.SOURCES)
        if exp.needs_syslog():
            self.collector = start_collector(dc)
        if "drain" in exp.agents:
            deadline = time.monotonic() + AGENTS_READY_S
            while not all("set ready" in service_log(dc, v.name) for v in dc.topology.vms):
                if time.monotonic() > deadline:
                    raise StateError(f"the drain agents did not set their servers ready within {AGENTS_READY_S:g} s; "
                                     f"see {dc.state.file('services')}")
                time.sleep(0.1)

    def _observe(self, now: float, rec: Recorder) -> None:
        try:
            rec.observe_snapshot(now, self.dc.request("snapshot"))
            rec.observe_events(now, self.dc.request("events"))
            if self.uses_faults:
                rec.observe_faults(now, self.dc.request("fault_list"))
        except (TimeoutError, NetsimError) as exc:  # a busy daemon: the next poll sees it
            if f"poll: {exc}" not in rec.errors:
                rec.errors.append(f"poll: {exc}")

    def _start(self, step, now: float, sched: Schedule, work: str) -> None:
        if step.do == "wait":  # the schedule ends it
            return
        try:
            h = handles.start(self.dc, step, now, work=work, bound_left=self.exp.duration - now,
                              lb_url=self.lb.url if self.lb else None, fault_ids=self.fault_ids)
        except (NetsimError, TimeoutError, OSError) as exc:
            sched.end(step.name, now, ok=False, detail=f"refused: {' '.join(str(exc).split())}")
            return
        self.handles[step.name] = h
        if step.do in handles.IMMEDIATE:  # over once answered
            sched.end(step.name, self.now())
        if step.do == "event":
            self.results.event_ids[step.name] = h.answer["event"]["event_id"]

    def _end_finished(self, now: float, sched: Schedule, rec: Recorder) -> None:
        for st in sched.running():
            h = self.handles.get(st.step.name)
            if h is None:  # a wait
                continue
            outcome = h.poll(now, rec)
            if outcome is not None:
                sched.end(st.step.name, now, outcome.ok, outcome.detail)

    def _collect(self) -> None:
        for name, h in self.handles.items():
            if h.step.do == "exec":
                self.results.exits[name] = h.proc.returncode if h.proc else None
                self.results.outputs[name] = h.output()
            elif h.step.do == "load":
                h.stop()
                summary = h.load_summary()
                if summary is not None:
                    self.results.loads[name] = {**summary, "started": h.started}
        if self.collector is not None:
            self.results.syslog = [{"hostname": ln.hostname, "app": ln.app, "source": ln.source,
                                    "message": ln.message, "received": ln.received} for ln in self.collector.lines()]
