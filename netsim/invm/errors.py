"""Errors of the scenario components, rooted in netsim's one hierarchy."""

from __future__ import annotations

from netsim.errors import NetsimError


class ScenarioError(NetsimError):
    """A scenario service could not be started, queried or stopped; the message says which
    and where to look."""


class RuntimeApiError(ScenarioError):
    """HAProxy's runtime API refused a command or could not be reached."""
