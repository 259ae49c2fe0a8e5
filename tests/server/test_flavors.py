"""The flavor seam without sockets: the registry by name, and a Wait on an invented timeline."""

from __future__ import annotations

import pytest

from netsim.errors import TopologyError
from netsim.model.load import parse
from netsim_imds import flavors
from netsim_imds.azure import AzureFlavor
from netsim_imds.events import EventStore
from netsim_imds.flavors import FlavorError, Wait
from netsim_imds.response import Response

from tests.server.support import azure_event, make_vm, parse_all
from tests.server.toyflavor import ToyFlavor

TOPOLOGY = '[datacenter]\nname = "dc1"\ncloud = "{}"\n[[node]]\nname = "n1"\n[[vm]]\nname = "vm1"\n'


@pytest.fixture
def fresh(monkeypatch):
    """Names this test registers are forgotten afterwards; NETSIM_FLAVORS is unset."""
    before = set(flavors.names())
    monkeypatch.delenv(flavors.ENV, raising=False)
    yield
    monkeypatch.delenv(flavors.ENV, raising=False)
    for name in set(flavors.names()) - before:
        flavors.unregister(name)


def get(target: str):
    (request,) = parse_all(f"GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode())
    return request


def test_azure_is_built_in_and_the_default() -> None:
    assert flavors.DEFAULT_FLAVOR == "azure" and "azure" in flavors.names()
    assert flavors.resolve("azure") is AzureFlavor
    assert parse(TOPOLOGY.format("azure")).cloud == "azure"
    assert parse(TOPOLOGY.replace('cloud = "{}"\n', "")).cloud == "azure"


def test_an_unknown_flavor_names_the_known_ones_and_the_way_to_add_one(fresh) -> None:
    with pytest.raises(FlavorError, match=r"unknown flavor 'gce' \(known: (\w+, )*azure\b.*NETSIM_FLAVORS=name=module"):
        flavors.resolve("gce")
    with pytest.raises(TopologyError) as info:
        parse(TOPOLOGY.format("gce"), "dc.toml")
    assert str(info.value).startswith("dc.toml:3, field 'datacenter.cloud': unknown flavor 'gce'")


def test_netsim_flavors_loads_a_flavor_from_a_module_path(fresh, monkeypatch) -> None:
    monkeypatch.setenv(flavors.ENV, "toy2=tests.server.toyflavor:ToyFlavor, other=tests.server.nothing")
    assert {"toy2", "other"} <= set(flavors.names())
    assert flavors.resolve("toy2") is ToyFlavor
    assert parse(TOPOLOGY.format("toy2")).cloud == "toy2"
    with pytest.raises(FlavorError, match="cannot import 'tests.server.nothing'"):
        flavors.resolve("other")
    monkeypatch.setenv(flavors.ENV, "toy3=tests.server.support")
    with pytest.raises(FlavorError, match="did not register it"):
        flavors.resolve("toy3")
    monkeypatch.setenv(flavors.ENV, "toy3")
    with pytest.raises(FlavorError, match="not name=module"):
        flavors.resolve("toy3")


def test_registration_is_checked(fresh) -> None:
    flavors.register("mine", ToyFlavor)
    flavors.register("mine", ToyFlavor)  # the same again: fine
    with pytest.raises(FlavorError, match="already registered"):
        flavors.register("mine", AzureFlavor)
    for bad in ("", "Azure", "a b", "x" * 33, 7):
        with pytest.raises(FlavorError, match="lower-case"):
            flavors.register(bad, ToyFlavor)  # type: ignore[arg-type]
    with pytest.raises(FlavorError, match="callable"):
        flavors.register("notcallable", 3)  # type: ignore[arg-type]


def test_a_wait_answers_on_a_change_or_at_its_deadline() -> None:
    toy, store, vm = ToyFlavor(), EventStore(), make_vm()
    wait = toy.handle(get("/toy/wait?timeout=30"), vm, store, 100.0)
    assert isinstance(wait, Wait) and wait.deadline == 130.0
    again = wait.resume(store, 110.0)  # woken, nothing changed: waits on, same deadline
    assert isinstance(again, Wait) and again.deadline == 130.0
    timed_out = again.resume(store, 130.0)
    assert isinstance(timed_out, Response) and timed_out.body == b"timeout"
    store.add(azure_event("e1", "Reboot", ("vm1",), 500.0, 100.0))
    changed = wait.resume(store, 111.0)
    assert isinstance(changed, Response) and changed.body == b"changed 2"
    assert toy.handle(get("/toy/wait?timeout=-1"), vm, store, 100.0).status == 400
    assert toy.handle(get("/toy/whoami"), vm, store, 100.0).body == b"vm1"
    assert toy.handle(get("/toy/whoami"), None, store, 100.0).status == 403
