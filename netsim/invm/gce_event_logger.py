"""Log this VM's GCE maintenance to a syslog collector, with a long poll (runs inside a VM).

The GCE twin of :mod:`netsim.invm.event_logger`: instead of polling once a second it
long-polls ``/computeMetadata/v1/instance/?recursive=true`` with ``wait_for_change`` and
``last_etag``, as Google's guest agent does (``shared/reference/cloud-metadata-apis.md``
section 4.3), and sends one syslog line (UDP) for each change of ``maintenanceEvent``,
``preempted`` or ``upcomingMaintenance``: the answer comes back as soon as the value
changes, with no polling interval.

    python -m netsim.invm.gce_event_logger --syslog 198.19.255.30:514 [--duration S]

Only the standard library is used; it refuses to run in the host's own namespace.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass, field

from netsim.invm.imds import METADATA_ADDRESS, Imds, ImdsError, start_in_vm
from netsim.invm.syslog_client import UdpSyslog, parse_target

PATH = "/computeMetadata/v1/instance/?recursive=true&wait_for_change=true&timeout_sec={}&last_etag={}"
HEADERS = {"Metadata-Flavor": "Google"}
WAIT_S = 60  # the guest agent's timeout_sec; the HTTP timeout is 10 s longer


def vm_name(imds: Imds) -> str:
    """This VM's name from ``instance/name`` (what every GCE in-VM program learns first)."""
    code, body, _ = imds.request("GET", "/computeMetadata/v1/instance/name", headers=HEADERS)
    if code != 200:
        raise ImdsError(f"instance/name: HTTP {code}", code)
    return body.decode()


WATCHED = ("maintenanceEvent", "preempted", "upcomingMaintenance")
QUIET = {"maintenanceEvent": "NONE", "preempted": "FALSE", "upcomingMaintenance": {}}


@dataclass
class GceWatcher:
    """Sans-IO core: feed it each recursive ``instance/`` document, get the lines to log
    (one per watched key whose value changed; the first document logs only what is not quiet)."""

    vm: str
    seen: dict[str, object] = field(default_factory=dict)

    def observe(self, doc: dict) -> list[str]:
        """The lines for a new document."""
        out = []
        for key in WATCHED:
            value = doc.get(key)
            before = self.seen.get(key, QUIET[key])
            if value != before:
                shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
                out.append(f"GCE {key} of VM {self.vm}: {shown}")
            self.seen[key] = value
        return out


def _say(text: str) -> None:
    print(f"gce_event_logger: {text}", file=sys.stderr, flush=True)


def run(imds: Imds, sender: UdpSyslog, core: GceWatcher, *, duration: float | None = None) -> int:
    """The driver: long-poll, log what changed, poll again at once; returns the exit status."""
    def stop(*_: object) -> None:
        raise SystemExit(0)  # at once, even in the middle of a long poll (a flag would wait for it)

    signal.signal(signal.SIGTERM, stop)
    deadline = None if duration is None else time.monotonic() + duration
    etag, status = "0", 0
    while (deadline is None or time.monotonic() < deadline):
        wait = WAIT_S if deadline is None else max(1, min(WAIT_S, int(deadline - time.monotonic()) or 1))
        try:
            code, body, headers = imds.request("GET", PATH.format(wait, etag), headers=HEADERS)
        except ImdsError as exc:
            _say(f"metadata service: {exc}")
            status = 1
            time.sleep(1.0)
            continue
        if code != 200:  # 503 during maintenance: Google's samples wait 1 s
            _say(f"metadata service: HTTP {code}")
            time.sleep(1.0)
            continue
        status, etag = 0, headers.get("etag", "0")
        for line in core.observe(json.loads(body)):
            try:
                sender.send(line, msgid="GCEMAINT")
            except OSError as exc:
                _say(f"could not send to syslog {sender.target[0]}:{sender.target[1]}: {exc}")
                status = 1
                continue
            _say(f"logged {line}")
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.gce_event_logger --syslog HOST[:PORT] ...``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.gce_event_logger", description=__doc__.split("\n")[0])
    ap.add_argument("--syslog", required=True, metavar="HOST[:PORT]", help="syslog collector (UDP)")
    ap.add_argument("--rfc", choices=("5424", "3164"), default="5424", help="syslog line format")
    ap.add_argument("--tag", default="vm-maintenance", help="APP-NAME / TAG of the lines")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)
    host, port = parse_target(args.syslog)

    try:
        imds, vm = start_in_vm("gce_event_logger", None, args.metadata, name_of=vm_name)
    except ImdsError as exc:
        _say(f"cannot learn this VM's name: {exc}")
        return 1
    imds.timeout = WAIT_S + 10
    sender = UdpSyslog(host, port, hostname=vm, app=args.tag, rfc=args.rfc)
    try:
        return run(imds, sender, GceWatcher(vm), duration=args.duration)
    finally:
        sender.close()


if __name__ == "__main__":
    sys.exit(main())
