"""What a fault is (issue 13): its target, kind, options and time span, checked once.

A fault is made of the options of ``netsim fault add`` (the control command
``fault_add`` takes the same keys; :data:`OPTIONS`). It is an **HTTP** fault of the
metadata service (:mod:`netsim_imds.faults`) or a **link** fault of the kernel
(:mod:`netsim.kernel.qdisc`), never both: :func:`classify` decides which from the options
and refuses every conflicting combination with one line that names the allowed ones.
``jitter`` and ``rate`` belong to both kinds: with a link option (``latency``, ``loss``...)
they shape the link, else they are the HTTP delay's jitter and the body's dribble.

Targets: a VM name, ``node:NAME`` or ``all``. A fault on a VM follows it when it moves
(Redeploy, service healing: the port is shaped again on its new node) and ends when the
VM is removed (Preempt, Terminate); a node's fault applies to the VMs on that node at each
moment (one that moves in is shaped, one that moves out is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from netsim.errors import NetsimError
from netsim.kernel.qdisc import Shape
from netsim_imds.faults import HttpFault

HTTP_ONLY = ("http", "delay", "hang", "reset", "truncate", "path", "probability")
"""Options only an HTTP fault takes."""

LINK_ONLY = ("latency", "loss", "duplicate", "reorder", "corrupt", "partition")
"""Options only a link fault takes."""

SHARED = ("jitter", "rate")
"""Options of both kinds (the other options given say which)."""

OPTIONS = HTTP_ONLY[:2] + ("jitter",) + HTTP_ONLY[2:5] + ("rate",) + LINK_ONLY + HTTP_ONLY[5:]
"""Every option, in the order of the issue's ``netsim fault add`` synopsis."""

NETEM = ("latency", "jitter", "duplicate", "reorder", "corrupt")
"""Link options that take the kernel's netem qdisc (without netem: netsim's delay line)."""

OUTCOMES = ("http", "hang", "reset", "truncate", "rate")
"""What an HTTP fault does to the answer: one at most (a delay may come before any but a hang)."""


class FaultError(NetsimError):
    """A fault was refused: a conflicting or missing option, an unknown target or fault id."""


def _flag(name: str) -> str:
    return f"--{name}"


def _flags(names) -> str:
    return ", ".join(_flag(n) for n in names)


def classify(target: str, options: dict[str, Any]) -> str:
    """The kind (``"http"`` or ``"link"``) of a fault of these options (None values are
    absent, False flags too); FaultError (one line, naming the allowed values) if they conflict."""
    given = [k for k in OPTIONS if options.get(k) is not None and options.get(k) is not False]
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise FaultError(f"no fault option {unknown[0]!r} (options: {', '.join(OPTIONS)})")
    if not given:
        raise FaultError(f"a fault needs an HTTP option ({_flags(HTTP_ONLY[:5])} or --rate) or a link option "
                         f"({_flags(LINK_ONLY)} or --rate)")
    http = [k for k in given if k in HTTP_ONLY]
    link = [k for k in given if k in LINK_ONLY]
    if http and link:
        raise FaultError(f"{_flag(http[0])} is an HTTP fault option and {_flag(link[0])} a link fault option: "
                         "one fault is of one kind; add two faults")
    if link:
        return _check_link(target, given)
    return _check_http(given, options)  # --rate alone: the HTTP body's dribble


def _check_http(given: list[str], options: dict[str, Any]) -> str:
    outcomes = [k for k in given if k in OUTCOMES]
    if len(outcomes) > 1:
        raise FaultError(f"{_flag(outcomes[0])} and {_flag(outcomes[1])} cannot go together: an HTTP fault does "
                         f"one of {_flags(OUTCOMES)} (with --delay before any but --hang)")
    if "hang" in given and "delay" in given:
        raise FaultError("--hang never answers: --delay cannot go with it (give one of them)")
    if "jitter" in given and "delay" not in given:
        raise FaultError("--jitter needs --delay (HTTP) or --latency (link)")
    path = options.get("path")
    if path is not None and not path.startswith("/"):
        raise FaultError(f"--path is a path prefix starting with '/', e.g. /metadata/instance, not {path!r}")
    return "http"


def _check_link(target: str, given: list[str]) -> str:
    if "partition" in given:
        others = [k for k in given if k != "partition"]
        if others:
            raise FaultError(f"--partition cuts the link: it takes no other option ({_flag(others[0])} given)")
        if target == "all":
            raise FaultError("--partition takes a VM (cut from its metadata service) or node:NAME (cut from "
                             "the fabric), not all")
    if "jitter" in given and "latency" not in given:
        raise FaultError("--jitter needs --latency on a link fault")
    if "reorder" in given and "latency" not in given:
        raise FaultError("--reorder needs --latency (netem reorders by sending some packets without the delay)")
    return "link"


def scope(target: str) -> tuple[str, str | None]:
    """``("all", None)``, ``("node", NAME)`` or ``("vm", NAME)`` of a target (not checked
    against the topology here)."""
    if target == "all":
        return "all", None
    if target.startswith("node:"):
        return "node", target[5:]
    return "vm", target


@dataclass(frozen=True)
class Fault:
    """One fault: ``id`` (``fault-N``), ``target``, ``kind``, the ``options`` given (wire
    keys, absent ones left out), ``starts_at`` and ``ends_at`` (epoch seconds; None:
    until cleared)."""

    id: str
    target: str
    kind: str
    options: tuple[tuple[str, Any], ...]
    starts_at: float
    ends_at: float | None

    def get(self, name: str, default: Any = None) -> Any:
        """One option's value (``default`` when not given)."""
        return dict(self.options).get(name, default)

    def state(self, now: float) -> str:
        """``pending``, ``active`` or ``ended`` at ``now``."""
        if now < self.starts_at:
            return "pending"
        return "ended" if self.ends_at is not None and now >= self.ends_at else "active"

    def to_dict(self, now: float) -> dict:
        """The fault as ``fault_list`` answers it."""
        return {"id": self.id, "target": self.target, "kind": self.kind, **dict(self.options),
                "starts_at": self.starts_at, "ends_at": self.ends_at, "state": self.state(now)}

    @classmethod
    def from_dict(cls, d: dict) -> "Fault":
        """A fault from :meth:`to_dict`'s output (the repository stores that)."""
        options = tuple((k, d[k]) for k in OPTIONS if k in d)
        return cls(d["id"], d["target"], d["kind"], options, d["starts_at"], d["ends_at"])

    def http_fault(self) -> HttpFault:
        """The metadata service's view of an HTTP fault."""
        where, name = scope(self.target)
        return HttpFault(self.id, vm=name if where == "vm" else None, node=name if where == "node" else None,
                         status=self.get("http"), delay_s=self.get("delay", 0.0) / 1000,
                         jitter_s=self.get("jitter", 0.0) / 1000, hang=self.get("hang", False),
                         reset=self.get("reset", False), truncate=self.get("truncate"), rate=self.get("rate"),
                         path=self.get("path") or "", probability=self.get("probability", 1.0),
                         starts_at=self.starts_at, ends_at=self.ends_at)

    def shape(self) -> Shape | None:
        """The qdisc of a link fault's ports (None: it shapes nothing, e.g. loss alone)."""
        s = Shape(latency_ms=self.get("latency", 0.0), jitter_ms=self.get("jitter", 0.0),
                  duplicate=self.get("duplicate", 0.0), reorder=self.get("reorder", 0.0),
                  corrupt=self.get("corrupt", 0.0), rate=self.get("rate"))
        return s if s.netem or s.rate else None

    @property
    def needs_netem(self) -> bool:
        """Whether it takes netem (or, on a kernel without netem, netsim's delay line)."""
        return self.kind == "link" and any(self.get(k) for k in NETEM)
