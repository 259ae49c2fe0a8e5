"""A VM's EC2 instance metadata: the ``meta-data`` tree, dynamic data and user data (pure).

A tree is nested dicts: a dict is a directory (listed one name a line, ``name/`` for a
subtree, no LF after the last: botocore takes the body of ``iam/security-credentials/``
verbatim as the role), a string a leaf served as it is, a callable a leaf computed only
when it is served (JSON documents, credentials), a :class:`Directory` a directory
computed when it is walked into (:func:`resolve`). What depends on the VM alone
is built once per VM (:func:`static_tree`); only :data:`DYNAMIC` categories depend on the
time and the events, so a request for anything else never reads them. Shapes and values follow
``shared/reference/instance-metadata-trees.md`` section 2 (AWS's docs; AEMM's defaults
where AWS gives only an example). Every id is derived from the VM's stable ``vm_id``, so a
VM sees the same instance id, ENI, ... across reboots and moves.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from typing import Callable

from netsim_imds.aws import events as aws_events
from netsim_imds.events import Event
from netsim_imds.identity import VmIdentity

REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d")
"""An AWS region name (``us-east-1``, ``eu-west-3``, ``us-gov-west-1``)."""

VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15", "2008-02-01",
            "2008-09-01", "2009-04-04", "2011-01-01", "2011-05-01", "2012-01-12", "2014-02-25", "2014-11-05",
            "2015-10-20", "2016-04-19", "2016-06-30", "2016-09-02", "2018-03-28", "2018-08-17", "2018-09-24",
            "2019-10-01", "2020-10-27", "2021-01-03", "2021-03-23", "2021-07-15")
"""The dated roots served (AWS's list is not published in full: these are the builds its
docs and the category table name), then ``latest``."""

ACCOUNT_ID = "123456789012"
CREDENTIAL_PERIOD_S = 3600
"""New credentials every hour, ..."""
CREDENTIAL_LIFETIME_S = 6 * 3600
"""... each valid for six hours: a client always holds credentials that are good for more
than five minutes (AWS: new ones "at least five minutes before the expiration")."""

# meta-data categories and the metadata version that added each (reference 2.2).
SINCE = {"ami-id": "1.0", "ami-launch-index": "1.0", "ami-manifest-path": "1.0", "autoscaling": "2021-07-15",
         "block-device-mapping": "2007-12-15", "events": "2018-08-17", "hostname": "1.0", "iam": "2012-01-12",
         "instance-action": "2008-09-01", "instance-id": "1.0", "instance-life-cycle": "2019-10-01",
         "instance-type": "2007-08-29", "local-hostname": "2007-01-19", "local-ipv4": "1.0", "mac": "2011-01-01",
         "network": "2011-01-01", "placement": "2008-02-01", "reservation-id": "1.0",
         "security-groups": "1.0", "services": "2014-02-25", "spot": "2014-11-05"}


def _hex(vm: VmIdentity, what: str, n: int = 17) -> str:
    return hashlib.sha256(f"{what}/{vm.vm_id}".encode()).hexdigest()[:n]


def instance_id(vm: VmIdentity) -> str:
    """``i-`` + 17 hex digits, stable per VM."""
    return "i-" + _hex(vm, "instance")


def availability_zone(vm: VmIdentity) -> str:
    """The region plus a letter: ``a``, or the VM's zone (``"2"`` -> ``b``)."""
    letter = chr(ord("a") + (int(vm.zone) - 1) % 26) if vm.zone.isdigit() and int(vm.zone) > 0 else "a"
    return vm.location + letter


def local_hostname(vm: VmIdentity) -> str:
    """``ip-198-18-1-5.ec2.internal`` in us-east-1, ``ip-....<region>.compute.internal`` elsewhere."""
    domain = "ec2.internal" if vm.location == "us-east-1" else f"{vm.location}.compute.internal"
    return f"ip-{vm.address.replace('.', '-')}.{domain}"


def credentials(vm: VmIdentity, now: float) -> dict:
    """The role's temporary credentials at ``now`` (AWS-HMAC, rotated every period)."""
    return _credentials(vm.vm_id, vm.iam_role, int(now // CREDENTIAL_PERIOD_S) * CREDENTIAL_PERIOD_S)


@functools.lru_cache(maxsize=4096)
def _credentials(vm_id: str, role: str, issued: int) -> dict:
    # The same for a whole period: computed once per VM and period (three hashes and a
    # 2-KB token), not per request. Callers only read the dict.
    seed = hashlib.sha256(f"{vm_id}/{role}/{issued}".encode()).digest()
    key = base64.b32encode(seed[:10]).decode()
    secret = base64.b64encode(hashlib.sha256(seed + b"secret").digest()[:30]).decode()
    token = base64.b64encode(hashlib.sha512(seed + b"token").digest() * 3).decode()
    return {"Code": "Success", "LastUpdated": aws_events.iso_time(issued), "Type": "AWS-HMAC",
            "AccessKeyId": "ASIA" + key, "SecretAccessKey": secret, "Token": token,
            "Expiration": aws_events.iso_time(issued + CREDENTIAL_LIFETIME_S)}


def identity_document(vm: VmIdentity, booted: float = 0.0) -> dict:
    """``dynamic/instance-identity/document`` (reference 2.4), consistent with meta-data."""
    return {"accountId": ACCOUNT_ID, "architecture": "x86_64", "availabilityZone": availability_zone(vm),
            "billingProducts": None, "devpayProductCodes": None, "marketplaceProductCodes": None,
            "imageId": ami_id(vm), "instanceId": instance_id(vm), "instanceType": vm.vm_size,
            "kernelId": None, "pendingTime": aws_events.iso_time(booted), "privateIp": vm.address,
            "ramdiskId": None, "region": vm.location, "version": "2017-09-30"}


def ami_id(vm: VmIdentity) -> str:
    """The image id (AEMM's default image)."""
    return "ami-0a887e401f7654935"


def _json(value: object) -> str:
    # AWS's samples: "Key" : "value", two-space indent.
    return json.dumps(value, indent=2).replace('": ', '" : ')


DYNAMIC = frozenset({"autoscaling", "events", "iam", "instance-life-cycle", "spot"})
"""Categories that depend on the time or the VM's events; every other one is static."""


class Directory:
    """A directory computed only when it is listed or walked into (``make()`` gives its dict)."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], dict]) -> None:
        self.make = make


def resolve(node: object) -> object:
    """``node`` made concrete: a lazy leaf's string, a :class:`Directory`'s dict, else itself."""
    if isinstance(node, Directory):
        return node.make()
    return node() if callable(node) else node


_STATIC: dict[int, tuple[VmIdentity, dict]] = {}
_STATIC_MAX = 16384


def static_tree(vm: VmIdentity) -> dict:
    """Every category of ``vm``'s tree but :data:`DYNAMIC`, built once per identity object
    (the driver keeps one per VM until it claims or moves: then a new one, a new entry;
    keyed by ``id`` and checked with ``is``, since hashing ~35 fields per request costs
    more than the lookup). Bounded: emptied when full. Treat it as read-only."""
    hit = _STATIC.get(id(vm))
    if hit is not None and hit[0] is vm:
        return hit[1]
    if len(_STATIC) >= _STATIC_MAX:
        _STATIC.clear()
    tree = _build_static(vm)
    _STATIC[id(vm)] = (vm, tree)  # the identity is held: its id cannot be reused meanwhile
    return tree


def _build_static(vm: VmIdentity) -> dict:
    mac = vm.mac.lower()
    hostname = local_hostname(vm)
    interface = {
        "device-number": "0", "interface-id": "eni-" + _hex(vm, "eni"), "local-hostname": hostname,
        "local-ipv4s": vm.address, "mac": mac, "owner-id": ACCOUNT_ID,
        "security-group-ids": "sg-" + _hex(vm, "sg"), "security-groups": "default",
        "subnet-id": "subnet-" + _hex(vm, "subnet"), "subnet-ipv4-cidr-block": f"{vm.subnet_address}/{vm.prefix}",
        "vpc-id": "vpc-" + _hex(vm, "vpc"), "vpc-ipv4-cidr-block": "198.18.0.0/15",
        "vpc-ipv4-cidr-blocks": "198.18.0.0/15",
    }
    return {
        "ami-id": ami_id(vm), "ami-launch-index": "0", "ami-manifest-path": "(unknown)",
        "block-device-mapping": {"ami": "/dev/xvda", "root": "/dev/xvda"},
        "hostname": hostname, "instance-action": "none", "instance-id": instance_id(vm),
        "instance-type": vm.vm_size, "local-hostname": hostname, "local-ipv4": vm.address, "mac": mac,
        "network": {"interfaces": {"macs": {mac: interface}}},
        "placement": {"availability-zone": availability_zone(vm), "region": vm.location},
        "reservation-id": "r-" + _hex(vm, "reservation"), "security-groups": "default",
        "services": {"domain": "amazonaws.com", "partition": "aws"},
    }


def meta_data(vm: VmIdentity, live: tuple[Event, ...], ended: Callable[[], tuple[Event, ...]] | tuple[Event, ...],
              now: float) -> dict:
    """The ``meta-data`` tree of ``vm`` at ``now``, with its live and ended events (``ended``
    may be a callable, asked only when the history or a rebalance recommendation is needed)."""
    tree = dict(static_tree(vm))
    past = ended if callable(ended) else (lambda: ended)
    tree["autoscaling"] = {"target-lifecycle-state": aws_events.lifecycle_state(live, vm.name)}
    tree["events"] = {"maintenance": {"history": lambda: _json(aws_events.history(past(), vm.name)),
                                      "scheduled": lambda: _json(aws_events.scheduled(live, vm.name))},
                      "recommendations": Directory(lambda: _recommendations(vm, live, past(), now))}
    tree["instance-life-cycle"] = "on-demand"
    if vm.iam_role:
        tree["iam"] = {"info": lambda: _json({
            "Code": "Success", "LastUpdated": credentials(vm, now)["LastUpdated"],
            "InstanceProfileArn": f"arn:aws:iam::{ACCOUNT_ID}:instance-profile/{vm.iam_role}",
            "InstanceProfileId": "AIPA" + _hex(vm, "profile", 17).upper()}),
                       "security-credentials": {vm.iam_role: lambda: _json(credentials(vm, now))}}
    if (spot := aws_events.spot_action(live, vm.name)) is not None:
        action, spot = spot
        tree["instance-life-cycle"] = "spot"
        tree["spot"] = {"instance-action": _json({"action": action, "time": aws_events.iso_time(spot.not_before)}),
                        "termination-time": aws_events.iso_time(spot.not_before)}
    return tree


def _recommendations(vm: VmIdentity, live: tuple[Event, ...], ended: tuple[Event, ...], now: float) -> dict:
    """``events/recommendations/``: the rebalance recommendation once given (live or ended)."""
    if (r := aws_events.rebalance((*live, *ended), vm.name, now)) is None:
        return {}
    return {"rebalance": _json({"noticeTime": aws_events.iso_time(r.not_before)})}


def for_version(tree: dict, version: str) -> dict:
    """The categories a dated root of ``version`` has (``latest``: all)."""
    if version == "latest":
        return tree
    return {k: v for k, v in tree.items() if SINCE.get(k, "1.0") <= version}


def listing(node: dict) -> str:
    """A directory's body: one name a line, subtrees with a trailing ``/``, no final LF."""
    return "\n".join(f"{k}/" if isinstance(v, (dict, Directory)) else k for k, v in sorted(node.items()))
