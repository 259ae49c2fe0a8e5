"""Crash safety: kill -9 in the middle of a build, then cleanup leaves nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from netsim.kernel import hostsettings, netns
from netsim.model import names
from netsim.state import RunDir, run_root

pytestmark = pytest.mark.root


def _netsim(*args, env):
    return subprocess.run([sys.executable, "-m", "netsim.tools.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("delay", [0.15, 0.4])
def test_kill_9_during_build_then_cleanup_leaves_no_prefixed_object(tmp_path, netsim_state_dir, delay):
    name = f"k{os.getpid() % 10000}{int(delay * 10)}"[:8]
    topo = tmp_path / "big.toml"
    topo.write_text(f'[datacenter]\nname = "{name}"\n'
                    + "".join(f'[[node]]\nname = "n{i}"\n' for i in range(40))
                    + "".join(f'[[vm]]\nname = "v{i}"\nnode = "n{i % 40}"\n' for i in range(400)))
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-m", "netsim.tools.cli", "up", str(topo)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not netns.list_names(names.dc_prefix(name)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    made = netns.list_names(names.dc_prefix(name))
    assert made, "the build should have created namespaces before it was killed"
    first = _netsim("cleanup", "--name", name, env=env)
    assert first.returncode == 0, first.stderr
    assert netns.list_names(names.dc_prefix(name)) == []
    assert not os.path.exists(os.path.join(netsim_state_dir, name))
    assert not RunDir(name).exists()
    # The killed build held the host settings; cleanup released its hold.
    record = os.path.join(run_root(), hostsettings.RECORD)
    assert not os.path.exists(record) or name not in json.load(open(record)).get("holders", {})
    again = _netsim("cleanup", "--name", name, env=env)
    assert again.returncode == 0 and "nothing to clean up" in again.stdout


def test_cleanup_without_any_state_removes_prefixed_namespaces(netsim_state_dir):
    name = f"c{os.getpid() % 10000}"
    made = [names.node_ns(name, "n1"), names.vm_ns(name, "v1")]
    for ns in made:
        with netns.created(ns):
            pass
    from netsim.api.datacenter import cleanup
    assert cleanup(name) == {name: 2}
    assert netns.list_names(names.dc_prefix(name)) == []
