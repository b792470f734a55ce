"""A replay study's report: one self-contained HTML page (a forest plot of the replays' effects
and the pooled one, a table per replay with a link to its own report) and the same numbers as
JSON. A report always renders the same."""

from __future__ import annotations

import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from aifx_ml.jsonsafe import finite
from aifx_ml.replay.render import STYLE
from aifx_ml.replay.study import Pooled, StudyReport, points

HTML_NAME, JSON_NAME = "study-report.html", "study-report.json"
COLORS = {"ahead": "#2ca02c", "behind": "#d62728", "no clear difference": "#1f77b4"}


def write_study_report(report: StudyReport, folder: Path) -> tuple[Path, Path]:
    """Write the HTML page and the JSON (`as_dict()`) into `folder`; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    html_path, json_path = folder / HTML_NAME, folder / JSON_NAME
    html_path.write_text(render_study_html(report, folder), encoding="utf-8")
    text = json.dumps(finite(report.as_dict()), indent=2, allow_nan=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    return html_path, json_path


def render_study_html(report: StudyReport, folder: Path) -> str:
    """The page; links to the replays' reports are relative to `folder`, where it is written."""
    counts = report.counts
    sections = [
        f"<h1>{_e(report.title)}: does continuous learning help on this market?</h1>",
        f'<p class="headline">{_e(report.headline)}</p>',
        '<p class="muted">Each replay compares the Production model of the moment with the '
        "first Production version, frozen, on the same requests (accuracy, 95% cluster-"
        "bootstrap interval). The pooled estimate treats the replays as a sample of the "
        "market's paths: random effects, with a Hartung–Knapp interval on k − 1 degrees of "
        "freedom, wide when the replays are few or disagree.</p>",
        "<h2>Continuous minus frozen, per replay</h2>",
        forest_svg(report),
        "<h2>Replays</h2>",
        _replays_table(report, folder),
        "<h2>Pooled over replays</h2>",
        _pooled_table(report),
        "<h2>Counts</h2>",
        "<table>"
        + "".join(f"<tr><th>{_e(k)}</th><td class='n'>{v}</td></tr>" for k, v in counts.items())
        + "</table>",
        "<h2>What the replays share</h2>",
        f"<pre>{_e(json.dumps(report.base, indent=2))}</pre>",
        "<h2>What varies</h2>",
        f"<pre>{_e(json.dumps(report.spec, indent=2))}</pre>",
    ]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(report.title)}: replay study</title><style>{STYLE}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>\n"
    )


def forest_svg(report: StudyReport) -> str:
    """Each replay's effect (points) with its 95% interval, and the pooled one (a diamond)."""
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib: only when plotting)

    rows = [(o.name, o.effect) for o in report.outcomes if o.effect is not None]
    if not rows:
        return '<p class="muted">no replay got to a comparison</p>'
    labels = [name for name, _ in rows] + (["pooled"] if report.accuracy is not None else [])
    fig = Figure(figsize=(8, 0.45 * len(labels) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    for y, (_, effect) in enumerate(rows):
        lo, hi = (100 * v for v in effect.ci)
        color = COLORS.get(effect.conclusion, "#777")
        ax.plot([lo, hi], [y, y], color=color, linewidth=2)
        ax.plot([100 * effect.estimate], [y], "o", color=color)
    if report.accuracy is not None:
        y, (lo, hi), mid = len(rows), report.accuracy.ci, report.accuracy.estimate
        ax.fill(
            [100 * lo, 100 * mid, 100 * hi, 100 * mid],
            [y, y - 0.3, y, y + 0.3],
            color=COLORS.get(report.accuracy.conclusion, "#777"),
        )
    ax.axvline(0, color="#222", linewidth=1)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("continuous minus frozen accuracy (points, 95% CI)")
    ax.grid(alpha=0.3, axis="x")
    import matplotlib  # noqa: PLC0415

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "aifx-study", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _replays_table(report: StudyReport, folder: Path) -> str:
    head = (
        "<tr><th>replay</th><th>varies</th><th>outcome</th><th>requests</th>"
        "<th>continuous − frozen (points, 95% CI)</th><th>pnl % per signal</th>"
        "<th>frozen version</th><th>minutes</th><th>report</th></tr>"
    )
    body = []
    for o in report.outcomes:
        axes = ", ".join(f"{k}={v}" for k, v in o.axes.items())
        e = o.effect
        link = (
            f'<a href="{_e(os.path.relpath(o.report_html, folder))}">report</a>'
            if o.report_html
            else _e(o.error or "")
        )
        cells = [
            _e(o.name),
            _e(axes),
            _e(o.outcome),
            "" if e is None else str(e.requests),
            "" if e is None else _points(e.estimate, e.ci),
            "" if e is None else _signed(e.pnl_estimate, e.pnl_ci),
            "" if e is None else _e(str(e.frozen_version)),
            "" if o.seconds is None else f"{o.seconds / 60:.1f}",
            link,
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _pooled_table(report: StudyReport) -> str:
    rows: list[tuple[str, Pooled | None, bool]] = [
        ("continuous − frozen accuracy", report.accuracy, True),
        ("continuous − frozen pnl % per signal", report.pnl, False),
    ]
    rows += [(f"continuous − {b} accuracy", p, True) for b, p in report.versus.items()]
    head = (
        "<tr><th>difference</th><th>pooled (95% CI)</th><th>replays</th><th>conclusion</th>"
        "<th>I² (between replays)</th></tr>"
    )
    body = []
    for label, pooled, in_points in rows:
        if pooled is None:
            continue
        show = _points if in_points else _signed
        value = show(pooled.estimate, pooled.ci)
        body.append(
            f"<tr><td>{_e(label)}</td><td>{value}</td><td class='n'>{pooled.replays}</td>"
            f"<td>{_e(pooled.conclusion)}</td><td class='n'>{100 * pooled.i2:.0f}%</td></tr>"
        )
    if not body:
        return '<p class="muted">nothing to pool</p>'
    return f"<table>{head}{''.join(body)}</table>"


def _points(estimate: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(estimate):
        return ""
    return f"{points(estimate)} ({points(ci[0])} to {points(ci[1])})"


def _signed(estimate: float, ci: tuple[float, float]) -> str:
    if not np.isfinite(estimate):
        return ""
    return f"{estimate:+.3f} ({ci[0]:+.3f} to {ci[1]:+.3f})"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
