"""``netsim demo --cloud gcp`` end to end (needs root): the walk under load on the Compute
Engine metadata service, with GCE's drain agent (a long poll on maintenance-event) and
without; short phases, bounded by the demo's own walk timeout and this test's. The notice
(6 s) leaves a VM that came back time to pass HAProxy's health check before the next update
domain drains (on a loaded machine that took up to 8 s after a reboot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

NETSIM = os.path.join(os.path.dirname(sys.executable), "netsim")


@pytest.mark.root
def test_the_demo_on_gcp_fails_no_request_with_gces_drain_agent_and_some_without(tmp_path) -> None:
    name = f"dg{os.getpid() % 10000}"
    out = subprocess.run([NETSIM, "demo", "--cloud", "gcp", "--notice", "6", "--downtime", "3", "--rate", "80",
                          "--name", name, "-o", str(tmp_path / "gcp.svg")],
                         capture_output=True, text=True, timeout=420)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    rows = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in
            re.finditer(r"^(with|without) drain agents\s+(\d+)\s+(\d+)", out.stdout, re.M)}
    assert set(rows) == {"with", "without"}, out.stdout[-2000:]
    assert rows["with"][0] >= 80 * 10 and rows["with"][1] == 0, out.stdout[-3000:]
    assert rows["without"][1] > 0, "rebooting VMs with requests in flight must fail some of them"
    assert (tmp_path / "gcp.svg").read_text().startswith("<svg") or "<svg" in (tmp_path / "gcp.svg").read_text()
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"nsim-{name}-")]  # torn down
