"""An experiment's report (JSON) and the line of its live timeline.

The report (``netsim experiment run FILE --json REPORT``), every time in seconds since the
experiment began::

    {"experiment": NAME, "file": PATH, "datacenter": DC, "cloud": FLAVOR, "passed": BOOL,
     "started_at": EPOCH, "duration_s": SECONDS, "bound_s": SECONDS,
     "steps":  [{"name", "do", "phase", "due", "started", "ended", "ok", "detail", "args"}],
     "checks": [{"check", "kind", "passed", "detail"}],
     "events": [{"id", "type", "kind", "vms", "not_before", "state", "states": {STATE: t}}],
     "walks":  [{"id", "avset", "state", "states": {STATE: t}}],
     "faults": [{"id", "target", "kind", "options", "starts_at", "ends_at", "state", "states", "cleared"}],
     "load":   {STEP: {"started", "sent", "ok", "failed", "errors", "latency_ms",
                       "per_second": [[second, ok, failed], ...], "failures": [...]}},
     "exec":   {STEP: {"exit", "output"}},
     "syslog": [{"hostname", "app", "source", "message", "received"}],
     "daemon_errors": [...]}

``passed`` is true when every check passed and no step failed.
"""

from __future__ import annotations

import json
import os

from netsim.experiments.checks import Results, Verdict
from netsim.experiments.record import Recorder
from netsim.experiments.schedule import Phase, Schedule
from netsim.experiments.spec import Experiment


def build(exp: Experiment, dc_name: str, sched: Schedule, rec: Recorder, results: Results,
          verdicts: list[Verdict], ended: float, wall0: float) -> dict:
    """The JSON-ready report of one run."""
    steps = [st.to_dict() for st in sched.states.values()]
    passed = all(v.passed for v in verdicts) and all(st.ok for st in sched.states.values()
                                                       if st.phase is not Phase.SKIPPED) \
        and not any(st.phase is Phase.SKIPPED for st in sched.states.values())
    loads = {name: {"started": round(s["started"], 3), **{k: s.get(k) for k in ("sent", "ok", "failed", "errors",
                                                                                  "latency_ms", "failures")},
                    "per_second": [[p["second"], p["ok"], p["failed"]] for p in s.get("per_second", [])]}
             for name, s in results.loads.items()}
    return {"experiment": exp.name, "file": exp.source, "datacenter": dc_name, "cloud": exp.topology.cloud,
            "passed": passed, "started_at": round(wall0, 3), "duration_s": round(ended, 3), "bound_s": exp.duration,
            "steps": steps, "checks": [v.to_dict() for v in verdicts], **rec.to_dict(), "load": loads,
            "exec": {n: {"exit": results.exits.get(n), "output": out} for n, out in results.outputs.items()},
            "syslog": results.syslog}


def write_json(report: dict, path: str) -> None:
    """Write the report to ``path`` (atomically: a reader never sees half of it)."""
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def frame(now: float, sched: Schedule, rec: Recorder, handles: dict) -> str:
    """One line of the live timeline: the steps running, each VM's live event, the faults
    in force and the client's last second."""
    running = " ".join(f"{st.step.name}" for st in sched.running()) or "-"
    vms: dict[str, str] = {}
    for e in rec.events.values():
        if e.get("state") in ("Scheduled", "Started"):
            for vm in e["vms"]:
                vms[vm] = "DOWN" if e["state"] == "Started" else "notice"
    events = " ".join(f"{vm}:{s}" for vm, s in sorted(vms.items())) or "no event"
    faults = " ".join(f"{f['id']}({f.get('kind')}):{f.get('state')}" for f in rec.faults.values()
                      if f.get("state") == "active" and f.get("cleared") is None) or "no fault"
    client = ""
    for name, h in handles.items():
        if h.step.do == "load" and h.proc is not None and h.proc.poll() is None:
            last = h.load_progress()
            client += f" | {name} " + (f"{last[1]:>4} ok {last[2]:>3} failed/s" if last else "(starting)")
    done = sum(1 for st in sched.states.values() if st.phase in (Phase.ENDED, Phase.SKIPPED))
    return f"t={now:6.1f}s  steps {done}/{len(sched.states)} running: {running} | {events} | {faults}{client}"


def summary(report: dict) -> str:
    """The lines printed at the end: each step's outcome, each check's verdict, the result."""
    lines = ["== steps"]
    for s in report["steps"]:
        ended = "" if s["ended"] is None else f"{s['ended']:.1f}"
        when = "-" if s["started"] is None else f"{s['started']:.1f}-{ended}"
        lines.append(f"  {s['name']:<14} {s['do']:<12} {when:>12} s  {'ok' if s['ok'] else 'FAILED'}  {s['detail']}")
    lines.append("== checks")
    for c in report["checks"]:
        lines.append(f"  {'PASS' if c['passed'] else 'FAIL'}  {c['check']}: {c['detail']}")
    lines.append(f"== {'PASSED' if report['passed'] else 'FAILED'}: {report['experiment']} "
                 f"({report['duration_s']:.0f} s)")
    return "\n".join(lines)
