"""Drain this VM from HAProxy before its EC2 maintenance or interruption (runs in a VM).

The AWS twin of :mod:`netsim.invm.drain_agent`. EC2 has no approval: over IMDSv2 the
agent polls, once a second, ``events/maintenance/scheduled``, ``spot/instance-action``
and ``autoscaling/target-lifecycle-state`` (:mod:`netsim.invm.aws_event_logger`'s
session and paths), and

1. on start-up (after every boot) sets this VM's server ``ready`` over HAProxy's runtime
   API (TCP ``198.19.255.10:9999``);
2. as soon as a scheduled event, a spot interruption or a ``Terminated`` lifecycle state
   is announced, sets it ``drain``;
3. when all are quiet again and the VM was not restarted (``system-maintenance`` pauses
   it), sets it ``ready`` again; a reboot restarts the VM, and step 1 does it.

    python -m netsim.invm.aws_drain_agent --lb 198.19.255.10:9999 --backend web --server "$NETSIM_VM"

:class:`AwsDrain` is the sans-IO core (answers in, HAProxy states out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass

from netsim.invm import runtime_api
from netsim.invm.aws_event_logger import PATHS, Session
from netsim.invm.imds import METADATA_ADDRESS, ImdsError, start_in_vm

POLL_S = 1.0


@dataclass
class AwsDrain:
    """Sans-IO core: :meth:`answers` takes one round of answers (None for a 404) and
    returns the server state to set now (``"drain"``, ``"ready"``) or None."""

    draining: bool = False

    @staticmethod
    def coming(answers: dict[str, str | None]) -> bool:
        """Whether maintenance or an interruption is announced."""
        return (bool(json.loads(answers.get("scheduled") or "[]")) or bool(answers.get("spot"))
                or answers.get("lifecycle") not in (None, "InService"))

    def answers(self, answers: dict[str, str | None]) -> str | None:
        """The state to set for these answers (None: keep the current one)."""
        coming = self.coming(answers)
        if coming != self.draining:
            self.draining = coming
            return "drain" if coming else "ready"
        return None


def _say(text: str) -> None:
    print(f"aws_drain_agent: {text}", file=sys.stderr, flush=True)


def _set(lb: runtime_api.Target, backend: str, server: str, state: str) -> None:
    """Set the server's state, retried once a second until HAProxy takes it."""
    runtime_api.set_server_state_until_taken(lb, backend, server, state, _say)


def run(session: Session, lb: runtime_api.Target, backend: str, server: str, duration: float | None = None) -> int:
    """The driver: ready at start, then a poll a second; returns the exit status."""
    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    end = None if duration is None else time.monotonic() + duration
    _set(lb, backend, server, "ready")
    core = AwsDrain()
    while end is None or time.monotonic() < end:
        try:
            state = core.answers({name: session.get(path) for name, path in PATHS.items() if name != "rebalance"})
        except ImdsError as exc:
            _say(f"metadata service: {exc}")
            state = None
        if state is not None:
            _set(lb, backend, server, state)
        time.sleep(POLL_S)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.aws_drain_agent --lb HOST:PORT --backend NAME --server NAME``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.aws_drain_agent", description=__doc__.split("\n")[0])
    ap.add_argument("--lb", default="198.19.255.10:9999", help="HAProxy runtime API, HOST:PORT")
    ap.add_argument("--backend", default="web", help="HAProxy backend holding this VM's server")
    ap.add_argument("--server", default=os.environ.get("NETSIM_VM"),
                    help="this VM's server name in the backend (default: $NETSIM_VM, which netsim's services get)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)
    if not args.server:
        ap.error("give --server NAME (EC2's metadata has no VM name; netsim's services get $NETSIM_VM)")
    try:
        imds, _ = start_in_vm("aws_drain_agent", args.server, args.metadata)
    except ImdsError as exc:
        _say(f"cannot reach the metadata service: {exc}")
        return 1
    return run(Session(imds), runtime_api.parse_target(args.lb), args.backend, args.server, args.duration)


if __name__ == "__main__":
    sys.exit(main())
