"""GCE's per-VM scheduling and project from the topology: loaded (errors name file, line and
field), served under ``scheduling/`` and ``project/``, and used by the planner on invented
timelines (a live migration moves the VM to another node; a termination of a VM without
automatic restart leaves it stopped)."""

from __future__ import annotations

import json
import random

import pytest

from netsim.errors import TopologyError
from netsim.maintenance.planner import Planner
from netsim.model.load import parse
from netsim.runtime.identity import identity_of
from netsim.state import datacenter_from_json, datacenter_to_json
from netsim_imds.events import EventStore
from netsim_imds.gcp import GcpFlavor
from netsim_imds.request import Headers, Request

from tests.maintenance.support import effects

T = 5000.0
TOPOLOGY = """
[datacenter]
name = "gsched"
cloud = "gcp"

[project]
id = "acme-prod-1"
number = 424242424242
attributes = { "ssh-keys" = "alice:ssh-ed25519 AAAAC3Nza alice", "enable-oslogin" = "FALSE" }

[[node]]
name = "n1"

[[node]]
name = "n2"

[[availability_set]]
name = "web"

[[vm]]
name = "web1"
node = "n1"
availability_set = "web"
metadata = { "role" = "frontend" }

[[vm]]
name = "web2"
node = "n1"
availability_set = "web"
on_host_maintenance = "TERMINATE"
automatic_restart = false

[[vm]]
name = "spot1"
node = "n2"
preemptible = true
"""


def get(dc, vm: str, path: str) -> str:
    target = "/computeMetadata/v1/" + path
    p, _, qs = target.partition("?")
    query = tuple(tuple(q.split("=", 1)) for q in qs.split("&") if q)
    request = Request("GET", target, p, query, Headers((("Metadata-Flavor", "Google"),)))
    answer = GcpFlavor().handle(request, identity_of(dc, vm), EventStore(), T)
    assert answer.status == 200, (path, answer.status, answer.body)
    return answer.body.decode()


def test_scheduling_project_and_attributes_are_served_from_the_topology() -> None:
    dc = parse(TOPOLOGY, "gsched.toml")
    assert datacenter_from_json(json.loads(json.dumps(datacenter_to_json(dc)))) == dc  # the state folder keeps them
    assert [get(dc, "web1", f"instance/scheduling/{k}") for k in
            ("on-host-maintenance", "automatic-restart", "preemptible")] == ["MIGRATE", "TRUE", "FALSE"]
    assert [get(dc, "web2", f"instance/scheduling/{k}") for k in
            ("on-host-maintenance", "automatic-restart", "preemptible")] == ["TERMINATE", "FALSE", "FALSE"]
    # A preemptible VM's defaults are the only values GCE accepts for it.
    assert json.loads(get(dc, "spot1", "instance/scheduling/?recursive=true")) == {
        "automaticRestart": "FALSE", "onHostMaintenance": "TERMINATE", "preemptible": "TRUE"}
    assert get(dc, "web1", "instance/attributes/role") == "frontend"
    assert get(dc, "web1", "project/project-id") == "acme-prod-1"
    assert get(dc, "web1", "project/numeric-project-id") == "424242424242"
    assert get(dc, "web1", "project/attributes/ssh-keys") == "alice:ssh-ed25519 AAAAC3Nza alice"
    assert get(dc, "web1", "project/attributes/") == "ssh-keys\nenable-oslogin\n"
    assert get(dc, "web1", "instance/zone") == "projects/424242424242/zones/us-central1-a"
    project = json.loads(get(dc, "spot1", "project/?recursive=true"))
    assert project["numericProjectId"] == 424242424242 and project["attributes"]["enable-oslogin"] == "FALSE"


@pytest.mark.parametrize("old, new, field", [
    ("preemptible = true", 'preemptible = true\non_host_maintenance = "MIGRATE"', "vm[2].on_host_maintenance"),
    ("preemptible = true", "preemptible = true\nautomatic_restart = true", "vm[2].automatic_restart"),
    ("automatic_restart = false", 'automatic_restart = "no"', "vm[1].automatic_restart"),
    ('on_host_maintenance = "TERMINATE"', 'on_host_maintenance = "LIVE"', "vm[1].on_host_maintenance"),
    ('metadata = { "role" = "frontend" }', 'metadata = { "bad key" = "x" }', "vm[0].metadata"),
    ('id = "acme-prod-1"', 'id = "X"', "project.id"),
    ("number = 424242424242", "number = 0", "project.number"),
    ('id = "acme-prod-1"', 'colour = "red"', "project.colour"),
])
def test_bad_scheduling_and_project_keys_name_file_line_and_field(old: str, new: str, field: str) -> None:
    text = TOPOLOGY.replace(old, new)
    key = field.rpartition(".")[2]
    lines = text.splitlines()
    # The line of the key the error is about (the last occurrence: the changed table's).
    expected = max(i for i, ln in enumerate(lines) if ln.startswith(key + " ")) + 1
    with pytest.raises(TopologyError) as err:
        parse(text, "gsched.toml")
    assert (err.value.file, err.value.line, err.value.field) == ("gsched.toml", expected, field)


def planner() -> Planner:
    dc = parse(TOPOLOGY, "gsched.toml")
    return Planner.for_datacenter(dc, random.Random(7), T, cloud="gcp")


def test_a_live_migration_moves_the_vm_to_another_node() -> None:
    p = planner()
    event_id = p.add_event("web1", "n1", "web", "pause", T, notice_s=0)
    p.tick(T)
    (effect,) = effects(p.pop_actions())
    assert (effect.vm, effect.kind, effect.target_node) == ("web1", "pause", "n2")
    p.effect_done(event_id, "web1", T + 1)
    assert p.to_dict()["fleet"]["placement"][0] == ["web1", "n2", "web"]


def test_a_termination_of_a_vm_without_automatic_restart_leaves_it_stopped() -> None:
    p = planner()
    for vm in ("web1", "web2"):
        p.add_event(vm, "n1", "web", "reboot", T, notice_s=0)  # TERMINATE_ON_HOST_MAINTENANCE
    p.tick(T)
    kinds = {e.vm: e.kind for e in effects(p.pop_actions())}
    assert kinds == {"web1": "reboot", "web2": "stop"}  # web2: automatic_restart = false
    (web2,) = [e for e in p.events() if e.resources == ("web2",)]
    p.effect_done(web2.event_id, "web2", T + 1)
    assert p.stopped_vms() == ["web2"]
    again = Planner.from_dict(json.loads(json.dumps(p.to_dict())))  # a restarted daemon knows the policy
    again.add_event("web2", "n1", "web", "reboot", T + 2, notice_s=0)
    assert again.vm_started("web2") and again.stopped_vms() == []
    again.tick(T + 2)
    assert [(e.vm, e.kind) for e in effects(again.pop_actions())] == [("web2", "stop")]


def test_other_clouds_ignore_the_gce_keys() -> None:
    dc = parse(TOPOLOGY.replace('cloud = "gcp"', 'cloud = "azure"').replace("[project]", "[project]"), "a.toml")
    p = Planner.for_datacenter(dc, random.Random(7), T, cloud="azure")
    p.add_event("web2", "n1", "web", "reboot", T, notice_s=0)
    p.add_event("web1", "n1", "web", "pause", T, notice_s=0)
    p.tick(T)
    assert sorted((e.vm, e.kind, e.target_node) for e in effects(p.pop_actions())) == [
        ("web1", "pause", None), ("web2", "reboot", None)]
