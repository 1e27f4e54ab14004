"""The report's plots: matplotlib figures rendered to inline SVG text.

The Agg backend is set explicitly (a nightly job has no display), and figures are built
with :class:`matplotlib.figure.Figure`, never pyplot, so no global figure state is kept.
Every plot is drawn even when its data is empty (with a line saying so), so the page
always has the same sections.
"""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from recorder.report.data import ReportData

WIDTH = 12.0  # inches; the page scales the SVG to its column
VENUE_COLORS = {"KRX": "#1f77b4", "NXT": "#ff7f0e", "SOR": "#2ca02c"}
KIND_COLORS = {
    "disconnect": "#d62728",
    "continuity": "#9467bd",
    "login_failed": "#8c564b",
    "reg_rejected": "#e377c2",
    "stale": "#7f7f7f",
    "kicked": "#bcbd22",
    "restart": "#17becf",
}


def render_all(data: ReportData) -> dict[str, str]:
    """Every plot of the page: section key → SVG text (``<svg …>…</svg>``)."""
    plots: dict[str, Callable[[ReportData], Figure]] = {
        "coverage": coverage,
        "gaps": gaps,
        "entries": entries,
        "latency": latency,
        "rejects": rejects,
        "top_value": top_value,
    }
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        return {key: to_svg(draw(data), key) for key, draw in plots.items()}


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as an inline ``<svg>`` element: no XML prolog, no DOCTYPE (which names a URL).

    The SVGs of one page share one id space, so every id (and every reference to one) is
    prefixed with ``salt``; the hashed ids of clip paths and markers are salted with it too,
    which keeps the page the same from one build to the next.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    for old in (' id="', "url(#", 'href="#'):
        text = text.replace(old, f"{old}{salt}-")
    return text


# --------------------------------------------------------------------------- the plots


def coverage(data: ReportData) -> Figure:
    """Rows per minute of the most active symbols (heatmap), under a line of active symbols."""
    lo, hi = _span(data)
    minutes = np.arange(lo, hi + 1)
    symbols = data.coverage_ranked
    grid = np.zeros((len(symbols), len(minutes)))
    row = {s: i for i, s in enumerate(symbols)}
    for r in data.coverage:
        if r["symbol"] in row and lo <= r["m"] <= hi:
            grid[row[r["symbol"]], r["m"] - lo] = r["n"]
    height = 1.6 + 0.13 * max(len(symbols), 5)
    fig = Figure(figsize=(WIDTH, height))
    top, heat = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.2, height - 1.2]})
    active = {r["m"]: r["symbols"] for r in data.active}
    top.step(minutes, [active.get(int(m), 0) for m in minutes], where="mid", color="#333")
    top.set_ylabel("symbols\nwith rows")
    top.set_ylim(0, max([*active.values(), 1]) * 1.15)
    top.yaxis.set_major_locator(MaxNLocator(3, integer=True))
    if not symbols:
        _empty(heat, "no trades or order books")
        return fig
    shown = np.ma.masked_equal(np.log10(np.maximum(grid, 1e-9)), -9)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#f4d4d4")
    image = heat.imshow(
        shown,
        aspect="auto",
        interpolation="nearest",
        cmap=cmap,
        extent=(lo - 0.5, hi + 0.5, len(symbols) - 0.5, -0.5),
    )
    heat.set_yticks(range(len(symbols)), symbols, fontsize=6 if len(symbols) > 30 else 8)
    bar = fig.colorbar(image, ax=heat, pad=0.01, fraction=0.03)
    bar.set_label("rows / minute")
    bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{10**v:,.0f}"))
    _time_axis(heat, lo, hi)
    return fig


def gaps(data: ReportData) -> Figure:
    """One lane per gap kind; each gap a bar from its start to its end (open gaps hatched)."""
    lo, hi = _span(data)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in data.gaps:
        by_kind[g["kind"]].append(g)
    kinds = sorted(by_kind)
    fig = Figure(figsize=(WIDTH, 1.0 + 0.45 * max(len(kinds), 1)))
    ax = fig.subplots()
    for i, kind in enumerate(kinds):
        for open_ in (False, True):
            spans = [
                (g["start_m"], max(g["end_m"] - g["start_m"], 0.4))
                for g in by_kind[kind]
                if g["open"] is open_
            ]
            if spans:
                ax.broken_barh(
                    spans,
                    (i - 0.35, 0.7),
                    color=KIND_COLORS.get(kind, "#555"),
                    alpha=0.85,
                    hatch="//" if open_ else None,
                )
    ax.set_yticks(range(len(kinds)), [f"{k} ({len(by_kind[k])})" for k in kinds])
    ax.set_ylim(-0.6, max(len(kinds), 1) - 0.4)
    if not kinds:
        _empty(ax, "no gaps")
    _time_axis(ax, lo, hi)
    return fig


def entries(data: ReportData) -> Figure:
    """Entries per minute, one line per real-time type (0B trades, 0D books) and venue."""
    lo, hi = _span(data)
    fig = Figure(figsize=(WIDTH, 3.0))
    ax = fig.subplots()
    series: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for r in data.entries:
        series[(r["type"], r["venue"])][r["m"]] = r["n"]
    minutes = np.arange(lo, hi + 1)
    for (type_, venue), counts in sorted(series.items()):
        ax.step(
            minutes,
            [counts.get(int(m), 0) for m in minutes],
            where="mid",
            label=f"{type_} {venue}",
            color=VENUE_COLORS.get(venue, "#555"),
            linestyle="-" if type_ == "0B" else "--",
        )
    if series:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=len(series), fontsize=8, frameon=False)
    else:
        _empty(ax, "no entries")
    ax.set_ylabel("entries / minute")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    _time_axis(ax, lo, hi)
    return fig


def latency(data: ReportData) -> Figure:
    """recv_ts − ts per venue and minute: the median line in a band from p90 to p99."""
    lo, hi = _span(data)
    fig = Figure(figsize=(WIDTH, 3.0))
    ax = fig.subplots()
    by_venue: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in data.latency:
        by_venue[r["venue"]].append(r)
    for venue, rows in sorted(by_venue.items()):
        color = VENUE_COLORS.get(venue, "#555")
        m = [r["m"] for r in rows]
        ax.fill_between(
            m, [r["p90"] for r in rows], [r["p99"] for r in rows], color=color, alpha=0.2, step="mid"
        )
        ax.step(m, [r["p50"] for r in rows], where="mid", color=color, label=f"{venue} median (band p90–p99)")
    if by_venue:
        ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=len(by_venue), fontsize=8, frameon=False)
    else:
        _empty(ax, "no entries")
    ax.set_ylabel("recv_ts − ts (ms)")
    _time_axis(ax, lo, hi)
    return fig


def rejects(data: ReportData) -> Figure:
    """Rejected frames or entries per reason."""
    rows = list(reversed(data.rejects))
    fig = Figure(figsize=(WIDTH, 0.9 + 0.3 * max(len(rows), 1)))
    ax = fig.subplots()
    if not rows:
        _empty(ax, "no rejects")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    ax.barh(range(len(rows)), [r["n"] for r in rows], color="#d62728")
    ax.set_yticks(range(len(rows)), [_short(r["reason"]) for r in rows])
    ax.set_xlabel("rows")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def top_value(data: ReportData) -> Figure:
    """Traded value (Σ price × volume) of the top symbols, stacked by venue."""
    value: dict[str, dict[str, float]] = defaultdict(dict)
    for r in data.top_value:
        value[r["symbol"]][r["venue"]] = r["value"]
    symbols = sorted(value, key=lambda s: sum(value[s].values()))
    fig = Figure(figsize=(WIDTH, 0.9 + 0.28 * max(len(symbols), 1)))
    ax = fig.subplots()
    if not symbols:
        _empty(ax, "no trades")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    scale, unit = _krw_scale(max(sum(v.values()) for v in value.values()))
    left = np.zeros(len(symbols))
    for venue in sorted({v for per in value.values() for v in per}):
        widths = np.array([value[s].get(venue, 0.0) / scale for s in symbols])
        ax.barh(range(len(symbols)), widths, left=left, label=venue, color=VENUE_COLORS.get(venue, "#555"))
        left += widths
    ax.set_yticks(range(len(symbols)), symbols)  # positions, not categories: codes look like numbers
    ax.set_xlabel(f"traded value ({unit})")
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1), ncols=3, fontsize=8, frameon=False)
    return fig


# --------------------------------------------------------------------------- helpers


def _span(data: ReportData) -> tuple[int, int]:
    """The minutes the time axes cover: every row and every gap of the day."""
    h = data.headline
    points = [m for m in (h.first_minute, h.last_minute) if m is not None]
    points += [g["start_m"] for g in data.gaps] + [g["end_m"] for g in data.gaps]
    if not points:
        return 540, 930  # the regular KRX session, for a day with rejects only
    lo = math.floor(min(points))
    return lo, max(math.ceil(max(points)), lo + 1)  # two minutes at least: a step line needs two points


def _time_axis(ax: Axes, lo: int, hi: int) -> None:
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(12, integer=True, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v) // 60 % 24:02d}:{int(v) % 60:02d}"))
    ax.set_xlabel("KST")


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#777")


def _short(reason: str, width: int = 60) -> str:
    return reason if len(reason) <= width else reason[: width - 1] + "…"


def _krw_scale(biggest: float) -> tuple[float, str]:
    for scale, unit in ((1e12, "KRW tn"), (1e9, "KRW bn"), (1e6, "KRW mn")):
        if biggest >= scale:
            return scale, unit
    return 1.0, "KRW"
