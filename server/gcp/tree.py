"""The GCE metadata tree of one VM, and its three renderings (listing, JSON, text).

A tree is nested :class:`Dir` objects whose leaves are strings, integers, lists of
strings or JSON objects (``upcoming-maintenance``). Facts from
``shared/reference/instance-metadata-trees.md`` section 3:

- listings: one entry per LF-terminated line, directories end in ``/``; list-valued
  leaves (``scopes``, ``tags`` is a JSON array) are leaves;
- recursive JSON: predefined hyphenated names become camelCase, user keys (the
  ``attributes/`` directories) stay verbatim, ``id``, ``numericProjectId`` are numbers;
- ``ETag``: lower-case hex, 16 digits, a hash of the body (same body, same ETag).

The values are derived from the caller's identity (its stable vmId, routable address,
MAC, size, location) so that no fact is stored twice.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import json
import re
import time

from netsim_imds.events import Event
from netsim_imds.gcp import events as gcp_events
from netsim_imds.identity import VmIdentity

DEFAULT_ZONE = "us-central1-a"
DEFAULT_MACHINE_TYPE = "e2-standard-2"
IMAGE = "projects/debian-cloud/global/images/debian-12-bookworm-v20240910"
CPU_PLATFORM = "Intel Broadwell"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
TOKEN_LIFETIME = 3600
TOKEN_MIN_REMAINING = 300
"""Google's metadata server hands a cached access token out only while it has at least 5
minutes left, then a new one: a client (google-auth counts a token expiring within 3 m 45 s
as invalid) never gets one it would refresh at once."""
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]")


class Dir(dict):
    """A directory of the tree; ``verbatim``: its keys are user keys (kept as they are in JSON)."""

    verbatim = False


class UserDir(Dir):
    """A directory of user keys (``attributes/``)."""

    verbatim = True


def rfc3339(t: float) -> str:
    """``2026-12-01T12:00:00Z`` (UTC, whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _number(text: str, digits: int) -> int:
    """A stable number of ``digits`` digits derived from ``text``."""
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    return 10 ** (digits - 1) + n % (9 * 10 ** (digits - 1))


def zone_of(caller: VmIdentity) -> str:
    """The VM's zone: the topology's ``location`` when it is a GCE zone, else us-central1-a."""
    return caller.location if _ZONE.fullmatch(caller.location) else DEFAULT_ZONE


def project_id(caller: VmIdentity) -> str:
    """The project: the topology's ``[project] id``, else the datacenter's resource group
    (``netsim-DC``)."""
    return caller.gce.project_id or caller.resource_group


def project_number(caller: VmIdentity) -> int:
    """The numeric project id: the topology's ``[project] number``, else 12 digits derived
    from the project id (stable per project)."""
    return caller.gce.project_number or _number(project_id(caller), 12)


def instance_id(caller: VmIdentity) -> int:
    """The numeric instance id (19 digits, stable per VM: from its vmId)."""
    return _number(caller.vm_id, 19)


def service_account(caller: VmIdentity) -> str:
    """The default service account's email (the compute engine default account's shape)."""
    return f"{project_number(caller)}-compute@developer.gserviceaccount.com"


def access_token(caller: VmIdentity, now: float) -> dict[str, object]:
    """A fake access token in Google's JSON shape, counting down: a new one every
    ``TOKEN_LIFETIME - TOKEN_MIN_REMAINING`` seconds, each valid ``TOKEN_LIFETIME`` from its
    issue, so ``expires_in`` stays between TOKEN_MIN_REMAINING - 1 and TOKEN_LIFETIME."""
    period = TOKEN_LIFETIME - TOKEN_MIN_REMAINING
    start = int(now // period) * period
    digest = hashlib.sha256(f"{caller.vm_id}/{start}".encode()).hexdigest()
    return {"access_token": f"ya29.netsim-{digest}", "expires_in": int(start + TOKEN_LIFETIME - now) - 1,
            "token_type": "Bearer"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def identity_token(caller: VmIdentity, audience: str, full: bool, now: float) -> str:
    """A JWT for ``audience`` with the claims GCE puts in one (signature fake: netsim signs nothing)."""
    iat = int(now)
    claims: dict[str, object] = {
        "aud": audience, "azp": str(_number(service_account(caller), 21)), "email": service_account(caller),
        "email_verified": True, "exp": iat + 3600, "iat": iat, "iss": "https://accounts.google.com",
        "sub": str(_number(service_account(caller), 21)),
    }
    if full:
        claims["google"] = {"compute_engine": {
            "instance_creation_timestamp": 1767225600, "instance_id": str(instance_id(caller)),
            "instance_name": caller.name, "project_id": project_id(caller),
            "project_number": project_number(caller), "zone": zone_of(caller)}}
    head = _b64(json.dumps({"alg": "RS256", "kid": "netsim", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{head}.{body}.{_b64(hashlib.sha256(f'{head}.{body}'.encode()).digest())}"


def _network(caller: VmIdentity) -> Dir:
    ip = caller.address
    net = ipaddress.ip_interface(f"{ip}/{caller.prefix}").network if ip else None
    return Dir({
        "gateway": str(net.network_address + 1) if net else "",
        "ip": ip,
        "mac": caller.mac,
        "network": f"projects/{project_number(caller)}/networks/default",
        "subnetmask": str(net.netmask) if net else "",
    })


def instance_tree(caller: VmIdentity, events: list[Event], maintenance_event: str) -> Dir:
    """The ``instance/`` directory of ``caller`` (``events``: its own live events)."""
    out = Dir(_static_instance(caller))  # a shallow copy: the shared parts are never changed
    out["maintenance-event"] = maintenance_event
    out["preempted"] = "TRUE" if gcp_events.preempted(events) else "FALSE"
    out["upcoming-maintenance"] = gcp_events.upcoming(events)
    return out


def _flag(value: bool) -> str:
    return "TRUE" if value else "FALSE"


@functools.lru_cache(maxsize=8192)
def _static_instance(caller: VmIdentity) -> Dir:
    """What of ``instance/`` depends on the caller alone, built once per identity (a wake of
    every parked poll of a node renders each again: this keeps a render to a few us)."""
    zone = zone_of(caller)
    machine = caller.vm_size if not caller.vm_size.startswith("Standard_") else DEFAULT_MACHINE_TYPE
    email = service_account(caller)
    account = Dir({"aliases": ["default"], "email": email, "identity": None, "scopes": list(SCOPES), "token": None})
    tags = [caller.availability_set] if caller.availability_set else []
    return Dir({
        # The topology's user data is the VM's startup script (GCE's user-data key).
        # The topology's instance metadata ([[vm]] metadata) wins over its tags.
        "attributes": UserDir({**dict(caller.tags),
                               **({"startup-script": caller.user_data} if getattr(caller, "user_data", "") else {}),
                               **dict(caller.gce.attributes)}),
        "cpu-platform": CPU_PLATFORM,
        "description": "",
        "hostname": f"{caller.name}.{zone}.c.{project_id(caller)}.internal",
        "id": instance_id(caller),
        "image": IMAGE,
        "machine-type": f"projects/{project_number(caller)}/machineTypes/{machine}",
        "maintenance-event": None,  # the three dynamic keys: set by instance_tree
        "name": caller.name,
        "network-interfaces": Dir({"0": _network(caller)}),
        "preempted": None,
        "scheduling": Dir({"automatic-restart": _flag(caller.gce.automatic_restart),
                           "on-host-maintenance": caller.gce.on_host_maintenance,
                           "preemptible": _flag(caller.gce.preemptible)}),
        "service-accounts": Dir({"default": account, email: account}),
        "tags": tags,
        "upcoming-maintenance": None,
        "zone": f"projects/{project_number(caller)}/zones/{zone}",
    })


@functools.lru_cache(maxsize=8192)
def project_tree(caller: VmIdentity) -> Dir:
    """The ``project/`` directory."""
    return Dir({"attributes": UserDir(caller.gce.project_attributes), "numeric-project-id": project_number(caller),
                "project-id": project_id(caller)})


def camel(name: str) -> str:
    """``network-interfaces`` -> ``networkInterfaces`` (the recursive JSON's names)."""
    head, *rest = name.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def to_json(node: object) -> object:
    """The recursive JSON of a tree node (the token and identity leaves are left out, as GCE
    does; numbered directories become arrays)."""
    if not isinstance(node, Dir):
        return node
    if node and all(k.isdigit() for k in node):
        return [to_json(node[k]) for k in sorted(node, key=int)]
    return {k if node.verbatim else camel(k): to_json(v) for k, v in node.items() if v is not None}


def leaf_text(value: object) -> str:
    """A leaf as ``alt=text`` renders it: lists one value a line (``tags`` is a JSON
    array), objects as JSON."""
    if isinstance(value, list):
        return "\n".join(value) + ("\n" if value else "")
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def tags_text(value: list[str]) -> str:
    """``instance/tags`` as text: a JSON array (reference 3.2)."""
    return json.dumps(value)


def listing(node: Dir) -> str:
    """A directory's listing: one name a line, directories with a trailing ``/``."""
    return "".join(f"{k}/\n" if isinstance(v, Dir) else f"{k}\n" for k, v in node.items())


def recursive_text(node: Dir, prefix: str = "") -> str:
    """``?recursive=true&alt=text``: ``path value`` lines (⚠ the reference has no capture of it)."""
    out = []
    for k, v in node.items():
        if v is None:
            continue
        if isinstance(v, Dir):
            out.append(recursive_text(v, f"{prefix}{k}/"))
        else:
            text = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
            out.append(f"{prefix}{k} {text}\n")
    return "".join(out)


def etag(body: bytes) -> str:
    """The ETag of an answer: 16 lower-case hex digits of a hash of its body."""
    return hashlib.md5(body, usedforsecurity=False).hexdigest()[:16]
