"""``recorder calendar``: the day's sessions of each venue, in KST."""

from __future__ import annotations

import datetime as dt
import time

import click

from recorder.cli.common import check_date, handle_errors
from recorder.kiwoom.calendar import Closed, TradingDay, kst_today, trading_day


@click.command()
@click.option("--date", "date", help="The KST day, YYYY-MM-DD. Default: today in KST.")
@handle_errors
def calendar(date: str | None) -> None:
    """Print the day's sessions per venue (KST), or why the market is closed."""
    if date:
        check_date(date)
    day = dt.date.fromisoformat(date) if date else kst_today(time.time_ns())
    click.echo("\n".join(describe_day(trading_day(day))))


def describe_day(day: TradingDay | Closed) -> list[str]:
    """The lines ``recorder calendar`` prints for ``day``."""
    if isinstance(day, Closed):
        return [f"{day.date} closed: {day.reason}"]
    head = f"{day.date} {day.date:%A}" + (f", {day.note}" if day.note else "")
    lines = [head]
    for venue, sessions in day.venues.items():
        lines += [f"{venue}  {_hm(s.start) + '-' + _hm(s.end):<17}  {s.name}" for s in sessions]
    return lines


def _hm(t: dt.datetime) -> str:
    return f"{t:%H:%M:%S}" if t.second else f"{t:%H:%M}"
