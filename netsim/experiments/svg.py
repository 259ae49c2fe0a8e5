"""The timeline picture of an experiment's report, as hand-written SVG (standard library only).

One shared time axis; a lane per step (its bar from start to end, red when it failed), per
event (notice, then impact), per fault (while it is in force), then the client requests
per second of each load step (green ok, red failed) and the checks' verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.sax.saxutils import escape

from netsim.experiments.record import window

WIDTH, LEFT, RIGHT, LANE = 1000, 190, 20, 18
STEP_COLORS = {"event": "#7a5", "walk": "#57a", "node_fail": "#a33", "node_recover": "#3a6", "vm_start": "#3a6",
               "fault": "#d80", "clear": "#888", "wait": "#bbb", "load": "#4a4", "exec": "#559"}
FAULT_COLORS = {"http": "#e80", "link": "#a4c"}
LOAD_PANEL = 120


def render(report: dict) -> str:
    """The SVG text of ``report`` (:func:`netsim.experiments.report.build`)."""
    span = max(report.get("duration_s") or 0.0, 1.0)
    x = lambda t: LEFT + (WIDTH - LEFT - RIGHT) * min(max(t, 0.0), span) / span  # noqa: E731
    rows: list[str] = []
    y = 50

    def lane(label: str, bars: list[tuple[float, float, str, str]]) -> None:
        nonlocal y
        rows.append(f'<text x="{LEFT - 6}" y="{y + 12}" text-anchor="end">{escape(label[:30])}</text>')
        for start, end, color, text in bars:
            w = max(2.0, x(end) - x(start))
            rows.append(f'<rect x="{x(start):.1f}" y="{y}" width="{w:.1f}" height="{LANE - 4}" fill="{color}">'
                        f'<title>{escape(text)}</title></rect>')
            if text and w > 40:
                rows.append(f'<text x="{x(start) + 3:.1f}" y="{y + 11}" fill="white" font-size="10">'
                            f'{escape(text[:int(w / 6)])}</text>')
        y += LANE

    def section(title: str) -> None:
        nonlocal y
        y += 6
        rows.append(f'<text x="10" y="{y + 12}" font-weight="bold">{escape(title)}</text>')
        y += LANE

    section("steps")
    for s in report["steps"]:
        if s["started"] is None:
            lane(f"{s['name']} ({s['do']})", [])
            continue
        end = s["ended"] if s["ended"] is not None else span
        color = STEP_COLORS.get(s["do"], "#777") if s["ok"] else "#d22"
        lane(f"{s['name']} ({s['do']})", [(s["started"], end, color, s["detail"] or s["do"])])
    if report.get("events"):
        section("events (notice, impact)")
        for e in report["events"]:
            st = e["states"]
            sched, started = st.get("Scheduled"), st.get("Started")
            over = min((st[k] for k in ("Completed", "Canceled") if k in st), default=span)
            bars = []
            if sched is not None:
                bars.append((sched, started if started is not None else over, "#cb4", "notice"))
            if started is not None:
                bars.append((started, over, "#555", "impact"))
            lane(f"{e['type']} {' '.join(e['vms'])}", bars)
    if report.get("faults"):
        section("faults (in force)")
        for f in report["faults"]:
            start, end = window(f)
            bars = [(start, span if end is None else end, FAULT_COLORS.get(f.get("kind"), "#777"),
                     ", ".join(f"{k}={v}" for k, v in (f.get("options") or {}).items()))] if start is not None else []
            lane(f"{f['id']} {f.get('target')}", bars)
    for name, load in (report.get("load") or {}).items():
        section(f"{name}: {load.get('sent')} requests, {load.get('failed')} failed (per second: green ok, red failed)")
        per = load["per_second"]
        top = max((ok + bad for _, ok, bad in per), default=1) or 1
        base = y + LOAD_PANEL
        bar = max(1.0, (WIDTH - LEFT - RIGHT) / span - 1)
        rows += outcome_bars(lambda sec: x(load["started"] + sec), base, LOAD_PANEL - 10, per, top, bar)
        rows.append(f'<text x="{LEFT - 6}" y="{base - LOAD_PANEL + 20}" text-anchor="end">{top}/s</text>')
        y = base + 4
    axis = y + 4
    rows.append(f'<line x1="{LEFT}" y1="{axis}" x2="{WIDTH - RIGHT}" y2="{axis}" stroke="black"/>')
    for i in range(11):
        t = span * i / 10
        rows.append(f'<line x1="{x(t):.1f}" y1="40" x2="{x(t):.1f}" y2="{axis + 4}" stroke="#ddd"/>'
                    f'<text x="{x(t):.1f}" y="{axis + 16}" text-anchor="middle" font-size="10">{t:.0f} s</text>')
    y = axis + 24
    section("checks")
    for c in report["checks"]:
        color = "#282" if c["passed"] else "#c22"
        rows.append(f'<text x="20" y="{y + 12}" fill="{color}">{"PASS" if c["passed"] else "FAIL"}  '
                    f'{escape(c["check"])}: {escape(c["detail"][:140])}</text>')
        y += LANE
    title = (f"netsim experiment {report['experiment']}: {'PASSED' if report['passed'] else 'FAILED'} "
             f"({report['duration_s']:.0f} s, datacenter {report['datacenter']}, {report['cloud']})")
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y + 20}" font-family="sans-serif" '
            'font-size="12">', '<rect width="100%" height="100%" fill="white"/>',
            f'<text x="10" y="24" font-size="15">{escape(title)}</text>']
    # Grid lines first, so that bars are drawn over them.
    grid = [r for r in rows if 'stroke="#ddd"' in r]
    return "\n".join(head + grid + [r for r in rows if 'stroke="#ddd"' not in r] + ["</svg>"]) + "\n"


def outcome_bars(x: Callable[[float], float], base: float, height: float, per_second: list, top: int,
                 bar: float) -> list[str]:
    """SVG bars of a client's outcomes per second (``[second, ok, failed]``): green for
    the answered requests, red (at least 2 px) above them for the failed ones, standing on
    ``base``; ``height`` is that of ``top`` requests, ``x(second)`` the left edge."""
    out = []
    for second, ok, bad in per_second:
        h_ok, h_bad = height * ok / top, max(height * bad / top, 2.0)
        out.append(f'<rect x="{x(second):.1f}" y="{base - h_ok:.1f}" width="{bar:.1f}" height="{h_ok:.1f}" '
                   'fill="#3a3"/>')
        if bad:
            out.append(f'<rect x="{x(second):.1f}" y="{base - h_ok - h_bad:.1f}" width="{bar:.1f}" '
                       f'height="{h_bad:.1f}" fill="#d22"/>')
    return out


def write(report: dict, path: str) -> None:
    """Write the picture of ``report`` to ``path``."""
    with open(path, "w") as f:
        f.write(render(report))
