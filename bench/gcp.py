#!/usr/bin/env python3
"""GCE flavor figures: long polls on maintenance-event from every VM, woken by maintenance.

A gcp datacenter of 100 nodes x 10 VMs (one availability set, 5 update domains). Every
VM reads ``instance/maintenance-event`` once (which arms GCE's warning rule and gives
its ETag), then holds one ``wait_for_change`` long poll with ``last_etag``. Then a
maintenance walk starts (``walk_start``, 30 s notice: inside the 60-s warning window, so
the first update domain's VMs see ``TERMINATE_ON_HOST_MAINTENANCE`` at once): the
latency is from the control request to each woken VM's answer. Also the daemon's memory
per parked poll (RSS with every poll parked minus RSS before, divided by the polls).

Run as root, under the bench lock: flock /tmp/netsim-bench.lock .venv/bin/python
bench/gcp.py [--quick] [--profile FILE] (``--profile``: py-spy samples the daemon, without
pausing it, around the wake; raw collapsed stacks). Everything starts inside the
datacenter's namespaces. Plain GETs from 1,000 VMs at 5 req/s: ``bench/metadata.py load
--cloud gcp``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.events import control, pct  # noqa: E402
from netsim.api.datacenter import RunningDatacenter, up  # noqa: E402
from netsim.kernel.safety import emulated_socket  # noqa: E402
from netsim.model import grid, names  # noqa: E402
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT  # noqa: E402

KEY = "/computeMetadata/v1/instance/maintenance-event"


def request(query: str = "") -> bytes:
    return (f"GET {KEY}{query} HTTP/1.1\r\nHost: metadata.google.internal\r\n"
            "Metadata-Flavor: Google\r\n\r\n").encode()


async def answer(reader) -> tuple[bytes, str]:
    head = await reader.readuntil(b"\r\n\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in
              (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)}
    body = await reader.readexactly(int(fields[b"content-length"]))
    if b"etag" not in fields:  # not GCE's answer (an error page of the core): say which
        raise RuntimeError(f"an answer without an ETag: {head[:200]!r} {body[:200]!r}")
    return body, fields[b"etag"].decode()


async def open_in(dc: RunningDatacenter, vm: str):
    sock = emulated_socket(names.vm_ns(dc.name, vm), socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (METADATA_ADDRESS, METADATA_PORT))
    return await asyncio.open_connection(sock=sock)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def run(dc: RunningDatacenter, profile: str | None = None) -> dict:
    vms = [v.name for v in dc.topology.vms]
    conns = {}
    for vm in vms:
        reader, writer = await open_in(dc, vm)
        writer.write(request())
        conns[vm] = (reader, writer, (await answer(reader))[1])
    pid = dc.daemon_pids()[0]
    before = rss_kb(pid)
    for vm, (reader, writer, etag) in conns.items():
        writer.write(request(f"?wait_for_change=true&timeout_sec=120&last_etag={etag}"))
    await asyncio.sleep(3.0)  # every poll parked
    parked = rss_kb(pid)
    woken: dict[str, float] = {}

    async def wait(vm: str) -> None:
        body, _ = await answer(conns[vm][0])
        if body != b"NONE":
            woken[vm] = time.perf_counter()

    tasks = [asyncio.create_task(wait(vm)) for vm in vms]
    await asyncio.sleep(0)  # every reader task waits in its read before the clock starts (not 1,000 first steps)
    spy = None
    if profile:  # py-spy samples the daemon around the wake (it sends no traffic)
        spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "--pid", str(pid),
                                "--rate", "4000", "--duration", "2", "--nonblocking", "--format", "raw",
                                "-o", profile], stdout=subprocess.DEVNULL)
        await asyncio.sleep(0.5)
    start = time.perf_counter()
    await control(dc, "walk_start", avset="grid", notice=30, downtime=5)
    acked = (time.perf_counter() - start) * 1000
    await asyncio.wait(tasks, timeout=10)
    for t in tasks:
        t.cancel()
    if spy is not None:
        spy.wait(timeout=30)
    for _, writer, _ in conns.values():
        writer.close()
    ms = [(t - start) * 1000 for t in woken.values()]
    return {"polls": len(vms), "woken": len(ms), "p50": statistics.median(ms) if ms else float("nan"),
            "p99": pct(ms, 99) if ms else float("nan"), "min": min(ms, default=float("nan")),
            "max": max(ms, default=float("nan")),
            "kb_per_poll": (parked - before) / len(vms), "acked": acked}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 x 10 VMs")
    ap.add_argument("--profile", metavar="FILE", help="py-spy samples of the daemon around the wake (raw format)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/gcp.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    nodes = 10 if args.quick else 100
    dc = up(grid("bgcp", nodes, 10, linklocal="static", cloud="gcp", location="us-central1-a"))
    try:
        r = asyncio.run(run(dc, args.profile))
    finally:
        dc.down()
    print(f"{'figure':<52} {'value':>10}  goal")
    print(f"{'VMs each holding a long poll on maintenance-event':<52} {r['polls']:>10}")
    print(f"{'woken by the walk (its first update domain)':<52} {r['woken']:>10}")
    print(f"{'walk_start answered on the control socket (ms)':<52} {r['acked']:>10.1f}")
    print(f"{'walk_start -> answer at the VM, first (ms)':<52} {r['min']:>10.1f}")
    print(f"{'walk_start -> answer at the VM, p50 (ms)':<52} {r['p50']:>10.1f}")
    print(f"{'walk_start -> answer at the VM, p99 (ms)':<52} {r['p99']:>10.1f}  <= 50")
    print(f"{'walk_start -> answer at the VM, max (ms)':<52} {r['max']:>10.1f}")
    print(f"{'daemon memory per parked poll (KB)':<52} {r['kb_per_poll']:>10.2f}  <= 10")
    return 0


if __name__ == "__main__":
    sys.exit(main())
