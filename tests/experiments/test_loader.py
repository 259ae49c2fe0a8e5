"""Experiment files: the examples load; every bad file names its file, line and field."""

import pathlib

import pytest

from netsim.errors import TopologyError
from netsim.experiments.loader import ExperimentError, load_experiment, parse_experiment

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "netsim" / "experiments" / "examples"
HEAD = '[experiment]\nduration = 60\n'


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_every_example_loads(path):
    exp = load_experiment(str(path))
    assert exp.steps and exp.checks and exp.source == str(path)


def test_the_seed_walk_declares_the_drain_agent_and_a_background_load():
    exp = load_experiment(str(EXAMPLES / "seed-walk.toml"))
    assert exp.agents == ("drain",) and exp.needs_load_balancer() and not exp.needs_syslog()
    load = exp.step("load")
    assert load.args == {"rate": 100, "duration": None, "timeout": pytest.approx(load.args["timeout"]),
                         "request_seconds": 0.2}
    assert exp.step("settle").after == "walk" and exp.step("walk").at == 2.0
    assert exp.topology.timers == "fast"


def test_a_step_is_due_at_zero_unless_it_says_when():
    exp = parse_experiment(HEAD + '[[step]]\ndo = "node_fail"\nnode = "n1"\n[[step]]\ndo = "node_recover"\n'
                           'node = "n1"\nafter = "step1"\noffset = 2\n')
    assert [(s.name, s.at, s.after, s.offset) for s in exp.steps] == [("step1", 0.0, None, 0.0),
                                                                       ("step2", None, "step1", 2.0)]


def test_a_cloud_override_takes_the_flavor_s_own_defaults():
    exp = parse_experiment('[experiment]\nduration = 5\ncloud = "aws"\n')
    assert (exp.topology.cloud, exp.topology.location) == ("aws", "us-east-1")


def test_a_relative_topology_is_found_beside_the_experiment(tmp_path):
    (tmp_path / "one.toml").write_text('[[node]]\nname = "n1"\n[[vm]]\nname = "solo"\n')
    (tmp_path / "x.toml").write_text('[experiment]\nduration = 5\ntopology = "one.toml"\n')
    assert [v.name for v in load_experiment(str(tmp_path / "x.toml")).topology.vms] == ["solo"]


BAD = [
    # (text after HEAD, line, field, words)
    ('[[step]]\ndo = "teleport"\n', 4, "step[0].do", "one of event, walk"),
    ('[[step]]\ndo = "event"\nvm = "web9"\n', 5, "step[0].vm", "no vm 'web9'"),
    ('[[step]]\ndo = "event"\nvm = "web1"\nin = nan\n', 6, "step[0].in", "must be a number from 0 to 604800"),
    ('[[step]]\ndo = "event"\nvm = "web1"\ncolour = "red"\n', 6, "step[0].colour", "takes no argument 'colour'"),
    ('[[step]]\ndo = "walk"\navset = "web"\nnotice = -1\n', 6, "step[0].notice", "cannot be negative"),
    ('[[step]]\ndo = "fault"\ntarget = "web1"\nhttp = 700\n', 6, "step[0].http", "--http"),
    ('[[step]]\ndo = "fault"\ntarget = "web1"\nhttp = 500\nloss = 5\n', 6, "step[0].http", "link"),
    ('[[step]]\ndo = "fault"\ntarget = "node:n7"\nhttp = 500\n', 5, "step[0].target", "no node 'n7'"),
    ('[[step]]\ndo = "fault"\ntarget = "web9"\nhttp = 500\n', 5, "step[0].target", "no vm 'web9'"),
    ('[[step]]\ndo = "wait"\n', 3, "step[0].seconds", "needs seconds"),
    ('[[step]]\ndo = "wait"\nseconds = inf\n', 5, "step[0].seconds", "must be a number from 0 to 3600"),
    ('[[step]]\ndo = "wait"\nseconds = 1\nat = 61\n', 6, "step[0].at", "after the experiment's end"),
    ('[[step]]\ndo = "wait"\nseconds = 1\nat = 1\nafter = "x"\n', 7, "step[0].after", "not both"),
    ('[[step]]\ndo = "wait"\nseconds = 1\nafter = "later"\n[[step]]\nname = "later"\ndo = "wait"\nseconds = 1\n',
     6, "step[0].after", "names no earlier step: 'later'"),
    ('[[step]]\nname = "a"\ndo = "wait"\nseconds = 1\n[[step]]\nname = "a"\ndo = "wait"\nseconds = 1\n',
     8, "step[1].name", "already called 'a'"),
    ('[[step]]\ndo = "load"\nrate = 0\n', 5, "step[0].rate", "from 0 (excluded)"),
    ('[[step]]\ndo = "load"\nurl = "http://x"\n', 5, "step[0].url", "load steps take no key 'url'"),
    ('[[step]]\ndo = "exec"\nhost = "mars"\ncommand = "true"\n', 5, "step[0].host", "no host 'mars'"),
    ('[[step]]\ndo = "exec"\nhost = "web1"\ncommand = [1, 2]\n', 6, "step[0].command", "command ="),
    ('[[step]]\ndo = "clear"\n', 3, "step[0].fault", "fault = \"STEP\""),
    ('[[step]]\nname = "w"\ndo = "wait"\nseconds = 1\n[[step]]\ndo = "clear"\nfault = "w"\n',
     9, "step[1].fault", "no earlier fault step: 'w'"),
    ('[[check]]\nkind = "vibes"\n', 4, "check[0].kind", "one of load, syslog"),
    ('[[check]]\nkind = "load"\nmax_failed = 0\n', 3, "check[0].step", "name the load step"),
    ('[[step]]\ndo = "load"\n[[check]]\nkind = "load"\n', 5, "check[0].max_failed", "needs max_failed"),
    ('[[step]]\ndo = "load"\n[[check]]\nkind = "load"\nmax_failed_pct = 101\n', 7, "check[0].max_failed_pct",
     "from 0 to 100 percent"),
    ('[[check]]\nkind = "syslog"\nvm = "web1"\n', 4, "check[0].kind", "needs the logger agent"),
    ('[[check]]\nkind = "event"\nvm = "web1"\nstate = "Exploded"\n', 6, "check[0].state", "Scheduled, Started"),
    ('[[check]]\nkind = "event"\nvm = "web7"\nstate = "Started"\n', 5, "check[0].vm", "name a VM of the topology"),
    ('[[check]]\nkind = "exit"\nstep = "nope"\n', 5, "check[0].step", "names no exec step: 'nope'"),
    ('[[check]]\nkind = "recovered"\nwithin = 3\nafter = "x"\n', 3, "check[0].step", "exec or load step"),
    ('[[check]]\nkind = "exit"\ncolour = 1\n', 5, "check[0].colour", "exit checks take no key"),
    ('[[step]]\nname = "c"\ndo = "exec"\nhost = "web1"\ncommand = "true"\n[[check]]\nkind = "output"\n', 8,
     "check[0].contains", "needs contains"),
    ('[sideshow]\nx = 1\n', 3, "sideshow", "unknown table [sideshow]"),
    ('agents = ["chaos"]\n', 3, "experiment.agents", "agents are webapp, drain, logger"),
    ('datacenter = "Big-DC"\n', 3, "experiment.datacenter", "lowercase letter"),
    ('timers = "slow"\n', 3, "experiment.timers", "'fast' or 'rfc'"),
    ('cloud = "ibm"\n', 3, "experiment.cloud", "ibm"),
    ('colour = "red"\n', 3, "experiment.colour", "unknown key 'colour'"),
]


@pytest.mark.parametrize("text, line, field, words", BAD, ids=[f"{b[2]}:{b[3][:20]}" for b in BAD])
def test_a_bad_file_names_file_line_and_field(text, line, field, words):
    with pytest.raises(ExperimentError) as info:
        parse_experiment(HEAD + text, "x.toml")
    err = info.value
    assert (err.file, err.line, err.field) == ("x.toml", line, field), str(err)
    assert words in str(err) and "\n" not in str(err)
    assert str(err).startswith(f"x.toml:{line}, field {field!r}: ")


def test_a_missing_duration_or_experiment_table_is_named():
    with pytest.raises(ExperimentError, match=r"x.toml:1, field 'experiment.duration': give the run's bound"):
        parse_experiment('[experiment]\nname = "a"\n', "x.toml")
    with pytest.raises(ExperimentError, match="needs an \\[experiment\\] table"):
        parse_experiment('[[step]]\ndo = "wait"\nseconds = 1\n', "x.toml")
    with pytest.raises(ExperimentError, match="x.toml:2, field 'experiment.duration': duration must be a number "
                                              "from 0 \\(excluded\\) to 3600"):
        parse_experiment('[experiment]\nduration = 0\n', "x.toml")


def test_bytes_that_are_no_toml_text_and_invalid_toml_name_the_line(tmp_path):
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(HEAD.encode() + bytes(range(128, 256)))
    with pytest.raises(ExperimentError) as info:
        load_experiment(str(garbage))
    assert (info.value.file, info.value.line) == (str(garbage), 3) and "not a TOML text file" in str(info.value)
    with pytest.raises(ExperimentError, match=r"x.toml:3: not valid TOML"):
        parse_experiment(HEAD + "do = \n", "x.toml")
    with pytest.raises(ExperimentError, match="cannot read the experiment file"):
        load_experiment(str(tmp_path / "absent.toml"))


def test_a_bad_topology_file_is_named_by_its_own_file_and_line(tmp_path):
    (tmp_path / "t.toml").write_text('[[node]]\nname = "n1"\n[[vm]]\nname = "v1"\nupdate_domain = -3\n')
    (tmp_path / "x.toml").write_text('[experiment]\nduration = 5\ntopology = "t.toml"\n')
    with pytest.raises(TopologyError) as info:
        load_experiment(str(tmp_path / "x.toml"))
    assert (info.value.file, info.value.line) == (str(tmp_path / "t.toml"), 5)
