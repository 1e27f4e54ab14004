"""``recorder report``: the morning report of one recorded day, as one HTML page."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from recorder.cli.common import EXISTING_DATA_DIR, OutputFile, check_date, handle_errors


@click.command()
@click.option("--date", "date", required=True, help="The KST trading date to report (YYYY-MM-DD).")
@EXISTING_DATA_DIR
@click.option("--out", type=OutputFile(), required=True, help="The HTML page to write (replaced whole).")
@handle_errors
def report(date: str, data_dir: Path, out: Path) -> None:
    """Write a self-contained HTML report of one recorded day: headline numbers, coverage
    per symbol, gaps, entries per minute, latency, rejects, top symbols by traded value.

    Nothing on the page is fetched from the network. A date with nothing recorded is an
    error (exit 2).

    \b
    recorder report --date 2026-07-20 --out report-2026-07-20.html
    """
    from recorder import Store
    from recorder.report import write_report

    check_date(date)
    write_report(Store(data_dir), dt.date.fromisoformat(date), out)
    click.echo(f"wrote {out}")
