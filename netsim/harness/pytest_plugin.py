"""pytest plugin: real datacenters as fixtures (registered through the ``pytest11`` entry point).

Fixtures:

- ``netsim_state_dir`` (session): a private state folder for every datacenter the
  session builds, so tests never touch the state of datacenters a user runs.
- ``datacenter_factory`` (function): ``make(topology=None, **settings)`` builds a
  datacenter (default topology, a :class:`~netsim.model.Datacenter`, TOML text or a
  path) under a unique name, starts its daemon, waits until every VM has claimed its
  link-local address, and tears it down after the test. VMs claim with the fast timer
  profile (RFC 3927 intervals / 10) unless ``timers="rfc"`` is passed.
- ``datacenter`` (function): the default topology, built.
- ``host_exec`` (function): ``host_exec(host, *argv)`` runs a command in a host of the
  test's latest datacenter and returns the CompletedProcess.
- ``fault`` (function): ``fault(target, **options)`` adds a fault (issue 13) to the
  test's latest datacenter; the test's faults are cleared after it.
- ``assert_reachable`` / ``assert_unreachable`` (function): ``(src, dst, port=None)``;
  ``src`` is a host, ``dst`` a host (its routable address), ``HOST:link-local``,
  ``metadata`` (the source VM's node's 169.254.169.254) or an address.

Tests that need root carry ``@pytest.mark.root``: without root they skip with the reason;
with ``CI=true`` in the environment they fail instead, so nothing disappears silently.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from netsim.api import datacenter as dcapi
from netsim.kernel.probe import Probe, run_probes
from netsim.tools.reach import namespace_of
from netsim.model import addressing, load
from netsim.model import parse
from netsim.model.topology import Datacenter

_counter = itertools.count(1)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: the test creates kernel objects and needs root "
                                       "(skipped without root; fails instead when CI=true)")


def pytest_report_header(config: pytest.Config) -> str:
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()} (root tests will {'FAIL' if _in_ci() else 'skip'})"
    return f"netsim: running as {who}; CI={'true' if _in_ci() else 'false'}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") and os.geteuid() != 0:
        reason = "needs root to create network namespaces (run as root, e.g. sudo)"
        if _in_ci():
            pytest.fail(f"{reason}; CI=true, so this is a failure, not a skip")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def netsim_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``netsim_state_dir`` (session scope): the path of a private state folder.

    Every datacenter the session builds keeps its state (``datacenter.json``, the event
    repository, ``daemon.log``) below it, so tests never touch the state of datacenters a
    user runs on the same host. ``NETSIM_STATE_DIR`` is set for the session and restored
    after it. Example::

        def test_log(datacenter, netsim_state_dir):
            log = pathlib.Path(netsim_state_dir, datacenter.topology.name, "daemon.log")
            assert log.exists()
    """
    path = str(tmp_path_factory.mktemp("netsim-state"))
    old = os.environ.get("NETSIM_STATE_DIR")
    os.environ["NETSIM_STATE_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("NETSIM_STATE_DIR", None)
    else:
        os.environ["NETSIM_STATE_DIR"] = old


def unique_name() -> str:
    """A datacenter name no other test of any concurrent session uses (<= 8 characters)."""
    return f"t{os.getpid() % 1000:03d}{next(_counter):03d}"[:8]


class _Factory:
    def __init__(self) -> None:
        self.running: list[dcapi.RunningDatacenter] = []

    def __call__(self, topology: Datacenter | str | None = None, **settings) -> dcapi.RunningDatacenter:
        if topology is None:
            topo = load()
        elif isinstance(topology, Datacenter):
            topo = topology
        elif "\n" in topology or "[" in topology:
            topo = parse(topology, "<test topology>")
        else:
            topo = load(topology)
        # Tests claim link-local addresses with the fast timer profile unless told otherwise.
        if topo.linklocal == "claim" and topo.timers == "rfc" and "timers" not in settings:
            settings["timers"] = "fast"
        topo = replace(topo, name=settings.pop("name", unique_name()), **settings)
        running = dcapi.up(topo)
        self.running.append(running)
        return running

    def teardown(self) -> None:
        errors = []
        for running in reversed(self.running):
            try:
                running.down()
            except Exception as exc:  # tear down the others, then report
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def datacenter_factory(netsim_state_dir: str) -> Iterator[Callable[..., dcapi.RunningDatacenter]]:
    """``datacenter_factory`` (function scope): ``make(topology=None, **settings)``.

    ``make`` builds a datacenter and returns its
    :class:`~netsim.api.datacenter.RunningDatacenter`: ``topology`` is None (the embedded
    default), a :class:`~netsim.model.Datacenter`, TOML text or a file path;
    ``settings`` replace fields of the topology's ``[datacenter]`` table (``name``,
    ``timers``, ``linklocal``, ...). Each datacenter gets a unique name, its daemon is
    started, every VM has claimed its link-local address when ``make`` returns (with the
    fast timer profile unless ``timers="rfc"`` is passed), and everything is torn down
    after the test, even when it fails. Example::

        @pytest.mark.root
        def test_rfc_timers(datacenter_factory):
            dc = datacenter_factory(timers="rfc")       # or a Datacenter, TOML text, a path
            assert dc.link_local_addresses()["web1"].startswith("169.254.")
    """
    factory = _Factory()
    yield factory
    factory.teardown()


@pytest.fixture
def datacenter(datacenter_factory) -> dcapi.RunningDatacenter:
    """``datacenter`` (function scope): the default topology, built and running.

    Two nodes and availability set ``web`` of three VMs (``web1``, ``web3`` on ``n1``,
    ``web2`` on ``n2``), a :class:`~netsim.api.datacenter.RunningDatacenter` torn down after the
    test. Example::

        @pytest.mark.root
        def test_status(datacenter):
            assert {v["name"] for v in datacenter.status()["vms"]} == {"web1", "web2", "web3"}
    """
    return datacenter_factory()


def _latest(factory: _Factory) -> dcapi.RunningDatacenter:
    if not factory.running:
        raise RuntimeError("build a datacenter first (datacenter or datacenter_factory fixture)")
    return factory.running[-1]


@pytest.fixture
def host_exec(datacenter_factory):
    """``host_exec`` (function scope): ``host_exec(host, *argv, **kwargs)``.

    Runs ``argv`` inside ``host`` (a VM name, ``VM/CONTAINER``, ``node:NAME``, ``lb``, ``client`` or ``ops``)
    of the test's latest datacenter and returns the ``subprocess.CompletedProcess``
    (stdout and stderr as text; ``kwargs`` go to :meth:`RunningDatacenter.run`, e.g.
    ``timeout``). Example::

        @pytest.mark.root
        def test_eth0(datacenter, host_exec):
            assert "eth0" in host_exec("web1", "ip", "link").stdout
    """
    def run(host: str, *argv: str, **kwargs):
        return _latest(datacenter_factory).run(host, argv, **kwargs)
    return run


def _resolve(dc: dcapi.RunningDatacenter, src: str, dst: str) -> str:
    if dst == "metadata":
        return addressing.METADATA_ADDRESS
    host, _, kind = dst.partition(":")
    if host in addressing.EXTRA_HOST_ADDRESSES:
        return addressing.EXTRA_HOST_ADDRESSES[host]
    if host in {v.name for v in dc.topology.vms}:
        if kind == "link-local":
            address = dc.link_local_addresses()[host]
            assert address, f"{host} has no link-local address"
            return address
        return dc.routable_address(host)
    return dst


def _reach(factory: _Factory, src: str, dst: str, port: int | None, timeout: float) -> bool:
    dc = _latest(factory)
    probe = Probe(namespace_of(dc.topology, src), _resolve(dc, src, dst), port)
    return run_probes([probe], timeout=timeout)[probe]


@pytest.fixture
def assert_reachable(datacenter_factory):
    """``assert_reachable`` (function scope): ``assert_reachable(src, dst, port=None, timeout=2.0)``.

    Fails the test unless an ICMP echo (or a TCP connect to ``port``) sent from inside
    host ``src`` gets an answer from ``dst`` within ``timeout`` seconds. ``dst`` is a host
    (its routable address), ``HOST:link-local``, ``metadata`` (169.254.169.254 of the
    source VM's own node) or an address. Example::

        assert_reachable("web1", "web3:link-local")   # same node
        assert_reachable("web1", "metadata", port=80)
    """
    def check(src: str, dst: str, port: int | None = None, timeout: float = 2.0) -> None:
        assert _reach(datacenter_factory, src, dst, port, timeout), \
            f"{src} does not reach {dst}" + (f" on TCP {port}" if port else "")
    return check


@pytest.fixture
def assert_unreachable(datacenter_factory):
    """``assert_unreachable`` (function scope): ``assert_unreachable(src, dst, port=None, timeout=1.0)``.

    Fails the test if the probe of :func:`assert_reachable` gets an answer within
    ``timeout`` seconds. Example::

        assert_unreachable("web2", "web1:link-local")  # other node: never forwarded
    """
    def check(src: str, dst: str, port: int | None = None, timeout: float = 1.0) -> None:
        assert not _reach(datacenter_factory, src, dst, port, timeout), \
            f"{src} reaches {dst}" + (f" on TCP {port}" if port else "") + " but must not"
    return check


@pytest.fixture
def fault(datacenter_factory):
    """``fault`` (function scope): ``fault(target, **options)`` (issue 13).

    Adds a fault to the test's latest datacenter and returns it as ``netsim fault list
    --json`` shows it (``id``, ``state``, ...): ``target`` is a VM, ``node:NAME`` or
    ``all``; ``options`` are ``fault_add``'s keys (``http=503``, ``delay=200``,
    ``probability=0.2``, ``loss=20``, ``partition=True``, ``in_=5``, ``duration=30``...).
    Every fault the test added is cleared after it. Example::

        @pytest.mark.root
        def test_retries(datacenter, fault, host_exec):
            fault("web1", http=503, duration=2)   # a client of web1 sees 503 for two seconds
    """
    added: list[tuple[dcapi.RunningDatacenter, str]] = []

    def add(target: str, **options) -> dict:
        dc = _latest(datacenter_factory)
        made = dc.add_fault(target, **options)
        added.append((dc, made["id"]))
        return made
    yield add
    for dc, fault_id in added:
        if any(f["id"] == fault_id for f in dc.faults()):
            dc.clear_faults(fault_id)
