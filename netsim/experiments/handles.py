"""Carrying out one step against a running datacenter, and telling when it is over.

:func:`start` begins a step and returns a :class:`Handle`; the runner polls each running
handle with what it observed (:class:`~netsim.experiments.record.Recorder`) and ends the
step in the schedule once :meth:`Handle.poll` says it is over. Steps backed by a control
command send exactly the file's arguments (already checked by the command's registry);
``load`` runs the harness's load generator in ``client``; ``exec`` runs a program in a host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

from netsim.errors import NetsimError
from netsim.experiments.record import Recorder
from netsim.experiments.spec import DO, Step
from netsim.tools.demo import SOURCES  # the load's client addresses: the demo's

ENDED_EVENT = ("Completed", "Canceled")
IMMEDIATE = ("node_fail", "node_recover", "vm_start", "clear")
"""Steps that are over as soon as the daemon has answered them."""
OUTPUT_TAIL = 4000
"""How much of an ``exec`` step's output the report keeps (its end)."""


@dataclass
class Outcome:
    """A step is over: ``ok`` False when it failed, ``detail`` says how."""

    ok: bool = True
    detail: str = ""


@dataclass
class Handle:
    """A started step. ``answer`` is its command's answer (None for the runner's own steps)."""

    step: Step
    answer: dict | None = None
    proc: subprocess.Popen | None = None
    started: float = 0.0
    files: dict = field(default_factory=dict)

    def poll(self, now: float, rec: Recorder) -> Outcome | None:
        """None while the step goes on; its :class:`Outcome` once it is over."""
        do, a = self.step.do, self.answer or {}
        if do == "event":
            event = rec.events.get(a["event"]["event_id"], {})
            reached = [s for s in ENDED_EVENT if s in event.get("states", {})]
            return Outcome(True, f"event {reached[0]}") if reached else None
        if do == "walk":
            walk = rec.walks.get(a["walk"]["walk_id"], {})
            return Outcome(walk.get("state") == "done", f"walk {walk['state']}") \
                if walk.get("state") in ("done", "canceled") else None
        if do == "fault":
            fault = rec.faults.get(a["id"])  # None until the recorder first sees it
            if fault is not None and (fault.get("state") == "ended" or fault.get("cleared") is not None):
                return Outcome(True, "fault over")
            return None
        if do in ("load", "exec"):
            assert self.proc is not None
            if self.proc.poll() is None:
                if do == "exec" and now - self.started > self.step.args["timeout"]:
                    self.proc.kill()
                    self.proc.wait()
                    return Outcome(False, f"still running after {self.step.args['timeout']:g} s: ended")
                return None
            code = self.proc.returncode
            # An exec step's status is for the checks to judge (a client may be meant to fail);
            # the load generator exits 0 unless it broke.
            return Outcome(code == 0 or do == "exec", f"exit status {code}")
        return Outcome(True)  # IMMEDIATE: done when answered

    def stop(self) -> None:
        """End the step's process (a background load at the end: it writes its summary)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        """The end of an ``exec`` step's output."""
        path = self.files.get("output")
        if not path or not os.path.exists(path):
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - OUTPUT_TAIL))
            return f.read().decode(errors="replace")

    def load_summary(self) -> dict | None:
        """The load generator's summary, once it has exited."""
        path = self.files.get("out")
        try:
            with open(path) as f:  # type: ignore[arg-type]
                return json.load(f)
        except (OSError, ValueError, TypeError):
            return None

    def load_progress(self) -> list | None:
        """The load generator's last complete second ``[second, ok, failed]``, while it runs."""
        try:
            with open(self.files["progress"]) as f:
                return json.load(f)["per_second"][-2]
        except (OSError, ValueError, KeyError, IndexError):
            return None


def start(dc, step: Step, now: float, *, work: str, bound_left: float, lb_url: str | None,
          fault_ids: dict[str, str]) -> Handle:
    """Begin ``step`` at ``now``; NetsimError when the daemon refuses it. ``bound_left`` is
    what is left of the experiment (a background load lasts that long at most);
    ``fault_ids`` maps fault steps to the ids the daemon gave them (for ``clear``)."""
    handle = Handle(step, started=now)
    args = dict(step.args)
    if step.do == "clear":
        if args.get("all"):
            handle.answer = dc.request("fault_clear", all=True)
        else:
            handle.answer = dc.request("fault_clear", id=fault_ids[args["fault"]])
    elif step.do == "load":
        if lb_url is None:
            raise NetsimError("a load step needs the load balancer, which did not start")
        handle.files = {k: os.path.join(work, f"{step.name}.{k}.json") for k in ("progress", "out")}
        duration = args["duration"] or bound_left
        url = f"{lb_url}?delay={args['request_seconds']:g}"
        with open(os.path.join(work, f"{step.name}.err"), "wb") as err:
            handle.proc = dc.popen("client", [sys.executable, "-m", "netsim.harness.loadgen", "--url", url,
                                              "--rate", f"{args['rate']:g}", "--duration", f"{duration:g}",
                                              "--timeout", f"{args['timeout']:g}", "--source", ",".join(SOURCES),
                                              "--progress", handle.files["progress"], "--out", handle.files["out"]],
                                   stdout=subprocess.DEVNULL, stderr=err)
    elif step.do == "exec":
        command = args["command"]
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        argv = [a.replace("{python}", sys.executable) for a in argv]
        handle.files = {"output": os.path.join(work, f"{step.name}.out")}
        with open(handle.files["output"], "wb") as out:
            handle.proc = dc.popen(args["host"], argv, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT)
    else:
        handle.answer = dc.request(DO[step.do], **args)
        if step.do == "fault":
            fault_ids[step.name] = handle.answer["id"]
    return handle
