"""The replay report for people and tools: one self-contained HTML page (plots as inline SVG, no
network), the same numbers as JSON and as MLflow metrics. A report always renders the same."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aifx_ml.replay.report import SERIES, ReplayReport, SeriesMetrics, percent, utc_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLORS = {
    "continuous": "#1f77b4",
    "frozen": "#ff7f0e",
    "persistence": "#7f7f7f",
    "majority": "#2ca02c",
}
HTML_NAME, JSON_NAME = "replay-report.html", "replay-report.json"
SUFFIX = {"overall": "overall", "before_change": "before", "after_change": "after"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.headline{font-size:1.1rem;background:#f4f7fb;border-left:4px solid #1f77b4;padding:.8rem 1rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777;font-size:.85rem}svg{max-width:100%;height:auto}
"""


def write_report(report: ReplayReport, out_dir: Path) -> tuple[Path, Path]:
    """Write the HTML page and the JSON (`as_dict()`); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / HTML_NAME, out_dir / JSON_NAME
    html_path.write_text(render_html(report), encoding="utf-8")
    text = json.dumps(report.as_dict(), indent=2, allow_nan=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    return html_path, json_path


def render_html(report: ReplayReport) -> str:
    """The whole page: headline, plots, summary and verdict, timeline and evaluation tables."""
    timeline = report.timeline
    coverage = report.comparison.coverage
    sections = [
        f"<h1>{_e(report.title)}: did continuous learning pay off?</h1>",
        f'<p class="headline">{_e(report.headline)}</p>',
        f'<p class="muted">{_e(_scope(report))}</p>',
        "<h2>Accuracy by week</h2>",
        accuracy_svg(report),
        "<h2>Cumulative pnl %</h2>",
        pnl_svg(report),
        "<h2>Production and A/B tests</h2>",
        timeline_svg(report),
        "<h2>Every series on the same requests</h2>",
        _summary_table(report),
        f'<p class="muted">{_e(_coverage_text(coverage))}</p>',
        "<h2>Continuous minus the others (paired, cluster bootstrap by pair and UTC day)</h2>",
        _verdict_table(report),
        "<h2>How the loop ran</h2>",
        _operations_table(report),
        "<h2>Model versions</h2>",
        _table(timeline.versions),
        "<h2>Stage changes</h2>",
        _table(timeline.stage_changes),
        "<h2>A/B tests</h2>",
        _table(report.ab_tests.drop(columns=["test_id"], errors="ignore")),
        "<h2>Monthly evaluations</h2>",
        _table(report.evaluations, links={"report_path": _file_link}),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(report.title)}: replay report</title><style>{STYLE}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


def accuracy_svg(report: ReplayReport) -> str:
    """Weekly accuracy per series with its Wilson 95% band, drawn mid-week; a line at the change."""
    weekly = report.comparison.weekly
    fig, ax = _figure()
    for name in SERIES:
        w = weekly[weekly["series"] == name]
        if w.empty:
            continue
        x = _naive(w["week"] + pd.Timedelta(days=3.5))
        ax.plot(x, w["accuracy"], marker="o", color=COLORS[name], label=name)
        ax.fill_between(x, w["accuracy_lo"], w["accuracy_hi"], color=COLORS[name], alpha=0.12)
    ax.axhline(0.5, color="#999", linestyle=":", linewidth=1)
    ax.set_ylabel("direction accuracy")
    ax.set_xlabel("week (Monday to Sunday, UTC)")
    return _finish(fig, ax, report)


def pnl_svg(report: ReplayReport) -> str:
    """Cumulative pnl % per series at the end of each week, from 0 where the requests begin."""
    weekly = report.comparison.weekly
    fig, ax = _figure()
    for name in SERIES:
        w = weekly[weekly["series"] == name]
        if w.empty:
            continue
        x = _naive([w["week"].iloc[0], *(w["week"] + pd.Timedelta(days=7))])
        ax.plot(x, [0.0, *w["cum_pnl"]], marker=".", color=COLORS[name], label=name)
    ax.axhline(0.0, color="#999", linestyle=":", linewidth=1)
    ax.set_ylabel("cumulative pnl % (sum over signals)")
    ax.set_xlabel("end of week (UTC)")
    return _finish(fig, ax, report)


def timeline_svg(report: ReplayReport) -> str:
    """Which version was Production when (one row each), and the A/B tests as labelled spans."""
    spans, tests = report.timeline.production, report.ab_tests
    versions = list(dict.fromkeys(spans["version"]))
    rows = [*versions, "A/B tests"]
    fig, ax = _figure(height=0.45 * len(rows) + 1.4)
    for _, span in spans.iterrows():  # one per promotion: a handful
        start, end = _num(_naive([span["start"], span["end"]]))
        row = versions.index(span["version"])
        ax.broken_barh([(start, end - start)], (row - 0.35, 0.7), color=COLORS["continuous"])
    for _, test in tests.iterrows():
        ends_at = test["completed_at"] if pd.notna(test["completed_at"]) else report.end
        start, end = _num(_naive([test["created_at"], ends_at]))
        ax.broken_barh([(start, end - start)], (len(versions) - 0.35, 0.7), color="#c5b0d5")
        ax.text(start, len(versions), f" {_decision(test)}", fontsize=7, va="center")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_ylim(len(rows) - 0.4, -0.6)  # first version on top
    first = spans["start"].min() if len(spans) else report.start
    ax.set_xlim(*_num(_naive([min(pd.Timestamp(first), pd.Timestamp(report.start)), report.end])))
    return _finish(fig, ax, report, legend=False)


def _figure(height: float = 3.4) -> tuple[Figure, Axes]:
    # A bare Figure draws without pyplot, so no backend or global state is chosen or changed.
    from matplotlib.figure import Figure  # noqa: PLC0415  (matplotlib: only when plotting)

    fig = Figure(figsize=(10, height), layout="constrained")
    return fig, fig.add_subplot()


def _finish(fig: Figure, ax: Axes, report: ReplayReport, legend: bool = True) -> str:
    """Mark the change, format dates, and return the figure as an inline <svg> element."""
    import matplotlib  # noqa: PLC0415  (matplotlib: only when plotting)
    from matplotlib import dates  # noqa: PLC0415  (matplotlib: only when plotting)

    if report.change_at is not None:
        at = _naive([report.change_at])[0]
        ax.axvline(at, color="#d62728", linestyle="--", linewidth=1)
        ax.annotate(
            "change", (at, 1.0), xycoords=("data", "axes fraction"), color="#d62728", fontsize=8
        )
    locator = dates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(dates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    buffer = io.StringIO()
    # A fixed hash salt and no date make the SVG the same bytes for the same report; text stays
    # text (smaller, searchable).
    with matplotlib.rc_context({"svg.hashsalt": "aifx-replay", "svg.fonttype": "none"}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def mlflow_metrics(report: ReplayReport) -> dict[str, float]:
    """`{series}_{accuracy,win_rate,mean_pnl,cum_pnl}_{overall,before,after}` and the verdict's
    `continuous_minus_frozen_*` with their CI bounds (finite values only)."""
    out: dict[str, float] = {}
    for period, series in report.comparison.periods.items():
        suffix = SUFFIX[period]
        for name, m in series.items():
            for key in ("accuracy", "win_rate", "mean_pnl", "cum_pnl"):
                out[f"{name}_{key}_{suffix}"] = float(getattr(m, key))
            out[f"requests_{suffix}"] = float(m.n)
        block = report.verdict.get(period, {})
        for key, ci in (("accuracy", "ci"), ("mean_pnl", "pnl_ci")):
            name = f"continuous_minus_frozen_{key}"
            if name in block:
                out[f"{name}_{suffix}"] = float(block[name])
                out[f"{name}_{suffix}_lo"], out[f"{name}_{suffix}_hi"] = map(float, block[ci])
    for period, ops in report.operations.items():
        for key in ("stale_share", "no_edge_share", "max_days_since_promotion", "promotions",
                    "refreshes", "tests_started", "staging_at_end"):  # fmt: skip
            out[f"{key}_{SUFFIX[period]}"] = float(ops.get(key, np.nan))
    return {k: v for k, v in out.items() if np.isfinite(v)}


def mlflow_params(report: ReplayReport) -> dict[str, str]:
    """What the report covers, as MLflow params (strings)."""
    return {
        "title": report.title,
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "pairs": json.dumps(list(report.pairs)),
        "timeframes": json.dumps(list(report.timeframes)),
        "model_type": report.model_type,
        "change_at": report.change_at.isoformat() if report.change_at else "none",
        "label_threshold": str(report.label_threshold),
        "buy_threshold": str(report.policy["buy_threshold"]),
        "sell_threshold": str(report.policy["sell_threshold"]),
        "thresholds": "global override" if report.policy.get("override") else "per version",
        "frozen_version": str(report.comparison.coverage.get("frozen_version")),
    }


def _summary_table(report: ReplayReport) -> str:
    rows = []
    for period, series in report.comparison.periods.items():
        for name, m in series.items():
            rows.append({"period": period.replace("_", " "), "series": name, **_metric_cells(m)})
    return _table(pd.DataFrame(rows))


def _metric_cells(m: SeriesMetrics) -> dict[str, Any]:
    return {
        "requests": m.n,
        "accuracy [95% CI]": _rate(m.accuracy, m.accuracy_ci),
        "win rate [95% CI]": _rate(m.win_rate, m.win_rate_ci),
        "wins / losses / breakevens": f"{m.wins} / {m.losses} / {m.breakevens}",
        "mean pnl % [95% CI]": _signed(m.mean_pnl, m.mean_pnl_ci),
        "cumulative pnl %": f"{m.cum_pnl:+.3f}",
        "buy / sell / hold": " / ".join(str(m.signals[s]) for s in ("buy", "sell", "hold")),
    }


def _verdict_table(report: ReplayReport) -> str:
    rows = []
    for period, block in report.verdict.items():
        if not isinstance(block, dict):
            continue
        for other, diffs in block["versus"].items():
            acc, pnl = diffs["accuracy"], diffs["mean_pnl"]
            rows.append(
                {
                    "period": period.replace("_", " "),
                    "continuous minus": other,
                    "accuracy, points [95% CI]": _points(acc["estimate"], acc["ci"]),
                    "mean pnl % [95% CI]": _signed(pnl["estimate"], pnl["ci"]),
                    "requests / clusters": f"{block['requests']} / {block['clusters']}",
                }
            )
    return _table(pd.DataFrame(rows))


def _operations_table(report: ReplayReport) -> str:
    rows = [
        {
            "period": period.replace("_", " "),
            "requests answered stale": f"{ops['stale_requests']} ({percent(ops['stale_share'])})",
            "answered by a version with no edge (holds)": (
                f"{ops.get('no_edge_requests', 0)} ({percent(ops.get('no_edge_share', np.nan))})"
            ),
            "days since a promotion: most / at the end": (
                f"{ops['max_days_since_promotion']:.1f} / {ops['days_since_promotion_at_end']:.1f}"
            ),
            "promotions (refreshes)": f"{ops['promotions']} ({ops['refreshes']})",
            "tests started": ops["tests_started"],
            "tests ended: challenger won / Production kept / no winner": (
                f"{ops['tests_challenger_won']} / {ops['tests_production_kept']} / "
                f"{ops['tests_without_winner']}"
            ),
            "versions in Staging at the end": ops["staging_at_end"],
        }
        for period, ops in report.operations.items()
    ]
    return _table(pd.DataFrame(rows))


def _table(frame: pd.DataFrame, links: dict[str, Callable[[Any], str]] | None = None) -> str:
    """An HTML table of a frame, every value escaped; `links` renders chosen columns."""
    if frame.empty:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(str(c).replace('_', ' '))}</th>" for c in frame.columns)
    body = []
    for record in frame.itertuples(index=False):  # tables of versions and tests: a few rows
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            number = isinstance(value, int | float | np.number) and not isinstance(value, bool)
            text = (links or {}).get(column, _cell)(value)
            cells.append(f'<td class="n">{text}</td>' if number else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp):
        return _e(value.strftime("%Y-%m-%d %H:%M"))
    if isinstance(value, float | np.floating):
        return f"{value:.4g}"
    return _e(str(value))


def _file_link(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    path = Path(value)
    target = path.as_uri() if path.is_absolute() else value
    return f'<a href="{_e(target)}">{_e(path.name)}</a>'


def _decision(test: pd.Series) -> str:
    if test["status"] == "active":
        return f"{test['test_name']}: running"
    if test["winner"]:
        return f"{test['test_name']}: {test['winner']} won"
    return f"{test['test_name']}: {test['status']}, no winner"


def _scope(report: ReplayReport) -> str:
    change = f"; change at {utc_text(report.change_at)}" if report.change_at else ""
    return (
        f"{report.model_type} on {', '.join(report.pairs)} ({', '.join(report.timeframes)}), "
        f"requests at candle closes from {utc_text(report.start)} to {utc_text(report.end)}"
        f"{change}. "
        f"Signals: {_rule(report.policy)}; labels at ±{100 * report.label_threshold:.2f}%."
    )


def _rule(policy: dict[str, Any]) -> str:
    """How P(up) became signals (reports written before per-version thresholds: global)."""
    if "rule" in policy:
        return str(policy["rule"])
    return f"buy at P(up) ≥ {policy['buy_threshold']}, sell at ≤ {policy['sell_threshold']}"


def _coverage_text(coverage: dict[str, Any]) -> str:
    return (
        f"{coverage.get('candle_closes', 0)} candle closes in range; "
        f"{coverage.get('before_first_production', 0)} before the first promotion and "
        f"{coverage.get('no_window_or_outcome', 0)} without a full window or a known outcome "
        f"left out for every series. Majority baseline: always {coverage.get('majority_call')}. "
        "Baselines count a hold as a call of up for accuracy."
    )


def _num(values: Sequence[Any]) -> Any:
    """Datetimes as matplotlib's day numbers (bars take numbers, not datetimes)."""
    from matplotlib import dates  # noqa: PLC0415  (matplotlib: only when plotting)

    return dates.date2num(values)  # type: ignore[no-untyped-call]


def _naive(values: Sequence[Any] | pd.Series) -> list[Any]:
    """Naive UTC datetimes for matplotlib (tz-aware ones would be drawn in local time)."""
    index = pd.DatetimeIndex(pd.to_datetime(list(values), utc=True))
    return list(index.tz_localize(None).to_pydatetime())


def _rate(value: float, ci: Sequence[float]) -> str:
    return f"{percent(value)} [{percent(ci[0])}, {percent(ci[1])}]"


def _points(estimate: float, ci: Sequence[float]) -> str:
    return f"{100 * estimate:+.1f} [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def _signed(estimate: float, ci: Sequence[float]) -> str:
    return f"{estimate:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
