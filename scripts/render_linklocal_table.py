#!/usr/bin/env python3
"""Render the RFC 3927 constants and the Claim transition table as Markdown (+ a Mermaid diagram).

Usage: .venv/bin/python scripts/render_linklocal_table.py > docs/linklocal-states.md
Both tables come from the code (``netsim.linklocal.constants`` and
``netsim.linklocal.machine.TRANSITIONS``), so the docs cannot drift from them.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from netsim.linklocal.constants import table  # noqa: E402
from netsim.linklocal.machine import TRANSITIONS, Claim  # noqa: E402


def render() -> str:
    """The whole document as a string."""
    out = ["## RFC 3927 section 9 constants", "", "| name | value | unit | meaning |", "|---|---|---|---|"]
    out += [f"| {name} | {value:g} | {unit} | {meaning} |" for name, value, unit, meaning in table()]
    out += ["", "## Claim transitions", "", "| state | event | handler | next states | what it does |",
            "|---|---|---|---|---|"]
    for (state, event), t in TRANSITIONS.items():
        doc = (getattr(Claim, t.handler).__doc__ or "").strip().splitlines()[0]
        targets = ", ".join(sorted(s.name for s in t.targets))
        out.append(f"| {state.name} | {event.name} | `{t.handler}` | {targets} | {doc} |")
    out += ["", "```mermaid", "stateDiagram-v2", "    [*] --> INIT"]
    edges: dict[tuple[str, str], list[str]] = {}
    for (state, event), t in TRANSITIONS.items():
        for target in t.targets:
            edges.setdefault((state.name, target.name), []).append(event.name)
    out += [f"    {a} --> {b}: {' / '.join(sorted(set(evs)))}" for (a, b), evs in sorted(edges.items())]
    out += ["    STOPPED --> [*]", "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
