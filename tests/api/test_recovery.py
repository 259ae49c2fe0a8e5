"""Recovery from damaged state: a corrupt or deleted state folder, a corrupt event
repository, and the host settings a datacenter changed. Every case crosses real
namespaces; every command answers with one line (or works), never a traceback."""

import glob
import os
import shutil
import subprocess
import sys

import pytest

from netsim.model import names
from netsim.kernel import netns
from netsim.state import CORRUPT_DIR, RunDir
from netsim.kernel.teardown import alive

pytestmark = pytest.mark.root


def _netsim(*args, env=None):
    return subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True,
                          env=env or dict(os.environ), timeout=120)


def _one_line_error(proc):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    return proc.stderr


def _assert_all_gone(running, daemons):
    assert netns.list_names(names.dc_prefix(running.name)) == []
    assert not any(alive(*p) for p in daemons), f"daemon {daemons} still runs"
    assert not os.path.exists(running.state.path)
    assert not RunDir(running.name).exists()


@pytest.mark.parametrize("remover", ["down", "cleanup"])
def test_truncated_datacenter_json(datacenter_factory, remover):
    running = datacenter_factory()
    daemons = running.daemon_processes()
    assert daemons
    path = running.state.file("datacenter.json")
    text = open(path).read()
    with open(path, "w") as f:
        f.write(text[:len(text) // 2])
    for command in ("status", "daemon start"):
        err = _one_line_error(_netsim(*command.split(), "--name", running.name))
        assert "is corrupt" in err and f"netsim cleanup --name {running.name}" in err
    events = _netsim("events", "--name", running.name)  # the daemon still serves them
    assert events.returncode == 0 and "0 events" in events.stdout, events.stderr
    gone = _netsim(remover, "--name", running.name)
    assert gone.returncode == 0, gone.stderr
    assert "kept aside in" in gone.stdout
    _assert_all_gone(running, daemons)
    kept = glob.glob(os.path.join(os.path.dirname(running.state.path), CORRUPT_DIR, f"{running.name}-*"))
    assert len(kept) == 1 and open(os.path.join(kept[0], "datacenter.json")).read() == text[:len(text) // 2]
    assert _netsim("cleanup", "--name", running.name).stdout.strip() == "nothing to clean up"


def test_garbage_journal_is_tolerated(datacenter_factory):
    running = datacenter_factory()
    daemons = running.daemon_processes()
    with open(running.state.file("journal"), "ab") as f:
        f.write(b"\xff\xfe garbage\npid notapid x daemon\nns /etc/passwd extra\nns nsim-other-vm-x\n")
    gone = _netsim("down", "--name", running.name)
    assert gone.returncode == 0 and "kept aside in" in gone.stdout, gone.stderr
    _assert_all_gone(running, daemons)


@pytest.mark.parametrize("lose", ["state folder", "state and run folders"])
def test_state_folder_deleted_then_cleanup(datacenter_factory, lose):
    running = datacenter_factory()
    daemons = running.daemon_processes()
    assert daemons and netns.list_names(names.dc_prefix(running.name))
    shutil.rmtree(running.state.path)
    if lose == "state and run folders":
        RunDir(running.name).remove()  # the daemon is then found by its command line alone
    assert f"netsim cleanup --name {running.name}" in _one_line_error(_netsim("status", "--name", running.name))
    gone = _netsim("cleanup", "--name", running.name)
    assert gone.returncode == 0 and f"datacenter {running.name}:" in gone.stdout, gone.stderr
    _assert_all_gone(running, daemons)


def test_corrupt_event_repository_then_reset(datacenter_factory):
    running = datacenter_factory()
    db = running.state.file("events.db")
    for damage in ("garbage", "truncated"):
        running.stop_daemon()
        assert not running.daemon_pids()
        if damage == "garbage":
            for suffix in ("-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.unlink(db + suffix)
            with open(db, "wb") as f:
                f.write(b"not a database " * 500)
        else:
            size = os.path.getsize(db)
            assert size > 4096, size
            os.truncate(db, size - 1024)
        err = _one_line_error(_netsim("daemon", "start", "--name", running.name))
        assert "is corrupt" in err and "--reset-events" in err
        damaged = open(db, "rb").read()
        reset = _netsim("daemon", "start", "--reset-events", "--name", running.name)
        assert reset.returncode == 0 and "kept aside as" in reset.stdout, reset.stderr
        aside = [p for p in glob.glob(db + ".corrupt-*") if not p.endswith(("-wal", "-shm"))]
        assert any(open(p, "rb").read() == damaged for p in aside)
        events = _netsim("events", "--name", running.name)
        assert events.returncode == 0 and "0 events" in events.stdout, events.stderr
        for p in aside:
            os.unlink(p)


def test_host_settings_restored_when_the_last_datacenter_goes(datacenter_factory, tmp_path, monkeypatch):
    # A folder of fake sysctls and a private run folder: the real host's limits and the
    # other datacenters running on this host are never touched.
    folder = tmp_path / "sys/net/ipv4/neigh/default"
    folder.mkdir(parents=True)
    original = {"gc_thresh1": 128, "gc_thresh2": 512, "gc_thresh3": 1024}
    for name, value in original.items():
        (folder / name).write_text(f"{value}\n")
    monkeypatch.setenv("NETSIM_SYSCTL_ROOT", str(tmp_path / "sys"))
    monkeypatch.setenv("NETSIM_RUN_DIR", str(tmp_path / "run"))

    def values():
        return {name: int((folder / name).read_text()) for name in original}

    first = datacenter_factory()
    raised = values()
    assert raised["gc_thresh3"] == 8 * (len(first.topology.vms) + len(first.topology.nodes)) + 1024
    assert all(raised[n] > original[n] for n in original)
    second = datacenter_factory()
    assert values() == raised
    first.down()
    assert values() == raised, "the second datacenter still holds the raised limits"
    gone = _netsim("cleanup", "--name", second.name)  # the CLI, after which nothing is held
    assert gone.returncode == 0, gone.stderr
    assert values() == original
    assert not (tmp_path / "run" / "host-settings.json").exists()
