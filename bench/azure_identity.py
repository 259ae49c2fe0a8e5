#!/usr/bin/env python3
"""Azure managed identity figures: cached token requests from every VM at 1 req/s, and the
server CPU a fresh (signed) token costs.

An azure datacenter of 100 nodes x 10 VMs, each with the system-assigned identity. Every
VM holds one keep-alive connection to its node's metadata server (opened inside its
namespace) and asks ``/metadata/identity/oauth2/token`` for the same resource once per
second, phases spread over the second, for ``--seconds``, after a warm-up in which each
VM gets its first (signed) token: every measured answer comes from the cache.
Then every VM asks for ``--fresh`` new resources, each signed anew: the daemon's CPU
time (utime + stime from /proc) over those requests, minus the CPU of as many cached
ones, divided by their number, is the signing cost; the in-process cost of
``Keys.sign_jwt`` alone is measured too.

Run as root, under the bench lock:
flock /tmp/netsim-bench.lock .venv/bin/python bench/azure_identity.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.events import pct  # noqa: E402
from bench.gcp import open_in  # noqa: E402  (a keep-alive connection from inside a VM)
from netsim.api.datacenter import RunningDatacenter, up  # noqa: E402
from netsim.model import grid  # noqa: E402
from netsim.model.vmdata import AzureVm  # noqa: E402
from netsim_imds import signing  # noqa: E402

TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="


def request(resource: str) -> bytes:
    return (f"GET {TOKEN}{resource} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n").encode()


async def answer(reader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return status, await reader.readexactly(length)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cached_phase(conns: dict, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    vms = list(conns)

    async def one_vm(i: int, vm: str) -> None:
        nonlocal errors
        reader, writer = conns[vm]
        await asyncio.sleep(i / len(vms))  # phases spread over the second
        n = 0
        while True:
            due = start + i / len(vms) + n
            if due > start + seconds:
                return
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent = time.perf_counter()
            writer.write(request("https://vault.azure.net"))
            status, body = await answer(reader)
            if status != 200 or b"access_token" not in body:
                errors += 1
            else:
                latencies.append((time.perf_counter() - sent) * 1000)
            n += 1

    await asyncio.gather(*(one_vm(i, vm) for i, vm in enumerate(vms)))
    return {"requests": len(latencies), "errors": errors, "p50": statistics.median(latencies),
            "p99": pct(latencies, 99), "max": max(latencies)}


async def burst(conns: dict, resources: list[str]) -> int:
    """Every VM asks for each resource in turn (one in flight per VM); the errors."""
    errors = 0

    async def one_vm(vm: str) -> None:
        nonlocal errors
        reader, writer = conns[vm]
        for resource in resources:
            writer.write(request(resource))
            status, _ = await answer(reader)
            errors += status != 200
            await asyncio.sleep(0.06)  # under the identity limit of 20 per second per VM

    await asyncio.gather(*(one_vm(vm) for vm in conns))
    return errors


async def run(dc: RunningDatacenter, seconds: float, fresh: int) -> dict:
    conns = {vm.name: await open_in(dc, vm.name) for vm in dc.topology.vms}
    # Warm-up, not measured: each VM's first token is signed (about 1 ms of CPU each).
    warm_errors = await burst(conns, ["https://vault.azure.net"])
    await asyncio.sleep(1.0)
    out = await cached_phase(conns, seconds)
    out["errors"] += warm_errors
    pid = dc.daemon_pids()[0]
    before = cpu_seconds(pid)
    errors = await burst(conns, ["https://vault.azure.net"] * fresh)  # cached: the HTTP cost alone
    cached_cpu = cpu_seconds(pid) - before
    before = cpu_seconds(pid)
    errors += await burst(conns, [f"https://r{i}-{time.time_ns()}.example" for i in range(fresh)])
    fresh_cpu = cpu_seconds(pid) - before
    for _, writer in conns.values():
        writer.close()
    n = fresh * len(conns)
    out.update(fresh_errors=errors, fresh_requests=n, cpu_fresh_ms=fresh_cpu / n * 1000,
               cpu_signing_ms=(fresh_cpu - cached_cpu) / n * 1000)
    return out


def sign_cost(keys: signing.Keys, count: int = 500) -> float:
    start = time.process_time()
    for i in range(count):
        keys.sign_jwt({"aud": "https://vault.azure.net", "iat": i})
    return (time.process_time() - start) / count * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 x 10 VMs")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the 1 req/s phase (default 20)")
    ap.add_argument("--fresh", type=int, default=3, help="fresh tokens per VM (default 3)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/azure_identity.py needs root", file=sys.stderr)
        return 2
    os.environ["NETSIM_STATE_DIR"] = tempfile.mkdtemp(prefix="netsim-bench-")
    nodes = 10 if args.quick else 100
    topo = grid("bazid", nodes, 10, linklocal="static")
    topo = dataclasses.replace(topo, vms=tuple(dataclasses.replace(v, azure=AzureVm(identities=("system",)))
                                               for v in topo.vms))
    dc = up(topo)
    try:
        r = asyncio.run(run(dc, args.seconds, args.fresh))
        keys = signing.load_or_create(dc.state.path)
    finally:
        dc.down()
    r["sign_ms"] = sign_cost(keys)
    print(f"{'figure':<58} {'value':>10}  goal")
    print(f"{'VMs, each asking for a token at 1 req/s':<58} {len(topo.vms):>10}")
    print(f"{'cached token answers measured':<58} {r['requests']:>10}")
    print(f"{'errors (any answer but 200 with a token)':<58} {r['errors']:>10}  0")
    print(f"{'cached token latency at the VM, p50 (ms)':<58} {r['p50']:>10.2f}")
    print(f"{'cached token latency at the VM, p99 (ms)':<58} {r['p99']:>10.2f}  <= 20")
    print(f"{'cached token latency at the VM, max (ms)':<58} {r['max']:>10.2f}")
    print(f"{'fresh tokens signed by the daemon (errors)':<58} {r['fresh_requests']:>10} ({r['fresh_errors']})")
    print(f"{'daemon CPU per fresh token request (ms)':<58} {r['cpu_fresh_ms']:>10.2f}")
    print(f"{'daemon CPU per fresh token minus a cached request (ms)':<58} {r['cpu_signing_ms']:>10.2f}  <= 2")
    print(f"{'Keys.sign_jwt alone, in process (ms CPU)':<58} {r['sign_ms']:>10.2f}")
    print(json.dumps(r), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
