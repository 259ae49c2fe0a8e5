"""The docs table is generated from the code: every constant and transition appears."""

from __future__ import annotations

import runpy
from pathlib import Path

from netsim.linklocal.constants import table
from netsim.linklocal.machine import TRANSITIONS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "render_linklocal_table.py"


def test_render_lists_every_constant_and_transition():
    text = runpy.run_path(str(SCRIPT))["render"]()
    assert all(f"| {name} |" in text for name, *_ in table())
    for (state, event), t in TRANSITIONS.items():
        assert f"| {state.name} | {event.name} | `{t.handler}` |" in text
    assert "stateDiagram-v2" in text
