"""The report page: headline numbers and the plots in one self-contained HTML file.

Styles are inline and plots are inline SVG, so the file opens anywhere, offline, and can
be mailed as it is; nothing on the page is fetched from the network.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from pathlib import Path

from recorder import Store
from recorder.errors import ConfigError
from recorder.report.data import ReportData, load

#: The page's sections in order: plot key, title, what it shows.
SECTIONS = (
    (
        "coverage",
        "Coverage per symbol",
        "Rows (trades and order books) per symbol and minute; the line on top "
        "counts the symbols with at least one row in each minute. Pink: no row in the minute.",
    ),
    (
        "gaps",
        "Gaps by kind",
        "Each bar is a recorded gap, from its start to its end; hatched bars have no end "
        "and are drawn to the last row of the day.",
    ),
    (
        "entries",
        "Entries per minute",
        "Rows per minute by real-time type (0B trades, solid; 0D order books, dashed) and venue.",
    ),
    (
        "latency",
        "Latency",
        "recv_ts − ts per venue and minute: median line, band from p90 to p99. The exchange "
        "time has a resolution of one second, so up to 1,000 ms of this is truncation.",
    ),
    (
        "rejects",
        "Rejects by reason",
        "Frames or entries that did not decode, kept whole in the rejects table.",
    ),
    ("top_value", "Top symbols by traded value", "Σ price × volume of the trades, stacked by venue."),
)

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1200px;
color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:17px;margin:28px 0 4px}
p.what{color:#555;margin:0 0 8px;font-size:13px}p.note{color:#8a5a00;font-size:13px}
table.head{border-collapse:collapse;font-size:14px}
table.head td{padding:4px 14px 4px 0}table.head td.n{text-align:right;font-variant-numeric:tabular-nums;
font-weight:600}
.plot svg{width:100%;height:auto}
footer{color:#888;font-size:12px;margin-top:32px}
"""


def build_report(store: Store, date: dt.date) -> str:
    """The HTML page for ``date`` of ``store``.

    Raises:
        ConfigError: nothing is recorded on ``date``.
        queries.QueryError, StoreError: the store could not be read.
    """
    from recorder.report.plots import render_all

    data = load(store, date)
    return render_page(data, render_all(data), store.data_dir)


def write_report(store: Store, date: dt.date, out: str | os.PathLike[str]) -> str:
    """Build the page for ``date`` and write it to ``out`` (replaced whole); returns the page.

    Raises:
        ConfigError: nothing recorded on ``date``, or ``out`` cannot be written.
    """
    page = build_report(store, date)
    path = Path(out)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return page


def render_page(data: ReportData, plots: dict[str, str], data_dir: object) -> str:
    """The page from aggregated data and rendered plots (section key → SVG)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Recorder report {data.date}</title><style>{_CSS}</style></head><body>",
        f"<h1>Recorder report — {data.date}</h1>",
        f'<p class="what">Store {e(str(data_dir))}; times are KST.</p>',
        _headline(data),
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in data.notes]
    for key, title, what in SECTIONS:
        parts.append(f'<section id="{key}"><h2>{e(title)}</h2><p class="what">{e(what)}</p>')
        parts.append(f'<div class="plot">{plots[key]}</div></section>')
    parts.append("<footer>recorder report</footer></body></html>")
    return "\n".join(parts)


def _headline(data: ReportData) -> str:
    h = data.headline
    span = "—"
    if h.first_minute is not None and h.last_minute is not None:
        span = f"{_hhmm(h.first_minute)}–{_hhmm(h.last_minute)}"
    cells = [
        ("trades rows", f"{h.rows['trades']:,}"),
        ("orderbook rows", f"{h.rows['orderbook']:,}"),
        ("gaps rows", f"{h.rows['gaps']:,}"),
        ("rejects rows", f"{h.rows['rejects']:,}"),
        ("symbols", f"{h.symbols:,}"),
        ("gaps (other than continuity)", f"{h.gaps:,}"),
        ("gap seconds", f"{h.gap_seconds:,.1f}"),
        ("trades healed (seconds)", f"{h.healed_gap_seconds:,.1f}"),
        ("trades unhealed (seconds)", f"{h.gap_seconds - h.healed_gap_seconds:,.1f}"),
        ("order books (no REST history)", "never healed"),
        ("rejects", f"{h.rejects:,}"),
        ("continuity breaks", f"{h.continuity_breaks:,}"),
        ("first–last row", span),
    ]
    rows = [
        f'<tr><td>{html.escape(k)}</td><td class="n" data-key="{html.escape(k)}">{v}</td></tr>'
        for k, v in cells
    ]
    half = (len(rows) + 1) // 2
    return (
        '<table class="head"><tr><td><table class="head">' + "".join(rows[:half]) + "</table></td>"
        '<td><table class="head">' + "".join(rows[half:]) + "</table></td></tr></table>"
    )


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
