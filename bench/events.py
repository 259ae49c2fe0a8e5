#!/usr/bin/env python3
"""Maintenance figures: how fast an event reaches a VM, and how long a walk takes.

1. Visibility: a datacenter of 100 nodes x 10 VMs; every VM polls
   ``/metadata/v1/maintenance`` once a second (the background load); for each sample a
   poller in one VM asks every 5 ms while ``netsim event add`` files an event for it,
   and the latency is from the control request to the first answer that names it. The
   event is then canceled, so one event is pending at a time.
2. Walk: an availability set of 100 VMs (5 update domains), 10 s notice and 5 s
   downtime; the walk should end within 5 % of 5 x (10 + 5) s.

Run as root: .venv/bin/python bench/events.py [--quick]. Addresses are static (the
RFC 3927 claims are measured by bench/linklocal.py); everything starts inside the
datacenter's namespaces.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from netsim.model import names  # noqa: E402
from netsim.api.control import SOCKET_NAME  # noqa: E402
from netsim.api.datacenter import RunningDatacenter, up  # noqa: E402
from netsim.kernel.safety import emulated_socket  # noqa: E402
from netsim.model import grid  # noqa: E402
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT  # noqa: E402

REQUEST = f"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: {METADATA_ADDRESS}\r\n\r\n".encode()


async def open_in(dc: RunningDatacenter, vm: str):
    sock = emulated_socket(names.vm_ns(dc.name, vm), socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (METADATA_ADDRESS, METADATA_PORT))
    return await asyncio.open_connection(sock=sock)


async def ask(reader, writer) -> bytes:
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return await reader.readexactly(length)


async def background(dc, vm, stop: asyncio.Event, errors: list) -> None:
    try:
        reader, writer = await open_in(dc, vm)
        await asyncio.sleep(random.random())
        while not stop.is_set():
            await ask(reader, writer)
            await asyncio.sleep(1.0)
        writer.close()
    except Exception as exc:  # counted, not fatal: the table shows them
        errors.append(f"{vm}: {exc!r}")


async def control(dc: RunningDatacenter, command: str, **args) -> dict:
    """A control request on this event loop (an executor thread would fight the loop for the GIL)."""
    reader, writer = await asyncio.open_unix_connection(dc.state.file(SOCKET_NAME))
    writer.write(json.dumps({"command": command, **args}).encode() + b"\n")
    answer = json.loads(await reader.readline())
    writer.close()
    return answer


async def visibility(dc: RunningDatacenter, samples: int) -> tuple[list[float], int]:
    stop = asyncio.Event()
    errors: list[str] = []
    tasks = [asyncio.create_task(background(dc, v.name, stop, errors)) for v in dc.topology.vms]
    await asyncio.sleep(2)
    latencies = []
    for vm in random.Random(7).sample([v.name for v in dc.topology.vms], samples):
        reader, writer = await open_in(dc, vm)
        start = time.perf_counter()
        fut = asyncio.ensure_future(control(dc, "event_add", vm=vm, type="Reboot", **{"in": 280}))
        event_id = None
        while True:
            body = await ask(reader, writer)
            if event_id is None and fut.done():
                event_id = fut.result()["event"]["event_id"]
            if event_id and event_id.encode() in body:
                latencies.append(time.perf_counter() - start)
                break
            await asyncio.sleep(0.005)
        writer.close()
        await control(dc, "cancel", id=event_id)  # one pending event at a time, as in real life
    stop.set()
    await asyncio.gather(*tasks)
    return latencies, len(errors)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def walk(vms_per_node: int, nodes: int, notice: float, downtime: float) -> tuple[float, int]:
    dc = up(grid("bwalk", nodes, vms_per_node, linklocal="static"))
    try:
        avset = dc.topology.availability_set("grid")
        start = time.monotonic()
        dc.request("walk_start", avset="grid", notice=notice, downtime=downtime)
        while True:
            w = dc.request("snapshot")["walks"][0]
            if w["state"] == "done":
                return time.monotonic() - start, avset.update_domains
            time.sleep(0.05)
    finally:
        dc.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 x 10 VMs, 20 samples, a 20-VM walk of 1 s notice")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/events.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    nodes, samples = (10, 20) if args.quick else (100, 200)
    dc = up(grid("bevents", nodes, 10, linklocal="static"))
    try:
        latencies, errors = asyncio.run(visibility(dc, samples))
    finally:
        dc.down()
    ms = [x * 1000 for x in latencies]
    print(f"{'figure':<44} {'value':>10}  goal")
    print(f"{'VMs polling once a second':<44} {nodes * 10:>10}")
    print(f"{'event add -> visible at the VM, p50 (ms)':<44} {statistics.median(ms):>10.1f}")
    print(f"{'event add -> visible at the VM, p99 (ms)':<44} {pct(ms, 99):>10.1f}  <= 50")
    print(f"{'event add -> visible at the VM, max (ms)':<44} {max(ms):>10.1f}")
    print(f"{'background poll errors':<44} {errors:>10}")
    notice, downtime = (1.0, 0.5) if args.quick else (10.0, 5.0)
    took, uds = walk(10, 2 if args.quick else 10, notice, downtime)
    expected = uds * (notice + downtime)
    print(f"{f'walk of {20 if args.quick else 100} VMs, {uds} UDs, {notice:g} s + {downtime:g} s (s)':<44} "
          f"{took:>10.2f}  <= {expected * 1.05:.2f} (5% over {expected:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
