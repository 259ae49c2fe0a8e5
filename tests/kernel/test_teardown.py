"""Ending processes by record: a PID is hit only while it is still the recorded process."""

import os
import subprocess
import sys
import time

from netsim.kernel.teardown import alive, end_recorded, netsim_daemons, signal_process, start_time


def _sleeper(*extra, ignore_term=False):
    code = ("import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "")
            + "print('ready', flush=True)\ntime.sleep(30)")
    proc = subprocess.Popen([sys.executable, "-c", code, *extra], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_a_reused_pid_is_left_alone():
    proc = _sleeper()
    try:
        started = start_time(proc.pid)
        assert started is not None and alive(proc.pid, started)
        wrong = str(int(started) - 1)  # as if the recorded process had exited and its PID been reused
        assert not signal_process(proc.pid, wrong, 15)
        assert end_recorded([(proc.pid, wrong)]) == 0
        assert proc.poll() is None
        assert end_recorded([(proc.pid, started)]) == 1
        assert not alive(proc.pid, started)  # ended (and reaped: it was our child)
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ignores_sigterm_gets_sigkill():
    proc = _sleeper(ignore_term=True)
    try:
        started = start_time(proc.pid)
        assert signal_process(proc.pid, started, 15)
        time.sleep(0.2)
        assert alive(proc.pid, started)  # it ignores SIGTERM
        assert end_recorded([(proc.pid, started)], grace=0.3) == 1
        assert not alive(proc.pid, started)
    finally:
        proc.kill()
        proc.wait()


def test_daemons_are_found_by_their_command_line_only():
    name = f"tfk{os.getpid() % 10000}"
    daemon = _sleeper("-m", "netsim.runtime.daemon", "--name", name)
    other = _sleeper("-m", "netsim.runtime.daemon", "--name", name + "x")
    try:
        found = netsim_daemons(name)
        assert found == {name: [(daemon.pid, start_time(daemon.pid))]}
        assert name + "x" in netsim_daemons()
    finally:
        for p in (daemon, other):
            p.kill()
            p.wait()
    assert netsim_daemons(name) == {}
