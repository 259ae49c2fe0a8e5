"""Pure tests of datacenter names: one rule, checked before any path is built."""

import os

import pytest

from netsim.model import names
from netsim.model.bounds import InvalidValue
from netsim.state import StateDir


@pytest.mark.parametrize("name", ["dc1", "a", "t123456", "abcdefgh", "demo"])
def test_valid_names(name):
    assert names.dc_name_problem(name) is None and names.check_dc_name(name) == name


@pytest.mark.parametrize("name, words", [
    ("", "must be 1 to 8 characters"),
    ("../../etc", "lowercase letter"),
    ("a/b", "lowercase letter"),
    (".", "lowercase letter"),
    ("a-b", "lowercase letter"),   # 'a' would be a prefix of 'a-b': cleanup --name a would take a-b
    ("Dc1", "lowercase letter"),
    ("1dc", "lowercase letter"),
    ("dc\x00", "lowercase letter"),
    ("abcdefghi", "the limit is 8"),
    (None, "lowercase letter"),
])
def test_invalid_names_are_refused_with_the_rule(name, words):
    assert words in names.dc_name_problem(name)
    with pytest.raises(InvalidValue, match=words):
        names.check_dc_name(name)


def test_a_name_round_trips_through_its_namespace_prefix():
    for dc in ("a", "ab", "dc1"):
        assert names.dc_of_namespace(names.fabric_ns(dc)) == dc
        assert names.dc_of_namespace(names.vm_ns(dc, "web-1")) == dc


@pytest.mark.parametrize("name", ["", "../../etc", "/abs", "x/../y"])
def test_state_dir_refuses_a_bad_name_before_building_a_path(tmp_path, name):
    with pytest.raises(InvalidValue):
        StateDir(name, root=str(tmp_path))
    assert os.listdir(tmp_path) == []
    assert StateDir("dc1", root=str(tmp_path)).path == os.path.join(str(tmp_path), "dc1")
