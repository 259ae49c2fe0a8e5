"""The state folder read back from damaged files: one clear error, tolerant records."""

import json
import os

import pytest

from netsim.state import CORRUPT_DIR, CorruptStateError, RunDir, StateDir, known_datacenters
from netsim.model import load


@pytest.fixture
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("NETSIM_RUN_DIR", str(tmp_path / "run"))  # set_aside releases host settings there
    s = StateDir("dc1", root=str(tmp_path))
    s.write_datacenter(load())
    return s


@pytest.mark.parametrize("content", [b"", b'{"name": "dc1", "nodes": [', b"\xff\xfe\x00garbage",
                                     b"[1, 2]", b'{"name": "dc1"}', b'{"name": "dc1", "nodes": [{"x": 1}]}'])
def test_a_corrupt_datacenter_json_is_one_line_that_says_what_to_do(state, content):
    with open(state.file("datacenter.json"), "wb") as f:
        f.write(content)
    with pytest.raises(CorruptStateError) as info:
        state.read_datacenter()
    message = str(info.value)
    assert "\n" not in message and "is corrupt" in message and "netsim cleanup --name dc1" in message
    assert state.corruption() == message


def test_a_sound_state_is_not_corrupt(state):
    state.journal("ns", "nsim-dc1-vm-a")
    state.journal("pid", 123, "456", "service", "of", "a")
    assert state.corruption() is None
    assert state.pid_records() == [(123, "456", "service of a")]


def test_garbage_in_the_journal_is_skipped_and_counted(state):
    state.journal("ns", "nsim-dc1-vm-a")
    state.close_journal()
    with open(state.file("journal"), "ab") as f:
        f.write(b"\xff\xfe\npid x y daemon\nns /etc/passwd\nns nsim-other-vm-b\nns a b\npid 7 9 daemon\n"
                b"ns nsim-dc1-/../../etc\n")
    # only this datacenter's namespaces, whatever the journal says
    assert state.namespace_records() == ["nsim-dc1-vm-a"]
    assert state.pid_records() == [(7, "9", "daemon")]
    assert state.malformed_journal_lines() == 5
    assert "malformed" in state.corruption()


def test_set_aside_keeps_the_folder_where_known_datacenters_does_not_look(state, tmp_path):
    assert known_datacenters(str(tmp_path)) == ["dc1"]
    dest = state.set_aside()
    assert not os.path.exists(state.path)
    assert os.path.dirname(dest) == os.path.join(str(tmp_path), CORRUPT_DIR)
    assert json.load(open(os.path.join(dest, "datacenter.json")))["name"] == "dc1"
    assert known_datacenters(str(tmp_path)) == []


def test_run_folder_keeps_a_copy_of_process_records(tmp_path):
    run = RunDir("dc1", root=str(tmp_path))
    assert run.pid_records() == [] and not run.exists()
    run.record_process(42, "777", "daemon")
    run.record_process(43, None, "service of web1")
    assert run.pid_records() == [(42, "777", "daemon"), (43, "None", "service of web1")]
    run.remove()
    assert not run.exists()
