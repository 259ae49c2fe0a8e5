"""Loading an experiment from TOML, with errors that name the file, line and field.

Format (the README's "Experiments" section has the whole story)::

    [experiment]
    name = "seed-walk"
    topology = "default"        # or a topology file, relative to this file
    cloud = "azure"             # optional: another flavor for the topology
    duration = 120              # seconds: the run's bound
    agents = ["drain"]          # declared on every VM: webapp, drain, logger
    datacenter = "xp"           # the datacenter's name (netsim experiment run --name overrides)
    timers = "fast"             # RFC 3927 timers of the datacenter (default "fast")

    [[step]]
    name = "load"               # optional (default step1, step2, ...)
    do = "load"                 # event, walk, node_fail, node_recover, vm_start, fault, clear,
    at = 0                      #   wait, load, exec; due "at" seconds, or "after" a step ends
    rate = 100                  #   (+ "offset" seconds); the other keys are the kind's own

    [[check]]
    kind = "load"               # load, syslog, recovered, event, exit, output
    max_failed = 0

A step backed by a control command (event, walk, node_fail, node_recover, vm_start, fault)
takes exactly that command's arguments, checked here by the command's own registry
(:mod:`netsim.runtime.commands`) against the topology, before anything is built.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from netsim.errors import NetsimError, TopologyError
from netsim.experiments import spec
from netsim.experiments.spec import Check, Experiment, Step
from netsim.harness.loadgen import DEFAULT_TIMEOUT
from netsim.kernel import hostexec
from netsim.model import bounds, load, names, tomlfile
from netsim.model.load import CLOUD_DEFAULTS
from netsim.model.validate import validate
from netsim.runtime import commands
from netsim.runtime.controller import Controller, topology_names
from netsim.runtime.faultspec import classify, scope

_EXPERIMENT_KEYS = {"name", "topology", "cloud", "duration", "agents", "datacenter", "timers"}
_TABLES = ("experiment", "step", "check")
_FAULT_TIMING = ("target", "in", "duration")


class ExperimentError(TopologyError):
    """An experiment file or value is invalid; names the file, line and field (as a topology's)."""


class _TopologyContext:
    """The control commands' context for checking a step's arguments against the topology
    before the datacenter exists: only names can be checked (``known``)."""

    controller = linklocal = server = None
    known = Controller.known  # the one owner of "is there a VM/node/set of that name"

    def __init__(self, dc) -> None:
        self.dc = dc
        self.names = topology_names(dc)


def load_experiment(path: str) -> Experiment:
    """Load and check the experiment file at ``path``; :class:`ExperimentError` if it is bad."""
    return parse_experiment(tomlfile.read_text(path, "experiment", ExperimentError), path)


def parse_experiment(text: str, file: str | None = None) -> Experiment:
    """Parse and check an experiment given as TOML text (``file`` names it in errors and
    is where a relative topology path starts)."""
    data = tomlfile.decode(text, file, ExperimentError)
    locate = tomlfile.Locator(text)

    def fail(table: str, index: int, key: str, message: str):
        where = f"{table}[{index}]" if index >= 0 else table
        raise ExperimentError(message, file=file, line=locate(table, index, key), field=f"{where}.{key}" if key
                              else where)

    for table in data:
        if table not in _TABLES:
            fail(table, -1, "", f"unknown table [{table}] (known: [experiment], [[step]], [[check]])")
    head = data.get("experiment")
    if not isinstance(head, dict):
        raise ExperimentError("needs an [experiment] table with at least duration = SECONDS", file=file,
                              field="experiment")
    for table in ("step", "check"):
        if not isinstance(data.get(table, []), list):
            fail(table, -1, "", f"write each {table} as a [[{table}]] table")
    for key in head:
        if key not in _EXPERIMENT_KEYS:
            fail("experiment", -1, key, f"unknown key {key!r} (known: {', '.join(sorted(_EXPERIMENT_KEYS))})")

    def get(table: str, index: int, item: dict, key: str, kind: type | tuple, default: Any = None) -> Any:
        value = item.get(key, default)
        if key in item and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
            names_ = {str: "a string", bool: "true or false", list: "a list"}
            fail(table, index, key, f"must be {names_.get(kind, 'a string or a list of strings')}, not {value!r}")
        return value

    def num(table: str, index: int, item: dict, key: str, bound: bounds.Bound, default: Any = None) -> Any:
        if key not in item:
            return default
        if (why := bounds.problem(item[key], bound, key)) is not None:
            fail(table, index, key, why)
        return item[key]

    duration = num("experiment", -1, head, "duration", spec.EXPERIMENT_S)
    if duration is None:
        fail("experiment", -1, "duration", f"give the run's bound: duration = SECONDS ({spec.EXPERIMENT_S.describe()})")
    topology = _topology(head, file, fail, get)
    agents = tuple(get("experiment", -1, head, "agents", list, []))
    for agent in agents:
        if agent not in spec.AGENTS:
            fail("experiment", -1, "agents", f"agents are {', '.join(spec.AGENTS)}, not {agent!r}")
    dc_name = get("experiment", -1, head, "datacenter", str, "xp")
    if problem := names.dc_name_problem(dc_name):
        fail("experiment", -1, "datacenter", problem)
    steps = tuple(_step(i, item, topology, duration, fail, get, num)
                  for i, item in enumerate(_items(data, "step", fail)))
    _check_order(steps, fail)
    exp = Experiment(name=get("experiment", -1, head, "name", str, None) or _stem(file), topology=topology,
                     duration=float(duration), steps=steps, agents=agents, datacenter=dc_name, source=file)
    checks = tuple(_check(i, item, exp, fail, get, num) for i, item in enumerate(_items(data, "check", fail)))
    return replace(exp, checks=checks)


def _stem(file: str | None) -> str:
    return os.path.splitext(os.path.basename(file))[0] if file else "experiment"


def _items(data: dict, table: str, fail) -> list[dict]:
    items = data.get(table, [])
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            fail(table, i, "", f"write each {table} as a [[{table}]] table")
    return items


def _topology(head: dict, file: str | None, fail, get):
    where = get("experiment", -1, head, "topology", str, "default")
    if where == "default":
        topo = load()
    else:
        base = os.path.dirname(os.path.abspath(file)) if file else os.getcwd()
        topo = load(os.path.join(base, where))  # its own errors name its own file and line
    timers = get("experiment", -1, head, "timers", str, "fast")
    if timers not in ("fast", "rfc"):
        fail("experiment", -1, "timers", f"must be 'fast' or 'rfc', not {timers!r}")
    topo = replace(topo, timers=timers)
    if (cloud := get("experiment", -1, head, "cloud", str)) is not None:
        topo = replace(topo, cloud=cloud)
        if "location" in CLOUD_DEFAULTS.get(cloud, {}):  # AWS's regions are not Azure's
            topo = replace(topo, location=CLOUD_DEFAULTS[cloud]["location"])
        try:
            validate(topo)
        except TopologyError as exc:
            fail("experiment", -1, "cloud", exc.reason)
    return topo


def _step(i: int, item: dict, topo, duration: float, fail, get, num) -> Step:
    do = get("step", i, item, "do", str)
    if do not in spec.DO:
        fail("step", i, "do", f"each step needs do = one of {', '.join(spec.DO)}, not {do!r}")
    name = get("step", i, item, "name", str, f"step{i + 1}")
    at = num("step", i, item, "at", spec.AT_S)
    after = get("step", i, item, "after", str)
    if at is not None and after is not None:
        fail("step", i, "after", "give either at = SECONDS or after = STEP, not both")
    if at is not None and at > duration:
        fail("step", i, "at", f"is after the experiment's end (duration = {duration:g})")
    offset = num("step", i, item, "offset", spec.AT_S, 0.0)
    args = {k: v for k, v in item.items() if k not in spec.STEP_KEYS}
    if do in spec.OWN_KEYS:
        for key in args:
            if key not in spec.OWN_KEYS[do]:
                fail("step", i, key, f"{do} steps take no key {key!r} (they take: "
                     f"{', '.join(sorted(spec.OWN_KEYS[do] | spec.STEP_KEYS))})")
        args = _own_args(do, i, args, topo, duration, fail, get, num)
    elif (cmd := commands.registry().get(spec.DO[do])) is not None:
        try:
            cmd.parse(_TopologyContext(topo), args)
            if do == "fault":  # the target, and the combination of options as the CLI checks it
                kind, target = scope(args["target"])
                if target is not None:
                    try:
                        _TopologyContext(topo).known(kind, target)
                    except NetsimError as exc:
                        fail("step", i, "target", f"{exc} (a fault's target is a VM, node:NAME or all)")
                classify(args["target"], {k: v for k, v in args.items() if k not in _FAULT_TIMING})
        except ExperimentError:
            raise
        except NetsimError as exc:
            fail("step", i, _culprit(str(exc), args), str(exc))
    return Step(name=name, do=do, at=None if at is None and after else float(at or 0), after=after,
                offset=float(offset), args=args)


def _culprit(message: str, args: dict) -> str:
    """The key a command's refusal is about: the one it names, else the one whose value it shows."""
    for key in args:
        if f"'{key}'" in message or f"--{key}" in message:
            return key
    for key, value in args.items():
        if repr(value) in message:
            return key
    return "do"


def _own_args(do: str, i: int, args: dict, topo, duration: float, fail, get, num) -> dict:
    if do == "wait":
        if "seconds" not in args:
            fail("step", i, "seconds", "a wait step needs seconds = SECONDS")
        num("step", i, args, "seconds", spec.WAIT_S)
        return args
    if do == "load":
        return {"rate": num("step", i, args, "rate", bounds.DEMO_RATE, 100.0),
                "duration": num("step", i, args, "duration", spec.EXPERIMENT_S),
                "timeout": num("step", i, args, "timeout", spec.LOAD_TIMEOUT_S, DEFAULT_TIMEOUT),
                "request_seconds": num("step", i, args, "request_seconds", spec.LOAD_DELAY_S, 0.2)}
    if do == "exec":
        host = get("step", i, args, "host", str)
        try:
            hostexec.host_namespace(topo, host or "")
        except NetsimError as exc:
            fail("step", i, "host", f"an exec step needs host = a VM, node:NAME, lb, client or ops ({exc})")
        command = get("step", i, args, "command", (str, list))
        if not command or isinstance(command, list) and not all(isinstance(c, str) for c in command):
            fail("step", i, "command", "an exec step needs command = \"SHELL LINE\" or [\"PROGRAM\", \"ARG\", ...]")
        return {"host": host, "command": command,
                "timeout": num("step", i, args, "timeout", spec.EXEC_TIMEOUT_S, min(60.0, duration))}
    # clear: one earlier fault step, or all of them
    if ("fault" in args) == bool(get("step", i, args, "all", bool, False)):
        fail("step", i, "fault", "a clear step needs fault = \"STEP\" (a fault step) or all = true")
    get("step", i, args, "fault", str)
    return args


def _check_order(steps: tuple[Step, ...], fail) -> None:
    """Names are unique; ``after`` and a clear's ``fault`` name an earlier step (so the
    timeline has no cycle)."""
    seen: dict[str, Step] = {}
    for i, step in enumerate(steps):
        if step.name in seen:
            fail("step", i, "name", f"another step is already called {step.name!r}")
        if step.after is not None and step.after not in seen:
            fail("step", i, "after", f"names no earlier step: {step.after!r} (earlier: {', '.join(seen) or 'none'})")
        target = step.args.get("fault") if step.do == "clear" else None
        if target is not None and getattr(seen.get(target), "do", None) != "fault":
            fail("step", i, "fault", f"names no earlier fault step: {target!r}")
        seen[step.name] = step


def _check(i: int, item: dict, exp: Experiment, fail, get, num) -> Check:
    kind = get("check", i, item, "kind", str)
    if kind not in spec.CHECKS:
        fail("check", i, "kind", f"each check needs kind = one of {', '.join(spec.CHECKS)}, not {kind!r}")
    args = {k: v for k, v in item.items() if k != "kind"}
    for key in args:
        if key not in spec.CHECKS[kind]:
            fail("check", i, key, f"{kind} checks take no key {key!r} (they take: "
                 f"{', '.join(sorted(spec.CHECKS[kind]))})")
    kinds = {s.name: s.do for s in exp.steps}

    def step_of(key: str, allowed: tuple[str, ...], required: bool = True) -> str | None:
        name = get("check", i, args, key, str)
        if name is None:
            candidates = [s for s, do in kinds.items() if do in allowed]
            if len(candidates) == 1 and required:
                return candidates[0]
            if required:
                fail("check", i, key, f"name the {' or '.join(allowed)} step it is about ({key} = \"STEP\")")
            return None
        if kinds.get(name) not in allowed:
            fail("check", i, key, f"names no {' or '.join(allowed)} step: {name!r}")
        return name

    if kind == "load":
        args["step"] = step_of("step", ("load",))
        if "max_failed" not in args and "max_failed_pct" not in args:
            fail("check", i, "max_failed", "a load check needs max_failed = COUNT or max_failed_pct = PERCENT")
        num("check", i, args, "max_failed", spec.COUNT)
        num("check", i, args, "max_failed_pct", spec.FAILED_PCT)
    elif kind == "syslog":
        if "logger" not in exp.agents:
            fail("check", i, "kind", 'a syslog check needs the logger agent: agents = ["logger", ...] in [experiment]')
        _known_vm(exp, i, get("check", i, args, "vm", str), fail)
        get("check", i, args, "contains", str)
    elif kind == "recovered":
        args["step"] = step_of("step", ("exec", "load"))
        if get("check", i, args, "after", str) not in kinds:
            fail("check", i, "after", "name the step after whose end the client must recover (after = \"STEP\")")
        if "within" not in args:
            fail("check", i, "within", "a recovered check needs within = SECONDS")
        num("check", i, args, "within", spec.WAIT_S)
    elif kind == "event":
        if get("check", i, args, "state", str) not in spec.EVENT_STATES:
            fail("check", i, "state", f"must be one of {', '.join(spec.EVENT_STATES)}, not {args.get('state')!r}")
        if step_of("step", ("event",), required=False) is None:
            _known_vm(exp, i, get("check", i, args, "vm", str), fail)
        get("check", i, args, "type", str)
    elif kind == "exit":
        args["step"] = step_of("step", ("exec",))
        args["code"] = num("check", i, args, "code", spec.EXIT_CODE, 0)
    else:  # output
        args["step"] = step_of("step", ("exec",))
        if not get("check", i, args, "contains", str):
            fail("check", i, "contains", 'an output check needs contains = "TEXT"')
    return Check(kind=kind, args=args, index=i)


def _known_vm(exp: Experiment, i: int, vm: str | None, fail) -> None:
    if vm is None or vm not in {v.name for v in exp.topology.vms}:
        fail("check", i, "vm", f"name a VM of the topology ({', '.join(v.name for v in exp.topology.vms)}), "
             f"not {vm!r}")
