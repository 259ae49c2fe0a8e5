"""Long polls woken by what changed: only the parked requests whose Wait watches a changed
name are called again (pure index, the controller's record of names, and across real
namespaces with GCE's flavor)."""

from __future__ import annotations

import dataclasses
import os
import time

import pytest

from netsim.harness.testbed import Testbed, tcp_socket_in
from netsim.kernel import netns
from netsim.maintenance import Repository
from netsim.maintenance.actions import EndEvent, FileEvent, RemoveEvent, UpdateEvent, note_change
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import Event, EventStore, Kind, Status
from netsim_imds.flavors import Wait
from netsim_imds.gcp import GcpFlavor
from netsim_imds.parking import ParkedIndex

from tests.server.support import make_vm, require_root

NOW = 1_800_000_000.0


def test_the_index_finds_the_connections_a_change_concerns() -> None:
    index = ParkedIndex()
    a, b, c = object(), object(), object()
    index.add(a, frozenset({"vm1"}))
    index.add(b, frozenset({"vm2", "web"}))
    index.add(c, None)  # watches the whole node
    assert len(index) == 3 and set(index) == {a, b, c}
    assert set(index.concerned({"vm1"})) == {a, c}
    assert set(index.concerned({"web"})) == {b, c}
    assert set(index.concerned({"vm9"})) == {c}
    assert set(index.concerned(None)) == {a, b, c}
    many = {f"vm{i}" for i in range(100)}  # more changed names than watched ones
    assert set(index.concerned(many)) == {a, b, c}
    index.add(a, frozenset({"vm2"}))  # parked again on another watch
    assert set(index.concerned({"vm1"})) == {c} and set(index.concerned({"vm2"})) == {a, b, c}
    for conn in (a, b, c):
        index.discard(conn)
    index.discard(a)  # twice is harmless
    assert len(index) == 0 and index.concerned({"vm2"}) == [] and index._by_name == {}


def test_the_controller_records_which_names_each_node_change_concerns() -> None:
    e = Event("e1", Kind.REBOOT, ("vm1", "vm2"), NOW + 30, NOW, avset="web")
    other = Event("e2", Kind.PAUSE, ("vm3",), NOW + 30, NOW)
    stored = {("n2", "e2"): other}
    changed: dict = {}
    note_change(changed, FileEvent("n1", e), lambda n, i: stored.get((n, i)))
    note_change(changed, RemoveEvent("n2", "e2"), lambda n, i: stored.get((n, i)))
    note_change(changed, EndEvent(e), lambda n, i: None)  # names no node
    assert changed == {"n1": {"vm1", "vm2", "web"}, "n2": {"vm3"}}
    note_change(changed, RemoveEvent("n2", "gone"), lambda n, i: None)  # unknown: every name of n2
    note_change(changed, UpdateEvent("n2", other), lambda n, i: None)
    assert changed == {"n1": {"vm1", "vm2", "web"}, "n2": None}


class CountingGcp(GcpFlavor):
    """GCE's flavor, counting how often the driver calls each VM's parked request again."""

    resumed: dict[str, int] = {}

    def handle(self, request, caller, view, now):
        answer = super().handle(request, caller, view, now)
        return self._counted(answer, caller.name) if isinstance(answer, Wait) and caller else answer

    def _counted(self, wait: Wait, vm: str) -> Wait:
        def resume(view, now):
            CountingGcp.resumed[vm] = CountingGcp.resumed.get(vm, 0) + 1
            answer = wait.resume(view, now)
            return self._counted(answer, vm) if isinstance(answer, Wait) else answer
        return Wait(wait.deadline, resume, wait.watch)


def poll(sock) -> None:
    sock.sendall(b"GET /computeMetadata/v1/instance/maintenance-event?wait_for_change=true&timeout_sec=30 "
                 b"HTTP/1.1\r\nHost: metadata\r\nMetadata-Flavor: Google\r\n\r\n")


def until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


@pytest.mark.root
def test_a_change_wakes_only_the_long_polls_of_the_vms_it_names() -> None:
    require_root()
    prefix = f"nsim-gwake-{os.getpid()}-"
    bed = Testbed(prefix)
    store = EventStore()
    server = ServerThread(ServerConfig(flavor=CountingGcp), socket_factory=tcp_socket_in)
    vms = {"169.254.10.1": make_vm("vm1", mac="02:00:00:00:51:01"),
           "169.254.10.3": make_vm("vm3", mac="02:00:00:00:51:03")}
    CountingGcp.resumed = {}
    try:
        bed.add_client("c1", "169.254.10.1", "02:00:00:00:51:01")
        bed.add_client("c3", "169.254.10.3", "02:00:00:00:51:03")
        server.start()
        server.add_node("n1", bed.node_ns, vms.get, store)
        with bed.connect("c1") as s1, bed.connect("c3") as s3, s3.makefile("rb") as f3:
            poll(s1)
            poll(s3)
            assert until(lambda: server.run(lambda: server.server.stats()["parked"]) == 2)
            server.run(lambda: store.add(Event("e1", Kind.PAUSE, ("vm3",), time.time() - 1, time.time() - 2)))
            server.run(lambda: store.start("e1"))
            server.notify("n1", {"vm3"})  # what the controller says changed
            assert f3.readline().startswith(b"HTTP/1.1 200")
            while f3.readline() not in (b"\r\n", b""):
                pass
            assert f3.read(len(b"MIGRATE_ON_HOST_MAINTENANCE")) == b"MIGRATE_ON_HOST_MAINTENANCE"
            assert CountingGcp.resumed == {"vm3": 1}  # vm1's poll was not called again
            server.notify("n1")  # names unknown: every parked request of the node
            assert until(lambda: CountingGcp.resumed.get("vm1") == 1)
            assert server.run(lambda: server.server.stats()["parked"]) == 1  # vm1 waits on
    finally:
        server.stop()
        bed.close()
    assert not netns.list_names(prefix)


def test_the_repository_writes_its_cache_through(tmp_path) -> None:
    """A woken poll reads the node's events from the cache the write updated; it holds what
    a fresh read of the file gives."""
    path = str(tmp_path / "events.db")
    e1 = Event("e1", Kind.REBOOT, ("vm1",), NOW + 30, NOW)
    e2 = Event("e2", Kind.PAUSE, ("vm2",), NOW + 60, NOW)
    with Repository(path, sole_writer=True) as repo:
        assert repo.events("n1") == () and repo.incarnation("n1") == 1  # cached, empty
        with repo.transaction():
            repo.put_event("n1", e1)
            repo.put_event("n1", e2)
            repo.put_event("n2", e1)
        repo.put_event("n1", dataclasses.replace(e1, status=Status.STARTED))
        repo.remove_event("n1", "e2")
        cached = {n: (repo.incarnation(n), repo.events(n)) for n in ("n1", "n2")}
    with Repository(path) as fresh:
        assert cached == {n: (fresh.incarnation(n), fresh.events(n)) for n in ("n1", "n2")}
    assert cached["n1"] == (5, (dataclasses.replace(e1, status=Status.STARTED),))


def test_answers_say_until_when_the_driver_may_give_them_again() -> None:
    from tests.server.gcp.test_api import call
    flavor, store = GcpFlavor(), EventStore()
    assert call(flavor, "/computeMetadata/v1/instance/name", store).cache_until == float("inf")
    store.add(Event("e1", Kind.PAUSE, ("vm1",), NOW + 100, NOW))
    # The warning window opens 60 s before NotBefore: the value may change then, events or not.
    assert call(flavor, "/computeMetadata/v1/instance/maintenance-event", store).cache_until == NOW + 40
    token = call(flavor, "/computeMetadata/v1/instance/service-accounts/default/token", store)
    assert token.status == 200 and token.cache_until == 0  # counts down with the clock
    assert call(flavor, "/computeMetadata/v1/instance/nope", store).cache_until == 0
