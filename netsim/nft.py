"""nftables rules loaded in-process through libnftables (Debian's libnftables1).

The nft command would cost a process per node; libnftables is the library behind it
(python3-nftables is a ctypes wrapper of the same). It opens its netlink socket in the
calling thread's namespace, so rules are loaded with the thread briefly inside.
"""

from __future__ import annotations

import ctypes
import ctypes.util

from netsim import netns
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
