"""The one /proc reader: parsed on invented lines, and read on this very process."""

import os
import subprocess
import sys

from netsim.kernel import procfs

# A command name with spaces and parentheses: fields are read after the last ')'.
LINE = ("4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 987654 "
        "12345678 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0")


def test_parse_stat_reads_after_the_last_parenthesis():
    s = procfs.parse_stat(LINE)
    assert (s.state, s.start_time, s.utime, s.stime) == ("S", "987654", 7, 3)
    assert not s.exited and procfs.parse_stat(LINE.replace(") S ", ") Z ")).exited


def test_parse_stat_refuses_what_is_no_stat_line():
    for bad in ("", "4242 (x)", "no parenthesis here"):
        try:
            procfs.parse_stat(bad)
        except ValueError as exc:
            assert "stat" in str(exc)
        else:
            raise AssertionError(bad)


def test_this_process_and_a_gone_one():
    me = os.getpid()
    assert procfs.task_state(me) == "R" and procfs.start_time(me).isdigit()
    with open("/proc/self/cmdline", "rb") as f:
        assert procfs.cmdline(me) == f.read().decode().split("\0") and len(procfs.cmdline(me)) > 1
    assert procfs.netns_inode(me) == os.stat("/proc/self/ns/net").st_ino
    assert me in procfs.pids()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: gone
    for read in (procfs.stat, procfs.task_state, procfs.start_time, procfs.cmdline, procfs.netns_inode):
        assert read(child.pid) is None
    assert procfs.cpu_seconds(child.pid) == 0.0 and procfs.cpu_seconds(me) > 0
