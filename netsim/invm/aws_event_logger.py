"""Log this VM's EC2 maintenance, spot and rebalance notices to a syslog collector (runs inside a VM).

The AWS twin of :mod:`netsim.invm.event_logger`: over IMDSv2 (a session token, renewed
before it expires) it polls, every ``--interval`` seconds (AWS advises 5 s for spot
notices, ``shared/reference/cloud-metadata-apis.md`` section 3.3),
``events/maintenance/scheduled``, ``spot/instance-action``,
``events/recommendations/rebalance`` and ``autoscaling/target-lifecycle-state``, and
sends one syslog line (UDP) per new scheduled EventId, spot action, rebalance
recommendation or lifecycle state.

    python -m netsim.invm.aws_event_logger --syslog 198.19.255.30:514 [--interval 1] [--duration S]

Only the standard library is used; it refuses to run in the host's own namespace.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass, field

from netsim.invm.imds import METADATA_ADDRESS, Imds, ImdsError, patiently, start_in_vm
from netsim.invm.syslog_client import UdpSyslog, parse_target

TOKEN_TTL = 21600
RENEW_BEFORE = 60.0  # as ec2-metadata does: a new token a minute before the old one expires
PATHS = {"scheduled": "/latest/meta-data/events/maintenance/scheduled",
         "spot": "/latest/meta-data/spot/instance-action",
         "rebalance": "/latest/meta-data/events/recommendations/rebalance",
         "lifecycle": "/latest/meta-data/autoscaling/target-lifecycle-state"}


@dataclass
class AwsWatcher:
    """Sans-IO core: feed it what each path answered (None for a 404), get the lines to log."""

    vm: str
    seen: set[str] = field(default_factory=set)

    def observe(self, answers: dict[str, str | None]) -> list[str]:
        """The lines for one round of answers (each notice is logged once)."""
        notices = []
        for event in json.loads(answers.get("scheduled") or "[]"):
            notices.append((f"event {event['EventId']}", f"AWS scheduled event {event['EventId']} of VM {self.vm}: "
                            f"{event['Code']} NotBefore {event['NotBefore']}"))
        if spot := answers.get("spot"):
            action = json.loads(spot)
            notices.append((f"spot {spot}", f"AWS spot interruption of VM {self.vm}: {action['action']} at "
                            f"{action['time']}"))
        if rebalance := answers.get("rebalance"):
            notices.append((f"rebalance {rebalance}", f"AWS rebalance recommendation of VM {self.vm}: "
                            f"{json.loads(rebalance)['noticeTime']}"))
        if (state := answers.get("lifecycle")) and state != "InService":
            notices.append((f"lifecycle {state}", f"AWS target lifecycle state of VM {self.vm}: {state}"))
        out = [line for key, line in notices if key not in self.seen]
        self.seen.update(key for key, _ in notices)
        return out


class Session:
    """An IMDSv2 client: a token from ``PUT /latest/api/token``, renewed before it expires."""

    def __init__(self, imds: Imds, clock=time.monotonic) -> None:
        self.imds, self.clock = imds, clock
        self._token, self._until = "", 0.0

    def get(self, path: str) -> str | None:
        """The body at ``path``, None for a 404; ImdsError otherwise."""
        if self.clock() >= self._until - RENEW_BEFORE:
            code, body, _ = self.imds.request("PUT", "/latest/api/token",
                                              headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)})
            if code != 200:
                raise ImdsError(f"PUT /latest/api/token: HTTP {code}", code)
            self._token, self._until = body.decode(), self.clock() + TOKEN_TTL
        code, body, _ = self.imds.request("GET", path, headers={"X-aws-ec2-metadata-token": self._token})
        if code == 404:
            return None
        if code == 401:
            self._until = 0.0  # a token refused (another node after a move): a new one next time
        if code != 200:
            raise ImdsError(f"GET {path}: HTTP {code}", code)
        return body.decode()


def _say(text: str) -> None:
    print(f"aws_event_logger: {text}", file=sys.stderr, flush=True)


def run(session: Session, sender: UdpSyslog, core: AwsWatcher, *, interval: float,
        duration: float | None = None) -> int:
    """The driver: poll every path, log what is new, sleep; returns the exit status."""
    def stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    deadline = None if duration is None else time.monotonic() + duration
    status = 0
    while deadline is None or time.monotonic() < deadline:
        try:
            answers = {name: session.get(path) for name, path in PATHS.items()}
        except ImdsError as exc:
            _say(f"metadata service: {exc}")
            status = 1
            time.sleep(interval)
            continue
        status = 0
        for line in core.observe(answers):
            try:
                sender.send(line, msgid="AWSMAINT")
            except OSError as exc:
                _say(f"could not send to syslog {sender.target[0]}:{sender.target[1]}: {exc}")
                status = 1
                continue
            _say(f"logged {line}")
        time.sleep(interval)
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m netsim.invm.aws_event_logger --syslog HOST[:PORT] ...``"""
    ap = argparse.ArgumentParser(prog="python -m netsim.invm.aws_event_logger", description=__doc__.split("\n")[0])
    ap.add_argument("--syslog", required=True, metavar="HOST[:PORT]", help="syslog collector (UDP)")
    ap.add_argument("--rfc", choices=("5424", "3164"), default="5424", help="syslog line format")
    ap.add_argument("--tag", default="vm-maintenance", help="APP-NAME / TAG of the lines")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between polls (AWS advises 5)")
    ap.add_argument("--duration", type=float, help="stop after this many seconds")
    ap.add_argument("--metadata", default=METADATA_ADDRESS, help="metadata service address")
    args = ap.parse_args(argv)
    if not 0.1 <= args.interval <= 3600:
        ap.error(f"--interval must be 0.1 to 3600 seconds, not {args.interval:g}")
    host, port = parse_target(args.syslog)
    try:
        imds, _ = start_in_vm("aws_event_logger", "-", args.metadata)
        session = Session(imds)
        vm = patiently(lambda: session.get("/latest/meta-data/instance-id") or "")
    except ImdsError as exc:
        _say(f"cannot learn this instance's id: {exc}")
        return 1
    sender = UdpSyslog(host, port, hostname=vm, app=args.tag, rfc=args.rfc)
    try:
        return run(session, sender, AwsWatcher(vm), interval=args.interval, duration=args.duration)
    finally:
        sender.close()


if __name__ == "__main__":
    sys.exit(main())
