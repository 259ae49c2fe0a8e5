"""Experiments: a TOML file of steps on one timeline (events, maintenance walks, node
failures, faults, waits, load, programs in VMs) with checks, run against a real datacenter
by ``netsim experiment run FILE``.

:mod:`~netsim.experiments.spec` (the data), :mod:`~netsim.experiments.loader` (the file),
:mod:`~netsim.experiments.schedule` (sans-IO: what is due at ``now``),
:mod:`~netsim.experiments.runner` (the driver), :mod:`~netsim.experiments.checks`,
:mod:`~netsim.experiments.report` (JSON and the live timeline) and
:mod:`~netsim.experiments.svg` (the picture). Example files: ``netsim/experiments/examples/``.
"""
