"""The driver across real namespaces: frames on a real bridge, the kernel, arping, avahi-autoipd.

Every test builds its own node and VMs (``nsim-lltest-*``) and uses the fast timer
profile (RFC intervals / 5), except where avahi-autoipd runs with the RFC's own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
from tests.linklocal.conftest import FAST
from tests.linklocal.support import BridgeCapture, gaps, wait_for

from netsim.kernel import safety
from netsim.errors import RootNamespaceError
from netsim.linklocal import (ArpPacket, Bind, ClaimState, LinkLocalError, Unbind, decode_frame, encode_frame,
                              first_candidate, linkio)
from netsim.linklocal.driver import LinkLocalDriver
from netsim.kernel.rtnl import Rtnl

TOL_EARLY = 0.02  # a send may lag its own deadline more than the next one lags its own
TOL_LATE = 0.08   # scheduling delay on a loaded 2-core machine


def bound(driver: LinkLocalDriver, *names: str) -> bool:
    status = driver.status()
    return all(status[n][0] is ClaimState.BOUND for n in names)


def test_ten_vms_claim_distinct_addresses_within_rfc_windows(make_lab, run_driver):
    lab = make_lab(1, 10)
    firsts = [first_candidate(vm.mac) for vm in lab.vms]
    assert len(set(firsts)) == 10  # so every claim below is conflict-free
    cap = BridgeCapture(lab)
    r = run_driver()
    for vm in lab.vms:
        r.d.add(vm.name, vm.ns)
    wait_for(lambda: bound(r.d, *(vm.name for vm in lab.vms)), 10, "10 VMs bound")
    time.sleep(0.1)
    cap.stop()
    status, sent = r.d.status(), r.d.sent()
    addresses = [status[vm.name][1] for vm in lab.vms]
    assert addresses == firsts and len(set(addresses)) == 10
    assert r.d.counters["frames_in"] == 0  # the BPF filters kept the 9 neighbours' claims away
    t = FAST
    for vm, addr in zip(lab.vms, addresses):
        assert lab.addresses(vm) == [addr]
        assert sent[vm.name] == (t.PROBE_NUM, t.ANNOUNCE_NUM, 0)
        frames = cap.by_sender(vm.mac)
        assert all(f.raw[:6] == b"\xff" * 6 for f in frames)  # RFC 3927 2.5: all to broadcast
        probes = [f for f in frames if f.pkt.is_probe]
        announcements = [f for f in frames if f.pkt.is_announcement]
        assert len(probes) == t.PROBE_NUM and len(announcements) == t.ANNOUNCE_NUM, vm
        assert all(f.pkt.spa == "0.0.0.0" and f.pkt.tpa == addr and f.pkt.tha == "00:00:00:00:00:00"
                   for f in probes)
        assert all(f.pkt.spa == f.pkt.tpa == addr for f in announcements)
        for gap in gaps([f.ts for f in probes]):
            assert t.PROBE_MIN - TOL_EARLY <= gap <= t.PROBE_MAX + TOL_LATE, (vm.name, gap)
        wait = announcements[0].ts - probes[-1].ts
        assert t.ANNOUNCE_WAIT - TOL_EARLY <= wait <= t.ANNOUNCE_WAIT + TOL_LATE, (vm.name, wait)
        for gap in gaps([f.ts for f in announcements]):
            assert t.ANNOUNCE_INTERVAL - TOL_EARLY <= gap <= t.ANNOUNCE_INTERVAL + TOL_LATE, (vm.name, gap)


def test_address_held_by_another_namespace_forces_new_choice(make_lab, run_driver):
    lab = make_lab(1, 2)
    holder, vm = lab.vms
    first = first_candidate(vm.mac)
    lab.add_static(holder, first)  # a host that simply has the address: its kernel answers probes
    cap = BridgeCapture(lab)
    r = run_driver()
    r.d.add(vm.name, vm.ns)
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound")
    cap.stop()
    state, addr = r.d.status()[vm.name]
    assert addr != first and lab.addresses(vm) == [addr] and lab.addresses(holder) == [first]
    probes, announcements, _ = r.d.sent()[vm.name]
    assert probes > FAST.PROBE_NUM and announcements == FAST.ANNOUNCE_NUM
    # The holder's kernel answered a probe for `first`; the VM never announced `first`.
    assert any(f.pkt.sha == holder.mac and f.pkt.spa == first for f in cap.frames)
    assert not any(f.pkt.sha == vm.mac and f.pkt.spa == first for f in cap.frames)


def test_persistent_conflict_makes_a_bound_vm_give_up(make_lab, run_driver):
    lab = make_lab(1, 2)
    vm, attacker = lab.vms
    r = run_driver()
    r.d.add(vm.name, vm.ns)
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound")
    taken = r.d.status()[vm.name][1]
    cap = BridgeCapture(lab)
    sock = lab.socket_in_vm(attacker)
    frame = encode_frame(ArpPacket.announcement(attacker.mac, taken))
    try:
        deadline = time.monotonic() + 5
        while r.d.status()[vm.name][1] == taken and time.monotonic() < deadline:
            sock.send(frame)  # another host announcing our address, again and again
            time.sleep(0.1)
    finally:
        sock.close()
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound again")
    cap.stop()
    new = r.d.status()[vm.name][1]
    assert new != taken and lab.addresses(vm) == [new]
    # RFC 3927 2.5(b): exactly one defensive announcement of the old address, then surrender.
    defended = [f for f in cap.by_sender(vm.mac) if f.pkt.is_announcement and f.pkt.spa == taken]
    assert len(defended) == 1
    probes, announcements, _ = r.d.sent()[vm.name]
    assert (probes, announcements) == (2 * FAST.PROBE_NUM, 2 * FAST.ANNOUNCE_NUM + 1)


def test_socket_filter_passes_only_frames_naming_the_address(make_lab, needs_root):
    lab = make_lab(1, 2)
    vm, other = lab.vms
    mine, theirs = "169.254.10.1", "169.254.10.2"
    rx, tx = linkio.open_arp_socket(vm.ns, "eth0"), lab.socket_in_vm(other)
    try:
        linkio.attach_filter(rx, mine)
        frames = [ArpPacket.announcement(other.mac, theirs),            # about someone else: dropped
                  ArpPacket.probe(other.mac, mine),                      # TPA = mine
                  ArpPacket.reply(other.mac, mine, ArpPacket.probe(vm.mac, mine)),  # SPA = mine
                  ArpPacket.probe(other.mac, theirs)]                    # dropped
        for pkt in frames:
            tx.send(encode_frame(pkt))
        tx.send(encode_frame(frames[1])[:30])  # truncated before the addresses: dropped
        time.sleep(0.1)
        got = []
        while True:
            try:
                got.append(decode_frame(rx.recv(2048)))
            except BlockingIOError:
                break
        assert got == frames[1:3]
    finally:
        linkio.close_sockets([rx, tx])


def test_arping_sees_a_claimed_address_in_use(make_lab, run_driver):
    if shutil.which("arping") is None:
        pytest.skip("arping (iputils-arping) is not installed")
    lab = make_lab(1, 2)
    vm, other = lab.vms
    r = run_driver()
    r.d.add(vm.name, vm.ns)
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound")
    addr = r.d.status()[vm.name][1]

    def arping(target: str, count: int) -> subprocess.CompletedProcess:
        fd, enter = safety.preexec_into(other.ns)
        try:
            return subprocess.run(["arping", "-D", "-I", "eth0", "-c", str(count), target],
                                  preexec_fn=enter, capture_output=True, text=True, timeout=15)
        finally:
            os.close(fd)

    used = arping(addr, 2)
    assert used.returncode == 1, used.stdout + used.stderr  # iputils: 1 = a reply came, address in use
    assert "reply" in used.stdout.lower()
    free = "169.254.77.77" if addr != "169.254.77.77" else "169.254.77.78"
    assert arping(free, 1).returncode == 0  # control: nobody answers for a free address


def test_link_down_and_up_reclaims_same_address(make_lab, run_driver):
    lab = make_lab(1, 1)
    (vm,) = lab.vms
    r = run_driver()
    r.d.add(vm.name, vm.ns)
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound")
    addr = r.d.status()[vm.name][1]
    with Rtnl.in_namespace(vm.ns) as rt:
        rt.set_link(2, up=False)
        rt.flush()
        r.d.link_event(vm.name, up=False)
        assert r.d.status()[vm.name] == (ClaimState.LINK_DOWN, None)
        assert lab.addresses(vm) == []
        rt.set_link(2, up=True)
        rt.flush()
    r.d.link_event(vm.name, up=True)
    assert r.d.status()[vm.name][0] is not ClaimState.BOUND  # probing again
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound again")
    assert r.d.status()[vm.name][1] == addr and lab.addresses(vm) == [addr]


def test_driver_on_an_injected_clock_runs_rfc_timers_without_waiting(make_lab, needs_root):
    lab = make_lab(1, 3)
    now = [1000.0]
    with LinkLocalDriver(clock=lambda: now[0], rng=random.Random(7)) as d:  # RFC timers
        assert d.timers.conformant
        for vm in lab.vms:
            d.add(vm.name, vm.ns)
        started = time.monotonic()
        while not bound(d, *(vm.name for vm in lab.vms)):
            d.step(0)
            time.sleep(0.002)  # let frames cross the bridge
            d.step(0)
            now[0] = max(now[0], d.next_deadline() or now[0])
            assert time.monotonic() - started < 5
        assert now[0] - 1000.0 >= 4.0  # the claim took RFC time on the injected clock...
        assert time.monotonic() - started < 2.0  # ...and little real time
        assert len({addr for _, addr in d.status().values()}) == 3


def test_driver_misuse_raises_project_errors(make_lab, run_driver):
    lab = make_lab(1, 1)
    (vm,) = lab.vms
    r = run_driver()
    with pytest.raises(LinkLocalError, match="eth9"):
        r.d.add("x", vm.ns, ifname="eth9")
    with pytest.raises(RootNamespaceError):
        r.d.add("y", "not-a-netsim-namespace")
    r.d.add(vm.name, vm.ns)
    with pytest.raises(LinkLocalError, match="already"):
        r.d.add(vm.name, vm.ns)
    with pytest.raises(LinkLocalError, match="not driven"):
        r.d.link_event("nobody", up=True)
    wait_for(lambda: bound(r.d, vm.name), 10, "the VM bound")
    r.d.remove(vm.name)
    assert lab.addresses(vm) == [] and vm.name not in r.d.status()


# -- avahi-autoipd ------------------------------------------------------------------------

_CLONE_NEWNS, _MS_REC, _MS_PRIVATE = 0x00020000, 0x4000, 1 << 18
_AVAHI_SCRIPT = """#!/bin/sh
echo "$1 $2 $3" >> "{log}"
case "$1" in
  BIND) ip addr add "$3"/16 dev "$2" ;;
  CONFLICT|UNBIND|STOP) ip addr del "$3"/16 dev "$2" 2>/dev/null || true ;;
esac
exit 0
"""


def _start_avahi(ns: str, start: str, script: str) -> subprocess.Popen:
    """avahi-autoipd inside ``ns`` with a private /run and state directory (no host files touched)."""
    fd, enter_ns = safety.preexec_into(ns)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def enter() -> None:
        enter_ns()
        if libc.unshare(_CLONE_NEWNS) != 0 or libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) != 0:
            os._exit(120)
        for path in (b"/run", b"/var/lib/avahi-autoipd"):
            if os.path.isdir(path) and libc.mount(b"tmpfs", path, b"tmpfs", 0, None) != 0:
                os._exit(121)

    try:
        return subprocess.Popen(["avahi-autoipd", "--no-drop-root", "--no-chroot", "--force-bind",
                                 "--no-proc-title", "-S", start, "-t", script, "eth0"],
                                preexec_fn=enter, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finally:
        os.close(fd)


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _action_script(tmp_path, name: str):
    log = tmp_path / f"{name}.log"
    script = tmp_path / f"{name}.sh"
    script.write_text(_AVAHI_SCRIPT.format(log=log))
    script.chmod(0o755)
    return str(script), log


def test_avahi_autoipd_and_netsim_vms_end_distinct(make_lab, run_driver, tmp_path):
    """Both directions: avahi asks for a netsim-held address; a netsim VM asks for avahi's."""
    if shutil.which("avahi-autoipd") is None:
        pytest.skip("avahi-autoipd is not installed")
    lab = make_lab(1, 4)
    av_moves, av_holds, held, late = lab.vms
    late_first = first_candidate(late.mac)
    r = run_driver()
    r.d.add(held.name, held.ns)
    wait_for(lambda: bound(r.d, held.name), 10, "the first netsim VM bound")
    held_addr = r.d.status()[held.name][1]
    assert held_addr != late_first
    script1, log1 = _action_script(tmp_path, "moves")
    script2, log2 = _action_script(tmp_path, "holds")
    procs = [_start_avahi(av_moves.ns, held_addr, script1), _start_avahi(av_holds.ns, late_first, script2)]
    try:
        # avahi-autoipd runs the RFC's own timers: 4-7 s per attempt.
        wait_for(lambda: any(p.poll() is not None for p in procs) or bool(lab.addresses(av_holds)), 20,
                 "avahi-autoipd to bind the address it asked for")
        assert all(p.poll() is None for p in procs), [p.stderr.read().decode() for p in procs]
        assert lab.addresses(av_holds) == [late_first]
        # A netsim VM whose first candidate avahi holds must choose again.
        r.d.add(late.name, late.ns)
        wait_for(lambda: bound(r.d, late.name), 10, "the late netsim VM bound")
        assert r.d.status()[late.name][1] != late_first
        # avahi asked for the address a netsim VM holds: it must have moved elsewhere.
        wait_for(lambda: any(p.poll() is not None for p in procs) or bool(lab.addresses(av_moves)), 25,
                 "the other avahi-autoipd to bind after its conflict")
        assert all(p.poll() is None for p in procs), [p.stderr.read().decode() for p in procs]
        moved = lab.addresses(av_moves)
        assert len(moved) == 1 and moved[0] != held_addr
    finally:
        for p in procs:
            _end(p)
    status = r.d.status()
    assert status[held.name] == (ClaimState.BOUND, held_addr)  # the netsim VM kept its address
    everyone = [held_addr, status[late.name][1], late_first, moved[0]]
    assert len(set(everyone)) == 4, everyone
    assert f"BIND eth0 {late_first}" in log2.read_text()
    assert f"BIND eth0 {moved[0]}" in log1.read_text() and f"BIND eth0 {held_addr}" not in log1.read_text()


def test_listener_hears_binds_and_remove_releases_many(make_lab, run_driver):
    lab = make_lab(1, 3)
    heard: list[tuple[str, object]] = []
    r = run_driver(listener=lambda vm, action: heard.append((vm, action)))
    for vm in lab.vms:
        r.d.add(vm.name, vm.ns)
    names = [vm.name for vm in lab.vms]
    wait_for(lambda: bound(r.d, *names), 10, "3 VMs bound")
    status = r.d.status()
    assert set(heard) == {(n, Bind(status[n][1])) for n in names}
    r.d.remove(*names)
    assert all(lab.addresses(vm) == [] for vm in lab.vms) and len(r.d) == 0
    assert {h for h in heard if isinstance(h[1], Unbind)} == {(n, Unbind(status[n][1])) for n in names}


def test_closed_driver_refuses_work(make_lab, needs_root):
    lab = make_lab(1, 1)
    d = LinkLocalDriver(timers=FAST)
    d.add(lab.vms[0].name, lab.vms[0].ns)
    d.close()
    d.close()  # idempotent
    with pytest.raises(LinkLocalError, match="closed"):
        d.step(0)
    with pytest.raises(LinkLocalError, match="closed"):
        d.add("again", lab.vms[0].ns)
