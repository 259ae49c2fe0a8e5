"""Operator tools: the ``netsim`` command line, ``watch``, ``reach``, ``capture`` and ``demo``."""
