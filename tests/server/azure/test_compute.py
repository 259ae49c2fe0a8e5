"""The compute document's per-VM fields from the topology (osProfile, publicKeys, userData,
tags, image, zone, priority, ...), each limited by api-version (no sockets, no clock)."""

from __future__ import annotations

import base64

import pytest

from netsim_imds.azure.api import AzureConfig, AzureFlavor
from netsim_imds.identity import AzureProfile

from tests.server.azure.test_api import call
from tests.server.support import make_vm

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7 me@host"


@pytest.fixture
def api() -> AzureFlavor:
    return AzureFlavor(AzureConfig(rate_limit=None))


def compute(api, version="2021-02-01", **kw) -> dict:
    profile = AzureProfile(**kw.pop("azure", {}))
    resp, body = call(api, f"/metadata/instance/compute?api-version={version}",
                      caller=make_vm("web1", azure=profile, **kw))
    assert resp.status == 200
    return body


def test_the_topology_fills_the_2021_02_01_document(api) -> None:
    c = compute(api, tags=(("env", "prod"), ("team", "web")), user_data="#cloud-config\n", zone="2",
                publisher="Debian", offer="debian-12", sku="12-gen2", image_version="0.20240101",
                azure={"admin_username": "ops", "ssh_keys": (KEY,), "priority": "Spot", "eviction_policy": "Delete",
                       "plan": ("p", "prod", "pub"), "license_type": "RHEL_BYOS", "secure_boot": True,
                       "custom_data": "hello"})
    assert c["osProfile"] == {"adminUsername": "ops", "computerName": "web1", "disablePasswordAuthentication": "true"}
    assert c["publicKeys"] == [{"keyData": KEY, "path": "/home/ops/.ssh/authorized_keys"}]
    assert base64.b64decode(c["userData"]) == b"#cloud-config\n"
    assert base64.b64decode(c["customData"]) == b"hello"
    assert c["tags"] == "env:prod;team:web"
    assert c["tagsList"] == [{"name": "env", "value": "prod"}, {"name": "team", "value": "web"}]
    assert (c["publisher"], c["offer"], c["sku"], c["version"], c["zone"]) == \
           ("Debian", "debian-12", "12-gen2", "0.20240101", "2")
    assert c["storageProfile"]["imageReference"]["offer"] == "debian-12"
    assert (c["priority"], c["evictionPolicy"], c["licenseType"]) == ("Spot", "Delete", "RHEL_BYOS")
    assert c["plan"] == {"name": "p", "product": "prod", "publisher": "pub"}
    assert c["securityProfile"] == {"secureBootEnabled": "true", "virtualTpmEnabled": "false"}
    assert c["isHostCompatibilityLayerVm"] == "false"
    assert "extendedLocation" not in c and "additionalCapabilities" not in c  # 2021-03-01 and 2021-11-01


def test_a_regular_vm_has_no_eviction_policy_and_passwords_stay_on_without_keys(api) -> None:
    c = compute(api)
    assert (c["priority"], c["evictionPolicy"], c["userData"], c["publicKeys"]) == ("Regular", "", "", [])
    assert c["osProfile"]["disablePasswordAuthentication"] == "false"


@pytest.mark.parametrize("version, present, absent", [
    ("2018-02-01", set(), {"plan", "publicKeys", "customData"}),
    ("2018-04-02", {"plan", "publicKeys"}, {"customData", "securityProfile"}),
    ("2020-06-01", {"securityProfile", "isHostCompatibilityLayerVm", "customData"}, {"osProfile", "licenseType"}),
    ("2020-09-01", {"osProfile", "licenseType"}, {"priority", "evictionPolicy", "userData"}),
    ("2020-12-01", {"priority", "evictionPolicy"}, {"userData"}),
    ("2021-03-01", {"extendedLocation"}, {"additionalCapabilities"}),
    ("2021-11-01", {"additionalCapabilities"}, set()),
])
def test_new_fields_follow_the_api_version(api, version, present, absent) -> None:
    c = compute(api, version)
    assert present <= set(c) and not absent & set(c)


@pytest.mark.parametrize("version, has_flag, has_disk, has_encryption", [
    ("2020-07-15", False, False, False), ("2020-10-01", True, False, False),
    ("2021-02-01", True, True, False), ("2021-11-01", True, True, True)])
def test_nested_fields_follow_the_api_version(api, version, has_flag, has_disk, has_encryption) -> None:
    c = compute(api, version)
    assert ("disablePasswordAuthentication" in c["osProfile"]) is has_flag
    assert ("resourceDisk" in c["storageProfile"]) is has_disk
    assert ("encryptionAtHost" in c["securityProfile"]) is has_encryption


def test_user_data_as_text_is_the_base64(api) -> None:
    resp, body = call(api, "/metadata/instance/compute/userData?api-version=2021-02-01&format=text",
                      caller=make_vm(user_data="echo hi"))
    assert base64.b64decode(body) == b"echo hi"
