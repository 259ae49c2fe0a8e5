"""The one namespace guard: traffic starts only inside a namespace netsim created."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netsim.model import names
from netsim.kernel import netns
from netsim.errors import RootNamespaceError
from netsim.kernel.safety import require_emulated_namespace


def test_guard_refuses_the_host_namespace_and_names_the_program():
    with pytest.raises(RootNamespaceError, match="loadgen refuses"):
        require_emulated_namespace("loadgen")


@pytest.mark.root
def test_guard_returns_the_namespace_it_runs_in(datacenter):
    ns = names.vm_ns(datacenter.name, "web1")
    with netns.entered(ns):
        assert require_emulated_namespace("test") == ns


@pytest.mark.root
def test_in_vm_program_runs_inside_a_vm_and_refuses_on_the_host(datacenter):
    code = "from netsim.kernel.safety import require_emulated_namespace as r; print(r('probe'))"
    inside = datacenter.run("web1", [sys.executable, "-c", code])
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.strip() == names.vm_ns(datacenter.name, "web1")
    outside = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert outside.returncode != 0 and "probe refuses" in outside.stderr
