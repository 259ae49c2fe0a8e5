"""The root of the one error hierarchy of netsim and of its metadata service.

The metadata service (this package, ``netsim_imds``) imports nothing from ``netsim``, so
the root lives here and :mod:`netsim.errors` re-exports it: every ``except NetsimError``
catches the errors of both packages.
"""

from __future__ import annotations


class NetsimError(Exception):
    """Base of every netsim error; its message says what went wrong and what to do."""
