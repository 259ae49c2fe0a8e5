"""RFC 3927 claiming in a whole datacenter, through the daemon."""

import subprocess
import threading

import pytest

from netsim.tools.capture import capture

pytestmark = pytest.mark.root


def test_every_vm_claims_a_distinct_address_and_status_shows_it(datacenter):
    claims = datacenter.claims()
    assert set(claims) == {"web1", "web2", "web3"}
    assert all(c["state"] == "BOUND" for c in claims.values())
    addresses = [c["address"] for c in claims.values()]
    assert len(set(addresses)) == 3 and all(a.startswith("169.254.") for a in addresses)
    assert "not RFC 3927 conformant" in claims["web1"]["timers"]
    status = datacenter.status()
    assert {v["name"]: v["link_local"] for v in status["vms"]} == {k: c["address"] for k, c in claims.items()}


def test_link_down_releases_and_link_up_claims_the_same_address_again(datacenter, tmp_path, host_exec):
    before = datacenter.claims()["web1"]["address"]
    pcap = tmp_path / "n1.pcap"
    counted = {}
    grab = threading.Thread(target=lambda: counted.setdefault(
        "n", capture(datacenter.namespace("node:n1"), str(pcap), duration=2.5)))
    grab.start()
    datacenter.set_link("web1", up=False)
    assert datacenter.claims()["web1"]["address"] is None
    assert before not in host_exec("web1", "ip", "-o", "-4", "addr").stdout
    datacenter.set_link("web1", up=True)
    datacenter.wait_for_claims(10)
    assert datacenter.claims()["web1"]["address"] == before  # seeded by the MAC
    grab.join()
    text = subprocess.run(["tcpdump", "-nr", str(pcap), "arp"], capture_output=True, text=True).stdout
    probes = [line for line in text.splitlines() if f"who-has {before} tell 0.0.0.0" in line]
    announcements = [line for line in text.splitlines() if f"who-has {before} tell {before}" in line]
    assert counted["n"] >= 5 and len(probes) == 3 and len(announcements) == 2


def test_arping_from_another_vm_reports_a_claimed_address_in_use(datacenter, host_exec):
    web1 = datacenter.claims()["web1"]["address"]
    dad = host_exec("web3", "arping", "-D", "-c", "2", "-w", "3", "-I", "eth0", web1)
    assert dad.returncode == 1, dad.stdout  # iputils: 1 = duplicate address detected
    free = host_exec("web3", "arping", "-D", "-c", "2", "-w", "3", "-I", "eth0", "169.254.254.77")
    assert free.returncode == 0, free.stdout
