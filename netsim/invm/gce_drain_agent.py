"""Drain this VM from HAProxy before its GCE maintenance, with a long poll (runs in a VM).

The GCE twin of :mod:`netsim.invm.drain_agent`. GCE has no approval: the agent long-polls
``/computeMetadata/v1/instance/?recursive=true`` (``wait_for_change``, ``last_etag``) and

1. on start-up (after every boot) sets this VM's server ``ready`` over HAProxy's runtime
   API (TCP ``198.19.255.10:9999``);
2. as soon as ``upcomingMaintenance`` shows a window or ``maintenanceEvent`` is not
   ``NONE`` (a live migration or termination is coming), sets it ``drain``;
3. when both are quiet again and the VM was not restarted (a live migration pauses it),
   sets it ``ready`` again. A termination restarts the VM, and step 1 does it.

    python -m netsim.invm.gce_drain_agent --lb 198.19.255.10:9999 --backend web

:class:`GceDrain` is the sans-IO core (documents in, HAProxy states out).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass

from netsim.invm import runtime_api
from netsim.invm.gce_event_logger import HEADERS, PATH, WAIT_S, vm_name
from netsim.invm.imds import METADATA_ADDRESS, Imds, ImdsError, start_in_vm


@dataclass
class GceDrain:
    """Sans-IO core: :meth:`document` takes each recursive ``instance/`` document and
    returns the server state to set now (``"drain"``, ``"ready"``) or None."""

    draining: bool = False

    @staticmethod
    def coming(doc: dict) -> bool:
        """Whether maintenance is announced in ``doc``."""
        return bool(doc.get("upcomingMaintenance")) or doc.get("maintenanceEvent", "NONE") != "NONE"

    def document(self, doc: dict) -> str | None:
        """The state to set for this document (None: keep the current one)."""
        coming = self.coming(doc)
        if coming and not self.draining:
            self.draining = True
            return "drain"
        if not coming and self.draining:
            self.draining = False
            return "ready"
        return None


def _say(text: str) -> None:
    print(f"gce_drain_agent: {text}", file=sys.stderr, flush=True)


def _set(lb: runtime_api.Target, backend: str, server: str, state: str) -> None:
    """Set the server's state, retried once a second until HAProxy takes it."""
    runtime_api.set_server_state_until_taken(lb, backend, server, state, _say)


def run(imds: Imds, lb: runtime_api.Target, backend: str, server: str, duration: float | None = None) -> int:
    """The driver: ready at start, then long polls; returns the exit status."""
    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    end = None if duration is None else time.monotonic() + duration
    _set(lb, backend, server, "ready")
    core, etag = GceDrain(), "0"
    while end is None or time.monotonic() < end:
        try:
            code, body, headers = imds.request("GET", PATH.format(WAIT_S, etag), headers=HEADERS)
        except ImdsError as exc:
            _say(f"metadata service: {exc}")
            time.sleep(1.0)
            continue
        if code != 200:
            time.sleep(1.0)
            continue
        etag = headers.get("etag", "0")
        state = core.document(json.loads(body))
        if state is not None:
            _set(lb, backend, server, state)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.gce_drain_agent --lb HOST:PORT --backend NAME``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.gce_drain_agent", description=__doc__.split("\n")[0])
    ap.add_argument("--lb", default="198.19.255.10:9999", help="HAProxy runtime API, HOST:PORT")
    ap.add_argument("--backend", default="web", help="HAProxy backend holding this VM's server")
    ap.add_argument("--server", help="this VM's server name in the backend (default: the VM's name)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM)")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)

    try:
        imds, vm = start_in_vm("gce_drain_agent", None, args.metadata, name_of=vm_name)
    except ImdsError as exc:
        _say(f"cannot learn this VM's name: {exc}")
        return 1
    imds.timeout = WAIT_S + 10
    return run(imds, runtime_api.parse_target(args.lb), args.backend, args.server or vm, args.duration)


if __name__ == "__main__":
    sys.exit(main())
