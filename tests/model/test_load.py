"""Pure tests of topology loading and validation: errors name file, line and field."""

import pytest

from netsim.errors import TopologyError
from netsim.model import grid, parse
from netsim.model import load


def test_default_topology_spreads_web_over_two_nodes_round_robin():
    dc = load()
    assert [n.name for n in dc.nodes] == ["n1", "n2"]
    assert [(v.name, v.node, v.update_domain, v.fault_domain) for v in dc.vms] == [
        ("web1", "n1", 0, 0), ("web2", "n2", 1, 1), ("web3", "n1", 2, 0)]
    assert dc.availability_set("web").update_domains == 5
    assert dc.linklocal == "claim" and dc.timers == "rfc"


def test_explicit_placement_and_domains_override_round_robin():
    dc = parse('[[node]]\nname="a"\n[[node]]\nname="b"\n[[availability_set]]\nname="s"\n'
               '[[vm]]\nname="v1"\navailability_set="s"\nnode="b"\nupdate_domain=4\nfault_domain=1\n'
               'services=["sleep 100"]\n')
    vm = dc.vm("v1")
    assert (vm.node, vm.update_domain, vm.fault_domain, vm.services) == ("b", 4, 1, ("sleep 100",))


def _error(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse(text, "dc.toml")
    return info.value


@pytest.mark.parametrize("text, line, field, words", [
    ('[datacenter]\nname = "x"\ncolour = "red"\n[[node]]\nname="n1"\n', 3, "datacenter.colour", "unknown key"),
    ('[[node]]\nname = "n1"\n[[node]]\nname = "n1"\n', 4, "node[1].name", "already used"),
    ('[[node]]\nname = "n1"\n[[vm]]\nname = "v"\nnode = "n9"\n', 5, "vm[0].node", "unknown node"),
    ('[[node]]\nname = "abcdefghijklmnop"\n', 2, "node[0].name", "limit is 12"),
    ('[datacenter]\nname = "waytoolongname"\n[[node]]\nname="n"\n', 2, "datacenter.name", "limit is 8"),
    ('[[node]]\nname = "n1"\n[[vm]]\nname = "v"\nupdate_domain = "x"\n', 5, "vm[0].update_domain", "integer"),
    ('[[node]]\nname = "n1"\n[[vm]]\nname = "v"\navailability_set = "nope"\n', 5, "vm[0].availability_set",
     "unknown availability set"),
    ('[datacenter]\nlinklocal = "dhcp"\n[[node]]\nname="n"\n', 2, "datacenter.linklocal", "one of"),
    ('[[node]]\nname = "n1"\n[[vm]]\nnode = "n1"\n', 3, "vm[0].name", "needs a name"),
    ('[[node]]\nname = "N1"\n', 2, "node[0].name", "lowercase"),
    ('[[node]]\nname = "lb"\n', 2, "node[0].name", "extra host"),
    # Numbers in range and names safe for paths, before anything uses them (issue 9).
    ('[[node]]\nname="n1"\n[[availability_set]]\nname="s"\nfault_domains = 0\n[[vm]]\nname="v"\n'
     'availability_set="s"\n', 5, "availability_set[0].fault_domains", "integer from 1 to 3"),
    ('[[node]]\nname="n1"\n[[availability_set]]\nname="s"\nupdate_domains = 21\n', 5,
     "availability_set[0].update_domains", "integer from 1 to 20"),
    ('[[node]]\nname="n1"\n[[vm]]\nname="v"\nupdate_domain = 99999999999999999999\n', 5, "vm[0].update_domain",
     "integer from 0 to 19"),
    ('[[node]]\nname="n1"\n[[vm]]\nname="v"\nfault_domain = -1\n', 5, "vm[0].fault_domain", "integer from 0 to 2"),
    ('[datacenter]\nname = ""\n[[node]]\nname="n"\n', 2, "datacenter.name", "must be 1 to 8 characters"),
    ('[datacenter]\nname = "../../etc"\n[[node]]\nname="n"\n', 2, "datacenter.name", "lowercase letter"),
    ('[datacenter]\nname = "a-b"\n[[node]]\nname="n"\n', 2, "datacenter.name", "lowercase letter"),
])
def test_errors_name_line_and_field(text, line, field, words):
    err = _error(text)
    assert (err.file, err.line, err.field) == ("dc.toml", line, field)
    assert words in str(err) and str(err).startswith(f"dc.toml:{line}")


def test_unknown_table_and_bad_toml_name_their_line():
    assert _error('[[node]]\nname="n"\n[[switch]]\nname="s"\n').line == 3
    err = _error('[[node]]\nname = \n')
    assert err.line == 2 and "not valid TOML" in str(err)


def test_address_plan_overflow_is_reported():
    nodes = "".join(f'[[node]]\nname = "n{i}"\n' for i in range(505))
    assert "overflow the address plan" in str(_error(nodes))
    vms = '[[node]]\nname = "n"\n' + "".join(f'[[vm]]\nname = "v{i}"\n' for i in range(254))
    err = _error(vms)
    assert "overflows its /24" in str(err) and err.field == "vm[253].node"


def test_missing_file_is_a_topology_error(tmp_path):
    with pytest.raises(TopologyError, match="cannot read"):
        load(str(tmp_path / "absent.toml"))


def test_grid_builds_round_robin_domains():
    dc = grid("g", 3, 4)
    assert len(dc.vms) == 12 and {v.node for v in dc.vms} == {"n1", "n2", "n3"}
    assert [v.update_domain for v in dc.vms[:6]] == [0, 1, 2, 3, 4, 0]


def test_a_binary_file_is_one_topology_error_with_its_line(tmp_path):
    garbage = tmp_path / "garbage.toml"
    garbage.write_bytes(b"[[node]]\nname = 'n1'\n" + bytes(range(128, 256)) * 8)
    with pytest.raises(TopologyError) as info:
        load(str(garbage))
    assert (info.value.file, info.value.line) == (str(garbage), 3)
    assert "not a TOML text file" in str(info.value) and "\n" not in str(info.value)


def test_a_file_too_large_for_a_topology_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    import importlib
    load_module = importlib.import_module("netsim.model.load")
    monkeypatch.setattr(load_module, "MAX_FILE_BYTES", 64)
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * 100 + "\n[[node]]\nname = 'n1'\n")
    with pytest.raises(TopologyError, match="larger than"):
        load(str(big))
