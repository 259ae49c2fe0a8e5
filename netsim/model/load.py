"""Loading a topology from TOML, with errors that name the file, line and field.

Format (every key but ``name`` is optional)::

    [datacenter]
    name = "dc1"            # at most 8 characters: it prefixes every namespace
    location = "westeurope"
    linklocal = "claim"     # RFC 3927 over raw ARP; or "static" (deterministic addresses)
    timers = "rfc"          # or "fast" (RFC 3927 intervals divided; not conformant)
    cloud = "azure"         # the metadata service's flavor (netsim_imds.flavors: NETSIM_FLAVORS adds more)

    [[node]]
    name = "n1"

    [[availability_set]]
    name = "web"
    update_domains = 5
    fault_domains = 2

    [[vm]]
    name = "web1"
    availability_set = "web"   # domains are assigned round-robin unless given
    node = "n1"                # default: fault domain f goes to node f mod #nodes
    update_domain = 0
    fault_domain = 0
    services = ["python3 -m http.server 8080"]
    containers = ["c1"]        # namespaces behind a NATing bridge inside the VM (at most 16)
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from netsim.model import bounds, gcedata, tomlfile, vmdata
from netsim.errors import TopologyError
from netsim.model.topology import VM, AvailabilitySet, Datacenter, Node
from netsim.model.validate import validate

_KEYS = {
    "datacenter": {"name", "location", "linklocal", "timers", "cloud"},
    "node": {"name"},
    "availability_set": {"name", "update_domains", "fault_domains"},
    "vm": {"name", "node", "availability_set", "update_domain", "fault_domain", "services", "size", "os_type",
           "http_tokens", "hop_limit", "iam_role", "user_data", "containers", *vmdata.VM_KEYS, *gcedata.VM_KEYS},
    "identity": set(vmdata.IDENTITY_KEYS),  # user-assigned managed identities (netsim/model/vmdata.py)
    "project": set(gcedata.PROJECT_KEYS),  # GCE's project (netsim/model/gcedata.py)
}
# A flavor's own defaults for keys the topology leaves out (AWS's regions are not Azure's).
CLOUD_DEFAULTS = {"aws": {"location": "us-east-1", "size": "m5.large"},
                  "gcp": {"location": "us-central1-a", "size": "e2-standard-2"}}
_CHOICES = {"linklocal": ("static", "claim"), "timers": ("rfc", "fast")}
DEFAULT_TOPOLOGY = "default.toml"
MAX_FILE_BYTES = tomlfile.MAX_FILE_BYTES  # a module global: tests lower it


def _get(data: dict, key: str, kind: type, default: Any, fail) -> Any:
    if key not in data:
        return default
    value = data[key]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        fail(key, f"must be an integer, not {value!r}")
    if kind is str and not isinstance(value, str):
        fail(key, f"must be a string, not {value!r}")
    if kind is list and not (isinstance(value, list) and all(isinstance(s, str) for s in value)):
        fail(key, f"must be a list of strings, not {value!r}")
    if kind is dict and not isinstance(value, dict):
        fail(key, f"must be a table such as {key} = {{ name = \"value\" }}, not {value!r}")
    if kind is bool and not isinstance(value, bool):
        fail(key, f"must be true or false, not {value!r}")
    return value


def parse(text: str, file: str | None = None) -> Datacenter:
    """Parse and validate a topology given as TOML text."""
    data = tomlfile.decode(text, file)
    locate = tomlfile.Locator(text)

    def failer(table: str, index: int):
        def fail(key: str, message: str):
            field = f"{table}[{index}].{key}" if index >= 0 else f"{table}.{key}"
            raise TopologyError(message, file=file, line=locate(table, index, key), field=field)
        return fail

    for table in data:
        if table not in _KEYS:
            raise TopologyError(f"unknown table [{table}] (known: {', '.join(sorted(_KEYS))})",
                                file=file, line=locate(table, -1, "") or locate(table, 0, ""), field=table)
    dc_table = data.get("datacenter", {})
    if not isinstance(dc_table, dict):
        raise TopologyError("[datacenter] must be a table", file=file, field="datacenter")
    tables: dict[str, list[dict]] = {}
    for table in ("node", "availability_set", "vm", "identity"):
        items = data.get(table, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise TopologyError(f"write each {table} as a [[{table}]] table", file=file,
                                line=locate(table, -1, ""), field=table)
        tables[table] = items
    for table, items in (("datacenter", [dc_table]), *tables.items()):
        for i, item in enumerate(items):
            index = -1 if table == "datacenter" else i
            for key in item:
                if key not in _KEYS[table]:
                    failer(table, index)(key, f"unknown key {key!r} (known: {', '.join(sorted(_KEYS[table]))})")
            if table != "datacenter" and "name" not in item:
                failer(table, index)("name", f"every [[{table}]] needs a name")

    fail = failer("datacenter", -1)
    settings = {key: _get(dc_table, key, str, default, fail)
                for key, default in (("location", "westeurope"), ("linklocal", "claim"), ("timers", "rfc"),
                                     ("cloud", Datacenter.cloud))}
    for key, choices in _CHOICES.items():
        if settings[key] not in choices:
            fail(key, f"must be one of {', '.join(repr(c) for c in choices)}, not {settings[key]!r}")
    cloud_defaults = CLOUD_DEFAULTS.get(settings["cloud"], {})
    if "location" not in dc_table and "location" in cloud_defaults:
        settings["location"] = cloud_defaults["location"]

    nodes = tuple(Node(_get(n, "name", str, None, failer("node", i)), i) for i, n in enumerate(tables["node"]))
    identities = tuple(vmdata.parse_identity(t, _get, failer("identity", i)) for i, t in enumerate(tables["identity"]))
    avsets = []
    for i, a in enumerate(tables["availability_set"]):
        f = failer("availability_set", i)
        counts = {}
        for key, bound in (("update_domains", bounds.UPDATE_DOMAINS), ("fault_domains", bounds.FAULT_DOMAINS)):
            counts[key] = _get(a, key, int, getattr(AvailabilitySet, key), f)
            # Checked here, not only in validate(): VMs are spread over these counts below.
            if problem := bounds.problem(counts[key], bound, f"{key} (Azure's limits)"):
                f(key, problem)
        avsets.append(AvailabilitySet(_get(a, "name", str, None, f), **counts))
    avset_by_name = {a.name: a for a in avsets}
    members: dict[str, int] = {}
    vms = []
    for i, v in enumerate(tables["vm"]):
        f = failer("vm", i)
        avset_name = _get(v, "availability_set", str, None, f)
        ordinal = members.get(avset_name, 0) if avset_name else i
        if avset_name:
            members[avset_name] = ordinal + 1
        avset = avset_by_name.get(avset_name) if avset_name else None
        # Azure assigns update and fault domains round-robin in order of creation.
        ud = _get(v, "update_domain", int, ordinal % avset.update_domains if avset else 0, f)
        fd = _get(v, "fault_domain", int, ordinal % avset.fault_domains if avset else 0, f)
        default_node = nodes[(fd if avset else i) % len(nodes)].name if nodes else ""
        vms.append(VM(
            name=_get(v, "name", str, None, f),
            node=_get(v, "node", str, default_node, f),
            index=i,
            availability_set=avset_name,
            update_domain=ud,
            fault_domain=fd,
            services=tuple(_get(v, "services", list, [], f)),
            size=_get(v, "size", str, cloud_defaults.get("size", VM.size), f),
            os_type=_get(v, "os_type", str, VM.os_type, f),
            http_tokens=_get(v, "http_tokens", str, VM.http_tokens, f),
            hop_limit=_get(v, "hop_limit", int, VM.hop_limit, f),
            iam_role=_get(v, "iam_role", str, VM.iam_role, f),
            user_data=_get(v, "user_data", str, VM.user_data, f),
            containers=tuple(_get(v, "containers", list, [], f)),
            **vmdata.parse_vm(v, _get, f, {u.name for u in identities}),
            gce=gcedata.parse_vm(v, _get, f),
        ))
    project_table = data.get("project", {})
    if not isinstance(project_table, dict):
        raise TopologyError("[project] must be a table", file=file,
                            line=locate("project", -1, "") or locate("project", 0, ""), field="project")
    settings["project"] = gcedata.parse_project(project_table, _get, failer("project", -1))
    dc = Datacenter(name=_get(dc_table, "name", str, "dc1", fail), nodes=nodes, vms=tuple(vms),
                    availability_sets=tuple(avsets), identities=identities, source=file, **settings)
    validate(dc, locate, file)
    return dc


def load(path: str | None = None) -> Datacenter:
    """Load a topology file, or the embedded default when ``path`` is None."""
    if path is None:
        text = resources.files("netsim.model").joinpath(DEFAULT_TOPOLOGY).read_text()
        return parse(text, "<default topology>")
    text = tomlfile.read_text(path, "topology", limit=MAX_FILE_BYTES)
    return parse(text, path)
