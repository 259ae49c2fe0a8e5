"""The daemon's FaultBook on an invented clock: what it asks of the kernel and the
metadata service, stored faults across a restart, a removed VM's faults ending. The
kernel calls are recorded (the real ones are tested in test_faults.py)."""

from __future__ import annotations

import asyncio

import pytest

from netsim.kernel import qdisc
from netsim.maintenance.repository import Repository
from netsim.model import load
from netsim.runtime.faults import FaultBook
from netsim.runtime.faultspec import FaultError


class Server:
    def __init__(self) -> None:
        self.faults = []

    def set_faults(self, faults) -> None:
        self.faults = list(faults)


@pytest.fixture
def kernel(monkeypatch):
    calls = {"ports": {}, "rules": {}}
    monkeypatch.setattr(qdisc, "set_ports", lambda ns, ports: calls["ports"].setdefault(ns, []).append(dict(ports)))
    monkeypatch.setattr(qdisc, "node_rules", lambda ns, **kw: calls["rules"].setdefault(ns, []).append(kw))
    return calls


def known(kind, name):
    names = {"vm": {"web1", "web2", "web3"}, "node": {"n1", "n2"}}[kind]
    if name not in names:
        raise FaultError(f"no {kind} {name!r}")
    return name


def book(tmp_path, clock, placement=None):
    dc = load()
    return FaultBook(dc, Repository(str(tmp_path / "events.db")), Server(),
                     placement if placement is not None else {"web1": "n1", "web2": "n2", "web3": "n1"},
                     known, clock=clock)


def test_losses_combine_and_a_restart_keeps_faults_and_never_reuses_ids(tmp_path, kernel):
    now = [1000.0]

    async def run():
        b = book(tmp_path, lambda: now[0])
        b.apply()
        a = b.add("web1", {"loss": 50.0}, None, None)
        b.add("node:n1", {"loss": 50.0}, None, 60)
        h = b.add("all", {"http": 503}, 5, 10)
        assert [f.id for f in b.server.faults] == [h.id]
        n1 = kernel["rules"]["nsim-dc1-node-n1"][-1]
        assert n1["loss"] == {"p-web1": 75.0, "p-web3": 50.0}
        assert b.clear(a.id) == [a.id]
        with pytest.raises(FaultError, match="no fault 'fault-9'"):
            b.clear("fault-9")
        now[0] += 30
        again = book(tmp_path, lambda: now[0])
        assert [f["id"] for f in again.describe()] == ["fault-2", "fault-3"]
        assert [f["state"] for f in again.describe()] == ["active", "ended"]
        assert again.add("web2", {"http": 500}, None, None).id == "fault-4"
        with pytest.raises(FaultError, match="a target is a VM, node:NAME or all"):
            again.add("web9", {"http": 500}, None, None)
        again.close()
        b.close()
    asyncio.run(run())


def test_a_removed_vms_faults_end_and_a_moved_vm_is_shaped_again(tmp_path, kernel):
    async def run():
        placement = {"web1": "n1", "web2": "n2", "web3": "n1"}
        b = book(tmp_path, lambda: 50.0, placement)
        b.apply()
        b.add("web1", {"latency": 0.0, "rate": 1000}, None, None)
        assert [(port, s.rate) for port, s in kernel["ports"]["nsim-dc1-node-n1"][-1].values()] == [("p-web1", 1000)]
        placement["web1"] = "n2"
        b.vm_moved("web1", "n1", "n2")
        shaped = kernel["ports"]["nsim-dc1-node-n2"][-1]
        assert [s.rate for _, s in shaped.values()] == [1000]
        del placement["web1"]
        b.vm_moved("web1", "n2", None)
        assert [f["state"] for f in b.describe()] == ["ended"]
        b.close()
    asyncio.run(run())
