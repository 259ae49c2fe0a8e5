"""The AWS flavor served by a real datacenter's daemon to its VMs (needs root): curl in the
forms of AWS's docs from inside a VM, IMDSv2 and ``http_tokens``, the token reply's IP TTL
on the wire, the hop limit across a real routed hop behind a VM, and events added with
``netsim event add`` in AWS's words, made real. Every request starts inside a namespace.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import subprocess
import sys
import time

import pytest

from netsim.kernel import hostexec, netns, nft
from netsim.kernel.rtnl import Rtnl
from netsim.model import names
from tests.server.aws.support import IMDS, NETSIM, NO_PROXY, curl, link_up, netsim, status, wait_until

pytestmark = pytest.mark.root

TOPOLOGY = """
[datacenter]
cloud = "aws"
linklocal = "static"

[[node]]
name = "n1"

[[vm]]
name = "a1"
iam_role = "app-role"
user_data = "1234,john,reboot,true"

[[vm]]
name = "a2"
http_tokens = "required"
hop_limit = 2
"""

# AWS's documented form (instancedata-data-retrieval): a token, then GETs with it.
CURL_V2 = ('TOKEN=`curl -s -X PUT "http://169.254.169.254/latest/api/token" '
           '-H "X-aws-ec2-metadata-token-ttl-seconds: 21600"` '
           '&& curl -s -H "X-aws-ec2-metadata-token: $TOKEN" http://169.254.169.254/latest/meta-data/%s')

# Inside a VM: sniff eth0 while one token PUT is answered; print the IP TTLs of the
# reply's segments that carry data from port 80, and the reply's TTL header.
SNIFF_TTL = r"""
import json, socket, struct, time
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sniff.bind(("eth0", 0))
sniff.settimeout(0.2)
s = socket.create_connection(("169.254.169.254", 80), timeout=10)
s.sendall(b"PUT /latest/api/token HTTP/1.1\r\nHost: 169.254.169.254\r\n"
          b"X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n\r\n")
reply = s.recv(65536)
ttls = []
deadline = time.time() + 1.0
while time.time() < deadline:
    try:
        frame = sniff.recv(65536)
    except socket.timeout:
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 6 or socket.inet_ntoa(ip[12:16]) != "169.254.169.254":
        continue
    tcp = ip[ihl:]
    sport = struct.unpack(">H", tcp[:2])[0]
    payload = tcp[(tcp[12] >> 4) * 4:struct.unpack(">H", ip[2:4])[0] - ihl]
    if sport == 80 and payload:
        ttls.append(ip[8])
head = reply.split(b"\r\n\r\n", 1)[0].decode()
print(json.dumps({"ttls": ttls, "status": head.split()[1],
                  "ttl_header": [l for l in head.split("\r\n") if l.lower().startswith("x-aws-ec2-metadata-token-ttl")]}))
"""


@pytest.fixture
def aws_dc(datacenter_factory):
    """A running datacenter of two VMs whose metadata service is AWS's."""
    dc = datacenter_factory(TOPOLOGY)
    assert dc.topology.cloud == "aws" and dc.topology.location == "us-east-1"
    return dc


def sh(dc, vm: str, script: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return dc.run(vm, ["sh", "-c", script], timeout=timeout, env=NO_PROXY)


def test_curl_in_the_form_of_aws_docs_reads_the_tree_over_imdsv2(aws_dc) -> None:
    listing = sh(aws_dc, "a1", CURL_V2 % "").stdout.split("\n")
    assert {"ami-id", "instance-id", "local-ipv4", "mac", "placement/", "iam/", "events/"} <= set(listing)
    instance_id = sh(aws_dc, "a1", CURL_V2 % "instance-id").stdout
    assert instance_id.startswith("i-") and len(instance_id) == 19
    assert sh(aws_dc, "a1", CURL_V2 % "instance-id").stdout == instance_id  # stable
    assert sh(aws_dc, "a2", CURL_V2 % "instance-id").stdout != instance_id
    assert sh(aws_dc, "a1", CURL_V2 % "local-ipv4").stdout == aws_dc.routable_address("a1")
    assert sh(aws_dc, "a1", CURL_V2 % "placement/region").stdout == "us-east-1"
    assert sh(aws_dc, "a1", CURL_V2 % "iam/security-credentials/").stdout == "app-role"
    creds = json.loads(sh(aws_dc, "a1", CURL_V2 % "iam/security-credentials/app-role").stdout)
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("ASIA")
    assert curl(aws_dc, "a1", "/latest/user-data") == "1234,john,reboot,true"
    doc = json.loads(curl(aws_dc, "a1", "/latest/dynamic/instance-identity/document"))
    assert doc["instanceId"] == instance_id and doc["privateIp"] == aws_dc.routable_address("a1")
    assert curl(aws_dc, "a1", "/2021-03-23/meta-data/instance-id") == instance_id


def test_http_tokens_required_refuses_imdsv1_and_token_rules_hold(aws_dc) -> None:
    assert status(aws_dc, "a2", "/latest/meta-data/") == "401"
    assert status(aws_dc, "a1", "/latest/meta-data/") == "200"  # optional: IMDSv1 still works
    assert sh(aws_dc, "a2", CURL_V2 % "instance-id").stdout.startswith("i-")
    assert status(aws_dc, "a2", "/latest/meta-data/", "-H", "X-aws-ec2-metadata-token: bogus") == "401"
    put = ["-X", "PUT", "-H"]
    assert status(aws_dc, "a1", "/latest/api/token", *put, "X-aws-ec2-metadata-token-ttl-seconds: 0") == "400"
    assert status(aws_dc, "a1", "/latest/api/token", *put, "X-aws-ec2-metadata-token-ttl-seconds: 21601") == "400"
    assert status(aws_dc, "a1", "/2021-03-23/api/token", *put, "X-aws-ec2-metadata-token-ttl-seconds: 60") == "403"
    assert status(aws_dc, "a1", "/latest/api/token", *put, "X-aws-ec2-metadata-token-ttl-seconds: 60",
                  "-H", "X-Forwarded-For: 198.18.0.9") == "403"
    # a1's token is not a2's
    token = curl(aws_dc, "a1", "/latest/api/token", *put, "X-aws-ec2-metadata-token-ttl-seconds: 60")
    assert status(aws_dc, "a2", "/latest/meta-data/", "-H", f"X-aws-ec2-metadata-token: {token}") == "401"
    page = curl(aws_dc, "a1", "/latest/meta-data/no-such-item")
    assert "<title>404 - Not Found</title>" in page


@pytest.mark.parametrize("vm, hops", [("a1", 1), ("a2", 2)])
def test_the_token_reply_leaves_with_ip_ttl_equal_to_the_hop_limit(aws_dc, vm, hops) -> None:
    out = aws_dc.run(vm, [sys.executable, "-c", SNIFF_TTL], timeout=20)
    result = json.loads(out.stdout)
    assert result["status"] == "200" and result["ttl_header"] == ["X-aws-ec2-metadata-token-ttl-seconds: 60"]
    assert result["ttls"] and set(result["ttls"]) == {hops}, result


@contextlib.contextmanager
def routed_behind(dc, vm: str):
    """A namespace one routed hop behind ``vm`` (a veth, forwarding and NAT in the VM, as
    Docker's default bridge network), removed afterwards; yields its name."""
    ns = f"{names.dc_prefix(dc.name)}c-{vm}"
    vm_ns = dc.namespace(vm)
    with netns.created(ns):
        pass
    try:
        fd = netns.open_fd(ns)
        try:
            with Rtnl.in_namespace(vm_ns) as sock:
                sock.add_veth("ctr0", 50, "eth0", 2, fd)
                sock.add_address(50, "198.19.252.1", 30)
                sock.flush()
        finally:
            os.close(fd)
        with Rtnl.in_namespace(ns) as sock:
            sock.set_link(1, up=True, what="lo up")
            sock.set_link(2, up=True, what="eth0 up")
            sock.add_address(2, "198.19.252.2", 30)
            sock.flush()
            sock.add_route("default", gateway="198.19.252.1")
            sock.flush()
        with netns.entered(vm_ns):
            netns.write_sysctl("net/ipv4/ip_forward", "1")
        nft.run(vm_ns, "table ip ctrnat {\n chain post {\n  type nat hook postrouting priority 100;\n"
                       '  ip saddr 198.19.252.0/30 oifname "eth0" masquerade\n }\n}\n')
        yield ns
    finally:
        netns.remove(ns)


def put_token_from(ns: str) -> subprocess.CompletedProcess:
    return hostexec.run(ns, ["curl", "-s", "--max-time", "3", "-X", "PUT", f"{IMDS}/latest/api/token",
                             "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60"], env=NO_PROXY, timeout=20)


def test_a_token_put_from_behind_the_vm_dies_with_hop_limit_1_and_arrives_with_2(aws_dc) -> None:
    with routed_behind(aws_dc, "a1") as ns:  # hop limit 1
        out = put_token_from(ns)
        assert out.returncode == 28 and out.stdout == "", (out.returncode, out.stdout)  # 28: curl timed out
        # the same client gets IMDSv1 answers (no TTL on GETs): the hop is there, only the token dies
        v1 = hostexec.run(ns, ["curl", "-s", "--max-time", "3", f"{IMDS}/latest/meta-data/placement/region"],
                          env=NO_PROXY, timeout=20)
        assert v1.stdout == "us-east-1"
    with routed_behind(aws_dc, "a2") as ns:  # hop limit 2
        out = put_token_from(ns)
        assert out.returncode == 0 and len(out.stdout) == 44


def test_events_added_in_aws_words_are_seen_in_aws_shapes_and_made_real(aws_dc) -> None:
    netsim(aws_dc, "event", "add", "a1", "--type", "system-reboot", "--in", "1", "--duration", "1")
    (event,) = json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/scheduled"))
    assert event["Code"] == "system-reboot" and event["State"] == "active"
    assert event["EventId"].startswith("instance-event-") and event["NotBefore"].endswith(" GMT")
    history = wait_until(lambda: json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/history")
                                            or "[]"), 20, "the reboot to complete")
    assert history[0]["State"] == "completed" and history[0]["Description"].startswith("[Completed] ")
    assert json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/scheduled")) == []
    # a canceled one moves to history as canceled
    netsim(aws_dc, "event", "add", "a1", "--type", "system-maintenance", "--in", "600")
    live = aws_dc.request("events")["events"]
    netsim(aws_dc, "event", "cancel", live[0]["event_id"])
    states = {e["State"] for e in json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/history"))}
    assert states == {"completed", "canceled"}
    # a rebalance recommendation, then a spot interruption that really removes the VM
    assert status(aws_dc, "a2", "/latest/meta-data/events/recommendations/rebalance",
                  "-H", "X-aws-ec2-metadata-token: x") == "401"
    netsim(aws_dc, "event", "add", "a1", "--type", "rebalance-recommendation", "--in", "0")
    notice = wait_until(lambda: curl(aws_dc, "a1", "/latest/meta-data/events/recommendations/rebalance"), 5,
                        "the rebalance recommendation")
    assert set(json.loads(notice)) == {"noticeTime"}
    assert status(aws_dc, "a1", "/latest/meta-data/spot/instance-action") == "404"
    added = time.time()
    netsim(aws_dc, "event", "add", "a1", "--type", "spot-interruption", "--in", "2")
    action = json.loads(curl(aws_dc, "a1", "/latest/meta-data/spot/instance-action"))
    assert action["action"] == "terminate"
    when = calendar.timegm(time.strptime(action["time"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(when - (added + 2)) < 2
    assert curl(aws_dc, "a1", "/latest/meta-data/instance-life-cycle") == "spot"
    ns = aws_dc.namespace("a1")
    wait_until(lambda: not os.path.exists(f"/run/netns/{ns}"), 15, "the spot interruption to remove the VM")


def test_netsim_events_shows_and_cancel_takes_the_ids_the_vm_sees(aws_dc) -> None:
    netsim(aws_dc, "event", "add", "a1", "--type", "instance-reboot", "--in", "600")
    (seen,) = json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/scheduled"))
    assert seen["Code"] == "instance-reboot"
    listing = netsim(aws_dc, "events")
    assert seen["EventId"] in listing and "instance-reboot" in listing
    netsim(aws_dc, "event", "cancel", seen["EventId"])
    (ended,) = json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/history"))
    assert ended["EventId"] == seen["EventId"] and ended["State"] == "canceled"


def test_instance_stop_and_spot_stop_power_the_vm_off_until_vm_start(aws_dc) -> None:
    netsim(aws_dc, "event", "add", "a1", "--type", "instance-stop", "--in", "0.5")
    wait_until(lambda: not link_up(aws_dc, "a1"), 15, "instance-stop to power a1 off")
    time.sleep(1)
    assert not link_up(aws_dc, "a1") and os.path.exists(f"/run/netns/{aws_dc.namespace('a1')}")  # off, not gone
    netsim(aws_dc, "vm", "start", "a1")
    assert wait_until(lambda: curl(aws_dc, "a1", "/latest/meta-data/placement/region"), 10,
                      "a1 to answer again") == "us-east-1"
    (done,) = json.loads(curl(aws_dc, "a1", "/latest/meta-data/events/maintenance/history"))
    assert done["Code"] == "instance-stop" and done["State"] == "completed"
    # a spot interruption with action stop: the notice says so, then the VM is off
    token = curl(aws_dc, "a2", "/latest/api/token", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60")
    netsim(aws_dc, "event", "add", "a2", "--type", "spot-interruption", "--action", "stop", "--in", "1")
    action = json.loads(curl(aws_dc, "a2", "/latest/meta-data/spot/instance-action",
                             "-H", f"X-aws-ec2-metadata-token: {token}"))
    assert action["action"] == "stop"
    wait_until(lambda: not link_up(aws_dc, "a2"), 15, "the spot stop to power a2 off")
    netsim(aws_dc, "vm", "start", "a2")
    wait_until(lambda: link_up(aws_dc, "a2"), 10, "a2 to be on again")


def test_asg_termination_moves_the_lifecycle_state_and_removes_the_vm(aws_dc) -> None:
    assert curl(aws_dc, "a1", "/latest/meta-data/autoscaling/target-lifecycle-state") == "InService"
    netsim(aws_dc, "event", "add", "a1", "--type", "asg-termination", "--in", "1.5")
    assert curl(aws_dc, "a1", "/latest/meta-data/autoscaling/target-lifecycle-state") == "Terminated"
    ns = aws_dc.namespace("a1")
    wait_until(lambda: not os.path.exists(f"/run/netns/{ns}"), 15, "the termination to remove the VM")


def test_bad_codes_and_actions_exit_2_naming_the_allowed_values(aws_dc) -> None:
    for args, words in ((["--type", "system-explode"], "system-reboot"), (["--type", "spot-interruption",
                                                                          "--action", "fly"], "hibernate")):
        out = subprocess.run([NETSIM, "event", "add", "a1", *args, "--name", aws_dc.name], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 2 and words in out.stderr
    out = subprocess.run([NETSIM, "event", "add", "a1", "--type", "system-reboot", "--action", "stop",
                          "--name", aws_dc.name], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "system-reboot:stop" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert curl(aws_dc, "a1", "/latest/meta-data/placement/region") == "us-east-1"  # still serving
