"""A VM's instance data from the topology: tags, the admin user and SSH keys, the image,
the zone, and Azure's own keys (priority, eviction, managed identities, plan, ...).

Keys of ``[[vm]]`` (all optional) and of ``[[identity]]`` (a user-assigned managed
identity that VMs name)::

    [[identity]]
    name = "app"                  # the identity's resource name
    client_id = "<guid>"          # default: derived from the datacenter and the name
    object_id = "<guid>"          # default: derived too

    [[vm]]
    name = "web1"
    tags = { env = "prod", team = "web" }   # a table of strings: tags and tagsList
    admin_username = "azureuser"
    ssh_keys = ["ssh-ed25519 AAAA... me@host"]
    image = { publisher = "Canonical", offer = "ubuntu-24_04-lts", sku = "server", version = "latest" }
    zone = "1"                    # "", "1", "2" or "3"
    priority = "Spot"             # "Regular" (default), "Spot" or "Low"
    eviction_policy = "Delete"    # Spot and Low only: "Deallocate" (default) or "Delete"
    identity = ["system", "app"]  # "system" and/or names of [[identity]] tables
    custom_data = "#cloud-config ..."
    plan = { name = "", product = "", publisher = "" }
    license_type = ""             # "", "Windows_Server", "Windows_Client", "RHEL_BYOS", "SLES_BYOS"
    secure_boot = false
    virtual_tpm = false

``user_data`` and ``size`` are the VM's existing keys (one owner, every flavor reads them).
Limits are Azure's (50 tags, names up to 512 and values up to 256 characters, custom data
up to 64 KiB). Every error names file, line and field (the loader's ``fail``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from netsim_imds.identity import VmIdentity

Fail = Callable[[str, str], None]
Get = Callable[[dict, str, type, Any, Fail], Any]

VM_KEYS = frozenset({"tags", "admin_username", "ssh_keys", "image", "zone", "priority", "eviction_policy",
                     "identity", "custom_data", "plan", "license_type", "secure_boot", "virtual_tpm"})
"""The ``[[vm]]`` keys this module reads."""
IDENTITY_KEYS = frozenset({"name", "client_id", "object_id"})
"""The keys of an ``[[identity]]`` table."""
SYSTEM = "system"

MAX_TAGS, MAX_TAG_NAME, MAX_TAG_VALUE = 50, 512, 256
MAX_CUSTOM_DATA = 64 * 1024
ZONES = ("", "1", "2", "3")
PRIORITIES = ("Regular", "Spot", "Low")
EVICTION_POLICIES = ("Deallocate", "Delete")
LICENSE_TYPES = ("", "Windows_Server", "Windows_Client", "RHEL_BYOS", "SLES_BYOS")
IMAGE_KEYS = ("publisher", "offer", "sku", "version")
PLAN_KEYS = ("name", "product", "publisher")

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_SSH_KEY = re.compile(r"(ssh-(rsa|ed25519|dss)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( .*)?")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,127}")
_TAG_NAME_FORBIDDEN = set('<>%&\\?/')


@dataclass(frozen=True)
class Image:
    """The VM's image reference (Azure's publisher/offer/sku/version)."""

    publisher: str = VmIdentity.publisher
    offer: str = VmIdentity.offer
    sku: str = VmIdentity.sku
    version: str = VmIdentity.image_version


@dataclass(frozen=True)
class UserIdentity:
    """A user-assigned managed identity (``[[identity]]``); "" ids are derived at run time."""

    name: str
    client_id: str = ""
    object_id: str = ""


@dataclass(frozen=True)
class AzureVm:
    """A VM's Azure-only keys."""

    priority: str = "Regular"
    eviction_policy: str = ""
    identities: tuple[str, ...] = ()
    """``"system"`` and/or names of user-assigned identities."""
    custom_data: str = ""
    plan: tuple[str, str, str] = ("", "", "")
    license_type: str = ""
    secure_boot: bool = False
    virtual_tpm: bool = False


def _strings_table(value: dict, key: str, fail: Fail, allowed: tuple[str, ...] | None = None) -> dict[str, str]:
    for name, item in value.items():
        if allowed is not None and name not in allowed:
            fail(key, f"unknown key {name!r} in {key} (known: {', '.join(allowed)})")
        if not isinstance(item, str):
            fail(key, f"{key}.{name} must be a string, not {item!r}")
    return value


def _choice(value: str, choices: tuple[str, ...], key: str, fail: Fail) -> str:
    if value not in choices:
        fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return value


def parse_identity(item: dict, get: Get, fail: Fail) -> UserIdentity:
    """One ``[[identity]]`` table."""
    name = get(item, "name", str, None, fail)
    if not _IDENTITY_NAME.fullmatch(name):
        fail("name", f"identity name {name!r}: use 3 to 128 letters, digits, '-' or '_', starting with a letter "
                     "or digit")
    ids = {}
    for key in ("client_id", "object_id"):
        ids[key] = get(item, key, str, "", fail).lower()
        if ids[key] and not _GUID.fullmatch(ids[key]):
            fail(key, f"must be a GUID such as 6efac642-778b-45f2-9024-18aad5b7a673, not {ids[key]!r}")
    return UserIdentity(name, **ids)


def _identities(v: dict, get: Get, fail: Fail, known: set[str]) -> tuple[str, ...]:
    value = v.get("identity", [])
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        fail("identity", f'must be "system", the name of an [[identity]], or a list of them, not {value!r}')
    for n in names:
        if n != SYSTEM and n not in known:
            fail("identity", f"unknown identity {n!r}: declare it in an [[identity]] table "
                             f"(known: {', '.join(sorted(known)) or 'none'}) or write \"system\"")
    if len(set(names)) != len(names):
        fail("identity", f"names an identity twice: {names!r}")
    return tuple(sorted(names, key=lambda n: n != SYSTEM))  # the system identity first


def parse_vm(v: dict, get: Get, fail: Fail, identities: set[str]) -> dict[str, Any]:
    """The :class:`~netsim.model.topology.VM` fields this module owns, from one ``[[vm]]``."""
    tags = _strings_table(get(v, "tags", dict, {}, fail), "tags", fail)
    if len(tags) > MAX_TAGS:
        fail("tags", f"has {len(tags)} tags; Azure allows at most {MAX_TAGS}")
    for name, value in tags.items():
        if not name or len(name) > MAX_TAG_NAME or _TAG_NAME_FORBIDDEN & set(name):
            fail("tags", f"tag name {name!r}: 1 to {MAX_TAG_NAME} characters, none of < > % & \\ ? /")
        if len(value) > MAX_TAG_VALUE:
            fail("tags", f"tag {name!r}: a value has at most {MAX_TAG_VALUE} characters")
    user = get(v, "admin_username", str, "azureuser", fail)
    if not _USER.fullmatch(user) or user == "root":
        fail("admin_username", f"{user!r} is not a Linux user name (lower case, at most 32, not root)")
    keys = get(v, "ssh_keys", list, [], fail)
    for key in keys:
        if not _SSH_KEY.fullmatch(key.strip()):
            fail("ssh_keys", f"not an OpenSSH public key line (\"ssh-ed25519 AAAA... comment\"): {key[:40]!r}")
    image = _strings_table(get(v, "image", dict, {}, fail), "image", fail, IMAGE_KEYS)
    plan = _strings_table(get(v, "plan", dict, {}, fail), "plan", fail, PLAN_KEYS)
    priority = _choice(get(v, "priority", str, "Regular", fail), PRIORITIES, "priority", fail)
    eviction = get(v, "eviction_policy", str, "", fail)
    if eviction and priority == "Regular":
        fail("eviction_policy", 'applies to priority = "Spot" or "Low" only')
    if eviction:
        _choice(eviction, EVICTION_POLICIES, "eviction_policy", fail)
    custom = get(v, "custom_data", str, "", fail)
    if len(custom.encode()) > MAX_CUSTOM_DATA:
        fail("custom_data", f"has {len(custom.encode())} bytes; Azure allows at most {MAX_CUSTOM_DATA}")
    return {
        "tags": tuple(tags.items()),
        "admin_username": user,
        "ssh_keys": tuple(k.strip() for k in keys),
        "image": Image(**image),
        "zone": _choice(get(v, "zone", str, "", fail), ZONES, "zone", fail),
        "azure": AzureVm(
            priority=priority,
            eviction_policy=eviction or ("Deallocate" if priority != "Regular" else ""),
            identities=_identities(v, get, fail, identities),
            custom_data=custom,
            plan=tuple(plan.get(k, "") for k in PLAN_KEYS),  # type: ignore[arg-type]
            license_type=_choice(get(v, "license_type", str, "", fail), LICENSE_TYPES, "license_type", fail),
            secure_boot=get(v, "secure_boot", bool, False, fail),
            virtual_tpm=get(v, "virtual_tpm", bool, False, fail),
        ),
    }


def eviction_deallocates(dc: Any, vm: Any) -> bool:
    """Whether a Preempt (an eviction) of topology VM ``vm`` of datacenter ``dc`` stops
    (deallocates) it rather than deleting it, for the planner: on an azure datacenter, a
    Spot (or Low) VM whose ``eviction_policy`` is Deallocate, the default. A Regular VM has no
    eviction policy (Azure never evicts one): a Preempt filed on it deletes it, as Delete."""
    return dc.cloud == "azure" and vm.azure.eviction_policy == "Deallocate"


def vm_fields_from_json(v: dict) -> dict[str, Any]:
    """This module's VM fields rebuilt from ``dataclasses.asdict`` JSON (the state folder);
    a folder written before they existed gets the defaults."""
    out: dict[str, Any] = {}
    if "tags" in v:
        out["tags"] = tuple((str(k), str(val)) for k, val in v["tags"])
    if "ssh_keys" in v:
        out["ssh_keys"] = tuple(v["ssh_keys"])
    if isinstance(v.get("image"), dict):
        out["image"] = Image(**v["image"])
    if isinstance(v.get("azure"), dict):
        az = v["azure"]
        out["azure"] = AzureVm(**{**az, "identities": tuple(az.get("identities", ())),
                                  "plan": tuple(az.get("plan", ("", "", "")))})
    return out


def identities_from_json(data: dict) -> tuple[UserIdentity, ...]:
    """The datacenter's ``[[identity]]`` tables rebuilt from the state folder's JSON."""
    return tuple(UserIdentity(**u) for u in data.get("identities", ()))
