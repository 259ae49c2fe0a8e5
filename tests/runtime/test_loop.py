"""The daemon's event loop: uvloop when installed, the stdlib's when asked or without it."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from netsim.model import grid
from netsim.runtime import loop
from netsim.runtime.loop import LoopError, loop_factory


def test_netsim_loop_asyncio_forces_the_stdlib_loop(monkeypatch):
    monkeypatch.setenv("NETSIM_LOOP", "asyncio")
    factory, name = loop_factory()
    assert name == "asyncio"
    ev = factory()
    try:
        assert type(ev).__module__.startswith("asyncio")
    finally:
        ev.close()


def test_without_uvloop_auto_falls_back_and_uvloop_is_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert loop_factory("auto") == (asyncio.new_event_loop, "asyncio")
    with pytest.raises(LoopError, match="uvloop is not installed") as err:
        loop_factory("uvloop")
    assert "\n" not in str(err.value)


def test_an_unknown_choice_is_refused(monkeypatch):
    monkeypatch.setenv("NETSIM_LOOP", "tokio")
    with pytest.raises(LoopError, match="NETSIM_LOOP='tokio' is not one of auto, uvloop, asyncio"):
        loop_factory()


def test_an_unset_choice_means_the_default(monkeypatch):
    monkeypatch.delenv("NETSIM_LOOP", raising=False)
    assert loop_factory() == loop_factory(loop.DEFAULT)
    assert loop.DEFAULT == "auto"  # uvloop when installed, the stdlib loop without it


def test_auto_and_uvloop_pick_uvloop_when_installed():
    uvloop = pytest.importorskip("uvloop")
    for choice in ("auto", "uvloop"):
        factory, name = loop_factory(choice)
        assert factory is uvloop.new_event_loop and name.startswith("uvloop ")


def _serves(datacenter_factory, host_exec, monkeypatch, choice: str) -> None:
    monkeypatch.setenv("NETSIM_LOOP", choice)  # the daemon inherits the environment
    dc = datacenter_factory(grid("loop", 1, 1, linklocal="static"))
    with open(dc.state.file("daemon.log")) as f:
        assert f"event loop {choice}" in f.read()
    vm = dc.topology.vms[0].name
    out = host_exec(vm, "curl", "-s", "-m", "3", "http://169.254.169.254/metadata/v1/InstanceInfo")
    assert json.loads(out.stdout or "{}").get("ID") == vm, out
    out = host_exec(vm, "curl", "-s", "-m", "3", "-H", "Metadata: true",
                    "http://169.254.169.254/metadata/instance/compute/name?api-version=2021-02-01&format=text")
    assert out.stdout == vm


@pytest.mark.root
def test_the_daemon_serves_on_the_stdlib_loop(datacenter_factory, host_exec, monkeypatch):
    _serves(datacenter_factory, host_exec, monkeypatch, "asyncio")


@pytest.mark.root
def test_the_daemon_serves_on_uvloop(datacenter_factory, host_exec, monkeypatch):
    pytest.importorskip("uvloop")
    _serves(datacenter_factory, host_exec, monkeypatch, "uvloop")
