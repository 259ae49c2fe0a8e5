"""Judging an experiment's checks from what it recorded. Pure: runs after the run is over.

Kinds (``[[check]] kind = ...``):

- ``load``: the load step's failed requests stay at most ``max_failed`` (a count) and/or
  ``max_failed_pct`` (percent of those sent).
- ``syslog``: VM ``vm`` logged a line (optionally one that ``contains`` a text) to the
  collector in ``ops``; the logger agent sends what the VM saw of its events.
- ``recovered``: the client ``step`` recovered within ``within`` seconds of the end of the
  step ``after`` (e.g. a fault): an exec step exited 0 by then; a load step had no failed
  request in any second that began after that.
- ``event``: an event (the event step's, or any of VM ``vm`` of ``type``) reached ``state``.
- ``exit``: an exec step exited with ``code`` (default 0).
- ``output``: an exec step's output (its last 4,000 bytes) ``contains`` a text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netsim.experiments.record import Recorder
from netsim.experiments.schedule import Schedule
from netsim.experiments.spec import Check


@dataclass
class Results:
    """What the runner collected besides the recorder: per step, a load summary (with
    ``started``: the step's start, in experiment seconds) or an exec status; syslog lines."""

    loads: dict[str, dict] = field(default_factory=dict)
    exits: dict[str, int | None] = field(default_factory=dict)
    event_ids: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    """The end of each exec step's output."""
    syslog: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """One check's outcome; ``detail`` is one line a reader can act on."""

    check: Check
    passed: bool
    detail: str

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"check": self.check.describe(), "kind": self.check.kind, "passed": self.passed,
                "detail": self.detail}


def judge(check: Check, schedule: Schedule, rec: Recorder, results: Results) -> Verdict:
    """The verdict of one check."""
    passed, detail = _JUDGES[check.kind](check.args, schedule, rec, results)
    return Verdict(check, passed, detail)


def _load(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    summary = results.loads.get(a["step"])
    if not summary or not summary.get("sent"):
        return False, f"load step {a['step']} sent no request (did it run?)"
    sent, failed = summary["sent"], summary["failed"]
    pct = 100.0 * failed / sent
    problems = []
    if a.get("max_failed") is not None and failed > a["max_failed"]:
        problems.append(f"more than {a['max_failed']}")
    if a.get("max_failed_pct") is not None and pct > a["max_failed_pct"]:
        problems.append(f"more than {a['max_failed_pct']:g} %")
    errors = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("errors", {}).items()))
    line = f"{failed} of {sent} requests failed ({pct:.2f} %)" + (f": {errors}" if errors else "")
    return not problems, line + (f"; {' and '.join(problems)}" if problems else "")


def _syslog(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    mine = [ln for ln in results.syslog if ln.get("hostname") == a["vm"]]
    want = a.get("contains")
    found = [ln for ln in mine if want is None or want in ln.get("message", "")]
    if found:
        return True, f"{a['vm']} logged: {found[0]['message'][:160]}"
    return False, (f"{a['vm']} logged {len(mine)} line(s), none containing {want!r}" if want is not None
                   else f"{a['vm']} logged nothing")


def _recovered(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    cause, client = schedule.state(a["after"]), schedule.state(a["step"])
    if cause.ended is None:
        return False, f"step {a['after']} never ended, so nothing could recover after it"
    if client.step.do == "exec":
        if client.ended is None or results.exits.get(a["step"]) != 0:
            return False, f"client {a['step']} did not succeed ({client.detail or 'it did not end'})"
        took = max(0.0, client.ended - cause.ended)
    else:
        summary = results.loads.get(a["step"])
        if not summary:
            return False, f"load step {a['step']} has no summary"
        first = summary["started"]
        # The last second with a failed request, among those that began after the cause started.
        began = cause.started or 0.0
        bad = [s["second"] for s in summary["per_second"] if s["failed"] and first + s["second"] + 1 > began]
        took = max(0.0, first + bad[-1] + 1 - cause.ended) if bad else 0.0
    ok = took <= a["within"]
    return ok, f"{a['step']} recovered {took:.1f} s after {a['after']} ended ({'within' if ok else 'beyond'} " \
               f"{a['within']:g} s)"


def _event(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    if a.get("step"):
        ids = [results.event_ids[a["step"]]] if a["step"] in results.event_ids else []
        what = f"the event of step {a['step']}"
    else:
        kind = (a.get("type") or "").lower()
        ids = [i for i, e in rec.events.items() if a["vm"] in e["vms"]
               and (not kind or kind in (str(e["type"]).lower(), str(e["kind"]).lower()))]
        what = f"an event of {a['vm']}" + (f" of type {a['type']}" if a.get("type") else "")
    for i in ids:
        if a["state"] in rec.events.get(i, {}).get("states", {}):
            return True, f"{i} was {a['state']} at {rec.events[i]['states'][a['state']]:.1f} s"
    seen = {i: sorted(rec.events.get(i, {}).get("states", {}), key=rec.events.get(i, {}).get("states", {}).get)
            for i in ids}
    return False, f"{what} never reached {a['state']} (seen: {seen or 'no such event'})"


def _exit(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    code = results.exits.get(a["step"])
    return code == a["code"], f"{a['step']} exited with {code if code is not None else 'nothing (it did not end)'}" \
                              f" (expected {a['code']})"


def _output(a: dict, schedule: Schedule, rec: Recorder, results: Results) -> tuple[bool, str]:
    found = a["contains"] in results.outputs.get(a["step"], "")
    return found, f"the output of {a['step']} {'holds' if found else 'lacks'} {a['contains']!r}"


_JUDGES = {"load": _load, "syslog": _syslog, "recovered": _recovered, "event": _event, "exit": _exit,
           "output": _output}
