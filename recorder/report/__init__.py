"""The morning report: one self-contained HTML page that says how a recorded day went.

Owns the aggregation of one trading date (:mod:`recorder.report.data`: DuckDB ``GROUP BY``
minute, so Python only sees small results), its plots (:mod:`recorder.report.plots`:
matplotlib, Agg backend, inline SVG) and the page (:mod:`recorder.report.page`).

It must not query anything but the public store API (:class:`recorder.Store`: ``sql``,
``named``, ``inventory``), must not write anywhere but the page it is given, and must not
reference anything on the network (no scripts, stylesheets, fonts or images by URL).
"""

from __future__ import annotations

from recorder.report.page import build_report, write_report

__all__ = ["build_report", "write_report"]
