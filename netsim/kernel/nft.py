"""nftables rules loaded in-process through libnftables (Debian's libnftables1).

The nft command would cost a process per node; libnftables is the library behind it
(python3-nftables is a ctypes wrapper of the same). It opens its netlink socket in the
calling thread's namespace, so rules are loaded with the thread briefly inside.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from netsim.kernel import netns
from netsim.errors import NetsimError


class NftError(NetsimError):
    """nftables refused a ruleset."""


_lib = None


def _library():
    global _lib
    if _lib is None:
        path = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            raise NftError("libnftables is missing: install Debian's 'nftables' package (scripts/setup does)") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


def run(namespace: str | int, commands: str) -> str:
    """Run nft ``commands`` (ruleset syntax) inside a namespace; return nft's output."""
    lib = _library()
    with netns.entered(namespace):
        ctx = lib.nft_ctx_new(0)
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            rc = lib.nft_run_cmd_from_buffer(ctx, commands.encode())
            out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode()
            err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode()
        finally:
            lib.nft_ctx_free(ctx)
    if rc != 0:
        raise NftError(f"nftables refused the rules in namespace {namespace}: {err.strip()}")
    return out


# RFC 3927 section 7: a router MUST NOT forward a packet whose source or destination is
# link-local. Linux forwards such packets unless told not to, so every netsim router
# (nodes and the fabric) loads this. Frames merely *bridged* between two ports of one
# node also reach this hook when br_netfilter is loaded; they enter on a port (p-*, h-*)
# rather than on the bridge, and are same-link traffic that must pass.
NO_LINK_LOCAL_FORWARDING = """
table inet netsim {
    chain forward {
        type filter hook forward priority 0; policy accept;
        iifname { "p-*", "h-*" } accept comment "bridged between ports of one link, not routed"
        ip saddr 169.254.0.0/16 counter drop comment "RFC 3927 s7: never forward link-local"
        ip daddr 169.254.0.0/16 counter drop comment "RFC 3927 s7: never forward link-local"
    }
}
"""


def port_security(ports: dict[str, tuple[str, list[str]]], metadata_address: str) -> str:
    """Bridge rules for a node: ``ports`` maps a VM port name to (its MAC, the addresses it
    owns from the start). More owned addresses are added as VMs claim them
    (:func:`claim_commands`).

    From a VM port only untagged IPv4 and ARP frames pass (no 802.1Q or 802.1ad tag, not
    even VLAN 0 or a priority tag, which the kernel would process as plain ARP; no IPv6;
    nothing else); frames and ARP only from the VM's own MAC; no ARP for the metadata
    address; ARP and IPv4 only from addresses the VM owns, or from a link-local address
    nobody owns yet: that is how RFC 3927 claims one, and it keeps a VM's first packets
    after a claim from racing the update of ``owner``. Cloud virtual switches enforce the
    same (ARCHITECTURE.md, "Trust boundary").

    The rules sit in the bridge's prerouting hook, which runs before the bridge learns or
    looks anything up; the ports do not learn at all (:meth:`netsim.kernel.rtnl.Rtnl.pin_port`).
    """
    macs = ", ".join(f'"{port}" . {mac}' for port, (mac, _) in ports.items())
    macs = f"elements = {{ {macs} }}" if macs else ""
    owned = [(ip, port) for port, (_, ips) in ports.items() for ip in ips]
    claimed = f"elements = {{ {', '.join(ip for ip, _ in owned)} }}" if owned else ""
    owners = f"elements = {{ {', '.join(f'{ip} . {chr(34)}{port}{chr(34)}' for ip, port in owned)} }}" if owned else ""
    # The tag of a VLAN-tagged frame is taken off into skb metadata when the frame is
    # received; nft's ``ether type`` puts it back, so a tagged frame reads 0x8100/0x88a8.
    main = _indent(
        'iifname != "p-*" accept comment "not a VM port"',
        'ether type != { ip, arp } counter drop comment "only untagged IPv4 and ARP from a VM"',
        'iifname . ether saddr != @port_mac counter drop comment "MAC spoofing"',
        "ether type arp jump vm_arp",
        f"ip saddr {metadata_address} counter drop comment \"IPv4 from the metadata address\"",
        'ip saddr @claimed ip saddr . iifname != @owner counter drop '
        'comment "IPv4 from an address owned by another VM"',
        'ip saddr != 169.254.0.0/16 ip saddr . iifname != @owner counter drop '
        'comment "IPv4 from an address the VM does not own"',
    )
    arp = _indent(
        # The sender fields below are read at Ethernet/IPv4 offsets: anything else is no ARP we take.
        'arp htype != 1 counter drop comment "ARP not for Ethernet"',
        'arp ptype != ip counter drop comment "ARP not for IPv4"',
        'arp hlen != 6 counter drop comment "ARP with a bad hardware length"',
        'arp plen != 4 counter drop comment "ARP with a bad protocol length"',
        'iifname . arp saddr ether != @port_mac counter drop comment "ARP sender MAC spoofing"',
        f'arp saddr ip {metadata_address} counter drop comment "ARP for the metadata address"',
        'arp saddr ip @claimed arp saddr ip . iifname != @owner counter drop '
        'comment "ARP for an address another VM owns"',
        'arp saddr ip != { 0.0.0.0, 169.254.0.0/16 } arp saddr ip . iifname != @owner counter drop '
        'comment "ARP for a routable address the VM does not own"',
    )
    return f"""
table bridge netsim_portsec {{
    set port_mac {{ type ifname . ether_addr; {macs} }}
    set claimed {{ type ipv4_addr; {claimed} }}
    set owner {{ type ipv4_addr . ifname; {owners} }}
    chain prerouting {{
        type filter hook prerouting priority filter; policy accept;
{main}
    }}
    chain vm_arp {{
{arp}
    }}
}}
"""


def _indent(*rules: str) -> str:
    return "\n".join(f"        {r}" for r in rules)


def claim_commands(port: str, address: str, owned: bool) -> str:
    """nft commands recording that the VM behind ``port`` now owns (or gave up) ``address``."""
    verb = "add" if owned else "delete"
    return (f"{verb} element bridge netsim_portsec claimed {{ {address} }}\n"
            f'{verb} element bridge netsim_portsec owner {{ {address} . "{port}" }}\n')


def container_nat(subnet: str, uplink: str) -> str:
    """NAT rules for a VM whose containers sit behind its bridge, as Docker's default bridge
    network does: what the containers (``subnet``) send out of ``uplink`` (the VM's eth0)
    leaves with the VM's own address for that destination (its link-local one towards
    169.254.169.254), so the metadata service answers them as the VM, one routed hop away."""
    return f"""
table ip netsim_containers {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} oifname "{uplink}" counter masquerade comment "containers leave as the VM"
    }}
}}
"""
