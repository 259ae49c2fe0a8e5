"""A syslog collector: Debian's rsyslog inside the ``ops`` host, with a private configuration.

rsyslogd runs in the foreground (``-n``) with a configuration file and PID file of its
own in a private folder (by default under the datacenter's state folder, so ``netsim
down`` removes it): UDP input on port 514 (RFC 5426), every message written as one
tab-separated line to ``messages.log`` there. The configuration loads no imuxsock and no
imjournal, so it neither reads the host's ``/dev/log`` or journal nor writes to
``/var/log``; the host's own rsyslog is not involved. The process is started with
:meth:`RunningDatacenter.popen`, which journals its PID so ``netsim down`` ends it.

Usage::

    collector = start_collector(dc)            # rsyslog in "ops", 198.19.255.30:514/udp
    ...                                        # VMs: logger -n 198.19.255.30 -P 514 -d ...
    lines = collector.wait_for(lambda ls: any(l.app == "vm-maintenance" for l in ls))
    collector.stop()
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from netsim.invm.errors import ScenarioError
from netsim.harness.procs import stop as stop_process
from netsim.harness.procs import wait_listening
from netsim.model.addressing import EXTRA_HOST_ADDRESSES

RSYSLOGD = "/usr/sbin/rsyslogd"
SYSLOG_PORT = 514
LOG_NAME = "messages.log"
_FIELDS = 7


@dataclass(frozen=True)
class SyslogLine:
    """One message as the collector received it.

    ``protocol`` is ``"1"`` for an RFC 5424 message and ``"0"`` for an RFC 3164 one;
    ``source`` is the sender's IP address, ``hostname`` what the message claims.
    """

    received: str
    source: str
    hostname: str
    app: str
    procid: str
    protocol: str
    message: str


def collector_config(workdir: str, log_path: str, port: int = SYSLOG_PORT) -> str:
    """The rsyslog configuration (RainerScript) of a collector writing to ``log_path``."""
    fields = "\\t".join(["%timegenerated:::date-rfc3339%", "%fromhost-ip%", "%hostname%", "%programname%",
                         "%procid%", "%protocol-version%", "%msg:::drop-last-lf%"])
    return "\n".join([
        "# netsim syslog collector: private to this datacenter; no imuxsock, no imjournal.",
        f'global(workDirectory="{workdir}" net.enableDNS="off" maxMessageSize="8k")',
        'module(load="imudp")',
        f'input(type="imudp" port="{port}")',
        f'template(name="netsimLine" type="string" string="{fields}\\n")',
        f'*.* action(type="omfile" file="{log_path}" template="netsimLine" flushOnTXEnd="on")',
        "",
    ])


def parse_line(line: str) -> SyslogLine | None:
    """A line of ``messages.log``, or None if it is not one of ours."""
    parts = line.rstrip("\n").split("\t", _FIELDS - 1)
    if len(parts) != _FIELDS:
        return None
    return SyslogLine(*parts)


class SyslogCollector:
    """A running rsyslogd in a host of a datacenter (see :func:`start_collector`)."""

    def __init__(self, proc: subprocess.Popen, workdir: str, host: str, address: str, port: int) -> None:
        self.proc, self.workdir, self.host, self.address, self.port = proc, workdir, host, address, port
        self.log_path = os.path.join(workdir, LOG_NAME)
        self.conf_path = os.path.join(workdir, "rsyslog.conf")
        self.pid_path = os.path.join(workdir, "rsyslogd.pid")

    @property
    def target(self) -> str:
        """``ADDRESS:PORT`` that senders use."""
        return f"{self.address}:{self.port}"

    def lines(self) -> list[SyslogLine]:
        """Every message received so far, oldest first."""
        try:
            with open(self.log_path, errors="replace") as f:
                return [p for p in map(parse_line, f) if p is not None]
        except FileNotFoundError:
            return []

    def wait_for(self, predicate: Callable[[list[SyslogLine]], bool], timeout: float = 10.0) -> list[SyslogLine]:
        """Wait until ``predicate(lines())`` holds and return the lines; ScenarioError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if time.monotonic() > deadline:
                raise ScenarioError(f"the syslog collector in {self.host} did not receive the expected lines "
                                    f"within {timeout:g} s; it has {len(lines)}: see {self.log_path}")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """End rsyslogd by its PID (SIGTERM, then SIGKILL)."""
        stop_process(self.proc, timeout)

    def __enter__(self) -> "SyslogCollector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_collector(dc, host: str = "ops", *, port: int = SYSLOG_PORT, workdir: str | None = None,
                    timeout: float = 10.0) -> SyslogCollector:
    """Start rsyslogd inside ``host`` of the running datacenter ``dc`` and wait until it
    listens on UDP ``port``. ``workdir`` defaults to a new folder under the datacenter's
    state folder."""
    if not os.access(RSYSLOGD, os.X_OK):
        raise ScenarioError(f"{RSYSLOGD} is missing: install Debian's rsyslog package (apt-get install rsyslog)")
    if workdir is None:
        base = dc.state.file("scenarios")
        os.makedirs(base, exist_ok=True)
        workdir = tempfile.mkdtemp(prefix=f"syslog-{host}-", dir=base)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, LOG_NAME)
    conf = os.path.join(workdir, "rsyslog.conf")
    with open(conf, "w") as f:
        f.write(collector_config(workdir, log_path, port))
    open(log_path, "a").close()
    # No NOTIFY_SOCKET: a foreground rsyslogd must not talk to the host's systemd.
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    out = open(os.path.join(workdir, "rsyslogd.out"), "ab")
    try:
        proc = dc.popen(host, [RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(workdir, "rsyslogd.pid")],
                        stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True)
    finally:
        out.close()
    collector = SyslogCollector(proc, workdir, host, EXTRA_HOST_ADDRESSES.get(host, ""), port)
    try:
        wait_listening(proc, port, "udp", timeout=timeout, what=f"rsyslogd in {host}")
    except BaseException:
        collector.stop()
        raise
    return collector
