"""The seed's walk on AWS (needs root): with the AWS drain agent (IMDSv2 polls) a maintenance
walk under load fails no request; ``netsim demo --cloud aws`` runs it with and without the
agents and shows the difference."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest

from netsim.model import load
from netsim.tools import demo
from tests.server.aws.support import NETSIM

pytestmark = pytest.mark.root


def test_with_the_aws_drain_agent_a_walk_under_load_fails_no_request() -> None:
    base = replace(load(), cloud="aws", location="us-east-1")
    run = demo.run_walk(True, notice=2, downtime=3, rate=80, name=f"wa{os.getpid() % 1000}", base=base)
    assert run.requests >= 80 * 10
    assert run.failed == 0, (run.errors, run.failures, run.windows)
    assert [w[0] for w in run.windows] == ["web1", "web2", "web3"]  # one update domain at a time


def test_netsim_demo_cloud_aws_runs_both_walks_prints_the_table_and_draws_the_timeline(tmp_path) -> None:
    # The command as a user types it, with a short notice and downtime; bounded by its timeout.
    picture = tmp_path / "aws-demo.svg"
    out = subprocess.run([NETSIM, "demo", "--cloud", "aws", "--notice", "2", "--downtime", "3", "--rate", "80",
                          "--name", f"ad{os.getpid() % 100000}", "-o", str(picture)],
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = {line.split(" drain agents")[0].strip(): line.split(" drain agents")[1].split()
            for line in out.stdout.splitlines() if line.startswith(("with drain agents", "without drain agents"))}
    requests, failed = int(rows["with"][0]), int(rows["with"][1])
    assert requests >= 80 * 10 and failed == 0, out.stdout[-3000:]
    assert int(rows["without"][1]) > 0, "rebooting VMs with requests in flight must fail some of them"
    assert picture.read_text().count("web1 down") == 2  # both runs, drawn
