"""The timeline of an experiment, sans-IO: which steps are due at ``now``, which have ended.

The runner (:mod:`netsim.experiments.runner`) is the only one that reads a clock: it calls
:meth:`Schedule.advance` with ``now`` (seconds since the experiment began), carries out the
steps it returns, tells :meth:`Schedule.end` when each is over (a walk done, an event
completed, a program exited), and sleeps until :meth:`Schedule.next_deadline`. ``wait``
steps end here by themselves. A step ``after`` another is due ``offset`` seconds after that
one ends; a step after one that failed is skipped, and so are its own followers.

A ``load`` step without a duration is *background*: it runs until every other step has
ended (:meth:`Schedule.foreground_done`), then the runner stops it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from netsim.errors import IllegalInput
from netsim.experiments.spec import Step


class Phase(enum.Enum):
    """Where a step is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    ENDED = "ended"
    SKIPPED = "skipped"


TRANSITIONS = {
    (Phase.PENDING, "start"): Phase.RUNNING,
    (Phase.PENDING, "skip"): Phase.SKIPPED,
    (Phase.RUNNING, "end"): Phase.ENDED,
}
"""The one transition table of a step: (phase, input) -> next phase; any other pair is illegal."""


@dataclass
class StepState:
    """What happened to one step, in seconds since the experiment began."""

    step: Step
    phase: Phase = Phase.PENDING
    due: float | None = None
    """When it is due: known from the start for ``at``; once its predecessor ends for ``after``."""
    started: float | None = None
    ended: float | None = None
    ok: bool = True
    """False when it failed (refused by the daemon, timed out, exited non-zero); its followers are skipped."""
    detail: str = ""

    def feed(self, event: str) -> None:
        """Move along the table; :class:`~netsim.errors.IllegalInput` for a pair it has no row for."""
        nxt = TRANSITIONS.get((self.phase, event))
        if nxt is None:
            raise IllegalInput(self.phase, event, "a step starts once and ends once", what=f"step {self.step.name}")
        self.phase = nxt

    def to_dict(self) -> dict:
        """JSON-ready, for the report."""
        return {"name": self.step.name, "do": self.step.do, "phase": self.phase.value, "due": _round(self.due),
                "started": _round(self.started), "ended": _round(self.ended), "ok": self.ok,
                "detail": self.detail, "args": self.step.args}


def _round(t: float | None) -> float | None:
    return None if t is None else round(t, 3)


def background(step: Step) -> bool:
    """True for a step that runs until the others are over (a load with no duration)."""
    return step.do == "load" and step.args.get("duration") is None


class Schedule:
    """The steps of one experiment on one timeline; ``bound`` is the experiment's duration."""

    def __init__(self, steps: tuple[Step, ...], bound: float) -> None:
        self.bound = bound
        self.states = {s.name: StepState(s, due=s.at) for s in steps}

    def state(self, name: str) -> StepState:
        """The state of the step called ``name``."""
        return self.states[name]

    def advance(self, now: float) -> list[Step]:
        """End the ``wait`` steps that are over, and start (and return, in file order) every
        step due at ``now``. Nothing starts past the bound."""
        started: list[Step] = []
        while True:
            for st in self.states.values():
                if st.phase is Phase.RUNNING and st.step.do == "wait" and \
                        now >= st.started + st.step.args["seconds"]:  # type: ignore[operator]
                    self.end(st.step.name, st.started + st.step.args["seconds"])  # type: ignore[operator]
            due = [st for st in self.states.values()
                   if st.phase is Phase.PENDING and st.due is not None and st.due <= now < self.bound]
            if not due:
                return started
            for st in due:
                st.feed("start")
                st.started = now
                started.append(st.step)

    def end(self, name: str, now: float, ok: bool = True, detail: str = "") -> None:
        """The step ``name`` is over (``ok`` False: it failed): its followers become due
        ``offset`` seconds later, or are skipped if it failed."""
        st = self.states[name]
        st.feed("end")
        st.ended, st.ok = now, ok
        if detail:
            st.detail = detail
        self._release(name, now, ok)

    def _release(self, name: str, now: float, ok: bool) -> None:
        for other in self.states.values():
            if other.step.after == name and other.phase is Phase.PENDING:
                if ok:
                    other.due = now + other.step.offset
                else:
                    other.feed("skip")
                    other.detail = f"skipped: {name} did not succeed"
                    self._release(other.step.name, now, False)

    def running(self) -> list[StepState]:
        """The steps started and not yet ended."""
        return [st for st in self.states.values() if st.phase is Phase.RUNNING]

    def foreground_done(self) -> bool:
        """True when every step but the background ones has ended or been skipped."""
        return all(st.phase in (Phase.ENDED, Phase.SKIPPED) for st in self.states.values() if not background(st.step))

    def done(self) -> bool:
        """True when every step has ended or been skipped."""
        return all(st.phase in (Phase.ENDED, Phase.SKIPPED) for st in self.states.values())

    def next_deadline(self) -> float | None:
        """The next moment something is due here (a step's start, a wait's end, the bound);
        None when nothing is left but what the runner observes."""
        times = [st.due for st in self.states.values() if st.phase is Phase.PENDING and st.due is not None]
        times += [st.started + st.step.args["seconds"] for st in self.running()  # type: ignore[operator]
                  if st.step.do == "wait"]
        if not self.done():
            times.append(self.bound)
        return min(times) if times else None

    def expire(self, now: float) -> list[str]:
        """At the bound: end every running step as failed (a background one as over) and
        skip every pending one; returns the names of the steps that failed so."""
        cut = [st.step.name for st in self.running() if not background(st.step)]
        for st in self.running():  # a background load ends at the bound as it would at the end
            if background(st.step):
                self.end(st.step.name, now)
        for name in cut:
            self.end(name, now, ok=False, detail=f"still running at the experiment's end ({self.bound:g} s)")
        for st in self.states.values():
            if st.phase is Phase.PENDING:
                st.feed("skip")
                st.detail = "skipped: not due before the experiment's end"
        return cut
