"""The per-VM instance-data keys of the topology and [[identity]] tables: values, defaults,
and errors that name file, line and field."""

from __future__ import annotations

import pytest

from netsim.errors import TopologyError
from netsim.model.load import parse
from netsim.model.vmdata import AzureVm, Image
from netsim.runtime.identity import identity_of
from netsim.state import datacenter_from_json, datacenter_to_json

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7 me@host"
TOPOLOGY = f"""
[datacenter]
name = "t1"
[[node]]
name = "n1"
[[identity]]
name = "app"
client_id = "6efac642-778b-45f2-9024-18aad5b7a673"
[[availability_set]]
name = "web"
[[vm]]
name = "web1"
availability_set = "web"
tags = {{ env = "prod", team = "web" }}
admin_username = "ops"
ssh_keys = ["{KEY}"]
image = {{ publisher = "Debian", offer = "debian-12" }}
zone = "1"
priority = "Spot"
identity = ["app", "system"]
user_data = "#cloud-config"
secure_boot = true
[[vm]]
name = "solo"
identity = "app"
"""


def test_keys_are_read() -> None:
    dc = parse(TOPOLOGY, "t.toml")
    web1 = dc.vm("web1")
    assert web1.tags == (("env", "prod"), ("team", "web")) and web1.ssh_keys == (KEY,)
    assert web1.image == Image(publisher="Debian", offer="debian-12") and web1.zone == "1"
    assert web1.azure == AzureVm(priority="Spot", eviction_policy="Deallocate", identities=("system", "app"),
                                 secure_boot=True)
    assert dc.vm("solo").azure.identities == ("app",) and dc.vm("solo").admin_username == "azureuser"


def test_the_state_folder_keeps_them() -> None:
    dc = parse(TOPOLOGY, "t.toml")
    assert datacenter_from_json(datacenter_to_json(dc)) == dc


def test_identity_of_carries_the_azure_profile() -> None:
    dc = parse(TOPOLOGY, "t.toml")
    ident = identity_of(dc, "web1")
    system, app = ident.azure.identities
    assert system.system and system.resource_id.endswith("/virtualMachines/web1")
    assert app.client_id == "6efac642-778b-45f2-9024-18aad5b7a673"
    assert app.resource_id.endswith("/Microsoft.ManagedIdentity/userAssignedIdentities/app")
    assert identity_of(dc, "solo").azure.identities[0] == app  # one identity, shared
    assert ident.azure.load_balancer == ("198.19.255.100", 80, 8080)  # in an availability set
    assert identity_of(dc, "solo").azure.load_balancer is None
    assert (ident.publisher, ident.offer, ident.tags, ident.azure.admin_username) == \
           ("Debian", "debian-12", (("env", "prod"), ("team", "web")), "ops")


@pytest.mark.parametrize("line, field, words", [
    ('tags = "env=prod"', "vm[0].tags", "must be a table"),
    ("tags = { env = 1 }", "vm[0].tags", "tags.env must be a string"),
    ('image = { color = "red" }', "vm[0].image", "unknown key 'color'"),
    ('identity = "nobody"', "vm[0].identity", "unknown identity 'nobody'"),
    ("identity = 3", "vm[0].identity", "must be"),
    ('priority = "Cheap"', "vm[0].priority", "must be one of"),
    ('eviction_policy = "Delete"', "vm[0].eviction_policy", "Spot"),
    ('zone = "4"', "vm[0].zone", "must be one of"),
    ('admin_username = "Root User"', "vm[0].admin_username", "Linux user name"),
    ('ssh_keys = ["hello"]', "vm[0].ssh_keys", "OpenSSH public key"),
    ("secure_boot = 1", "vm[0].secure_boot", "true or false"),
    ('license_type = "free"', "vm[0].license_type", "must be one of"),
])
def test_bad_values_name_file_line_and_field(line, field, words) -> None:
    text = f'[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\n{line}\n'
    with pytest.raises(TopologyError) as err:
        parse(text, "t.toml")
    assert err.value.file == "t.toml" and err.value.line == 5 and err.value.field == field
    assert words in str(err.value)


@pytest.mark.parametrize("table, field", [
    ('[[identity]]\nname = "x"\n', "identity[0].name"),
    ('[[identity]]\nname = "app"\nclient_id = "nope"\n', "identity[0].client_id"),
    ('[[identity]]\nname = "app"\ncolor = 1\n', "identity[0].color"),
])
def test_bad_identity_tables(table, field) -> None:
    with pytest.raises(TopologyError) as err:
        parse(f'[[node]]\nname = "n1"\n{table}', "t.toml")
    assert err.value.field == field and err.value.line is not None
