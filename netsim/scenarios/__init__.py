"""The components of the seed's two scenarios, run inside a datacenter's hosts.

The 2015 In-VM Metadata Service README suggested two uses (``shared/reference/
cloud-metadata-apis.md`` section 1.2): log an upcoming reboot to syslog, and drain a
VM from a load balancer before it reboots. This package holds the pieces of both:

In-VM programs (standard library only; each runs inside a VM or an extra host with
``RunningDatacenter.popen(host, [sys.executable, "-m", MODULE, ...])`` and refuses to
run in the host's own namespace):

- :mod:`.event_logger`: logs each new Scheduled Event once to a syslog collector
  (``scripts/is-vm-in-maint.sh`` is its 2015-API shell twin);
- :mod:`.webapp`: a tiny HTTP/1.1 server answering ``GET /`` with the VM's name;
- :mod:`.drain_agent`: drains the VM's server in HAProxy before its maintenance,
  then approves the event (POST StartRequests); sets it ready again on start-up;
- :mod:`.loadgen`: an asyncio load generator that counts failures per second.

Harness side (run from the test or CLI process, acting on namespaces by netlink and
processes by PID):

- :mod:`.syslog`: Debian's rsyslog in ``ops`` with a private configuration;
- :mod:`.haproxy`: Debian's HAProxy in ``lb`` on the virtual IP, with the runtime API.

Shared helpers: :mod:`.imds` (metadata client), :mod:`.syslog_client` (RFC 5424 and
RFC 3164 lines over UDP), :mod:`.runtime_api` (HAProxy runtime API client and
parsers), :mod:`.procs` (waiting for listeners and stopping processes by PID); every program
first calls :func:`netsim.safety.require_emulated_namespace`.
"""
