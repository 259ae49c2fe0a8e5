"""Log each new Scheduled Event of this VM once to a syslog collector (runs inside a VM).

The Python twin of ``scripts/is-vm-in-maint.sh`` on Azure's current API
(``shared/reference/cloud-metadata-apis.md`` section 2): poll
``/metadata/scheduledevents`` once a second as Azure advises (section 2.5), look at the
events only when ``DocumentIncarnation`` changes, and send one syslog line (RFC 5424 or
RFC 3164, UDP) per new EventId whose ``Resources`` include this VM (events are broadcast
to the whole availability set, section 2.2; ``--all`` logs every visible event).

    python -m netsim.invm.event_logger --loop --syslog 198.19.255.30:514
    python -m netsim.invm.event_logger --once --syslog 198.19.255.30:514 --state /var/lib/x.ids

``--once`` polls one document and exits; with ``--state FILE`` the EventIds already
logged are kept in FILE, so cron-style repeated runs still log each event once. Only the
standard library is used; it refuses to run in the host's own namespace.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from netsim.invm.imds import METADATA_ADDRESS, Imds, ImdsError, retrying, start_in_vm
from netsim.invm.syslog_client import UdpSyslog, parse_target

POLL_INTERVAL = 1.0  # Azure's advice (section 2.5): notice can be as short as 30 s
DEFAULT_TAG = "vm-maintenance"


@dataclass(frozen=True)
class LogRecord:
    """A line to send for one event."""

    event_id: str
    message: str


def resources_of(event: dict) -> list[str]:
    """The VM names of an event (older API versions prefix them with ``_``)."""
    return [r[1:] if r.startswith("_") else r for r in event.get("Resources") or [] if isinstance(r, str)]


def describe(event: dict, vm: str) -> str:
    """The syslog message for ``event`` as seen by ``vm``."""
    resources = resources_of(event)
    who = f"VM {vm}" if vm in resources else f"VMs {','.join(resources) or '-'} (seen by {vm})"
    text = (f"Scheduled event {event.get('EventType', '?')} for {who}: EventId {event.get('EventId')} "
            f"status {event.get('EventStatus', '?')} NotBefore {event.get('NotBefore') or '-'}")
    if event.get("Description"):
        text += f" ({event['Description']})"
    return text


@dataclass
class EventLogger:
    """Sans-IO core: feed it documents, get the lines to log.

    The events are looked at only when ``DocumentIncarnation`` changes (the same
    incarnation means the same content, section 2.2). An EventId counts as logged only
    when the driver confirms it with :meth:`sent`; :meth:`send_failed` makes the next
    document be looked at again, so a lost send is retried.
    """

    vm: str
    only_mine: bool = True
    logged: set[str] = field(default_factory=set)
    incarnation: int | None = None

    def observe(self, doc: dict) -> list[LogRecord]:
        """The records to log for a new document (empty when nothing is new)."""
        incarnation = doc.get("DocumentIncarnation")
        if incarnation is not None and incarnation == self.incarnation:
            return []
        self.incarnation = incarnation
        out = []
        for event in doc.get("Events") or []:
            event_id = event.get("EventId") if isinstance(event, dict) else None
            if not event_id or event_id in self.logged:
                continue
            if self.only_mine and self.vm not in resources_of(event):
                continue
            out.append(LogRecord(event_id, describe(event, self.vm)))
        return out

    def sent(self, event_id: str) -> None:
        """The line for ``event_id`` went out: never log it again."""
        self.logged.add(event_id)

    def send_failed(self) -> None:
        """A line could not be sent: look at the next document even if unchanged."""
        self.incarnation = None


def read_state(path: str | None) -> set[str]:
    """EventIds recorded in ``path`` (one a line)."""
    if not path:
        return set()
    try:
        with open(path) as f:
            return {line.strip() for line in f if line.strip()}
    except FileNotFoundError:
        return set()


def record_state(path: str | None, event_id: str) -> None:
    """Append ``event_id`` to ``path``."""
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(event_id + "\n")


def _say(text: str) -> None:
    print(f"event_logger: {text}", file=sys.stderr, flush=True)


def run(imds: Imds, sender: UdpSyslog, core: EventLogger, *, once: bool, state: str | None,
        interval: float = POLL_INTERVAL, duration: float | None = None) -> int:
    """The driver: poll, log what is new, sleep; returns the exit status."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    deadline = None if duration is None else time.monotonic() + duration
    status = 0
    while not stopping:
        try:
            doc = retrying(imds.scheduled_events, attempts=3)
        except ImdsError as exc:
            _say(f"metadata service: {exc}")
            status = 1
        else:
            status = 0
            for record in core.observe(doc):
                try:
                    sender.send(record.message, msgid="SCHEDEVT")
                except OSError as exc:
                    _say(f"could not send to syslog {sender.target[0]}:{sender.target[1]}: {exc}")
                    core.send_failed()
                    status = 1
                    continue
                core.sent(record.event_id)
                record_state(state, record.event_id)
                _say(f"logged {record.message}")
        if once or (deadline is not None and time.monotonic() >= deadline):
            break
        time.sleep(interval)
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.event_logger --once|--loop --syslog HOST[:PORT] ...``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.event_logger", description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="poll one document, log what is new, exit")
    mode.add_argument("--loop", action="store_true", help="poll every --interval seconds until SIGTERM")
    ap.add_argument("--syslog", required=True, metavar="HOST[:PORT]", help="syslog collector (UDP)")
    ap.add_argument("--rfc", choices=("5424", "3164"), default="5424", help="syslog line format")
    ap.add_argument("--tag", default=DEFAULT_TAG, help="APP-NAME / TAG of the lines")
    ap.add_argument("--state", help="file of EventIds already logged (kept across runs)")
    ap.add_argument("--all", action="store_true", help="log every visible event, not only this VM's")
    ap.add_argument("--vm", help="this VM's name (default: asked from the metadata service)")
    ap.add_argument("--interval", type=float, default=POLL_INTERVAL, help="seconds between polls")
    ap.add_argument("--duration", type=float, help="with --loop: stop after this many seconds")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)

    host, port = parse_target(args.syslog)
    try:
        imds, vm = start_in_vm("event_logger", args.vm, args.metadata)
    except ImdsError as exc:
        _say(f"cannot learn this VM's name: {exc}")
        return 1
    sender = UdpSyslog(host, port, hostname=vm, app=args.tag, rfc=args.rfc)
    core = EventLogger(vm, only_mine=not args.all, logged=read_state(args.state))
    try:
        return run(imds, sender, core, once=args.once, state=args.state, interval=args.interval,
                   duration=args.duration)
    finally:
        sender.close()


if __name__ == "__main__":
    sys.exit(main())
