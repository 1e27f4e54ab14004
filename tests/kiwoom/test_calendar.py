"""The trading calendar: XKRX holidays and late opens, our CSAT table, the session table."""

from __future__ import annotations

import datetime as dt

import pytest

from recorder.errors import ConfigError
from recorder.kiwoom.calendar import (
    DEFAULT_HOURS,
    KRX_HOURS,
    Closed,
    LateOpen,
    Session,
    TradingDay,
    kst_today,
    trading_day,
)
from recorder.kiwoom.time import KST


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def at(date: str, hhmm: str) -> dt.datetime:
    return dt.datetime.combine(day(date), dt.time.fromisoformat(hhmm), tzinfo=KST)


def sessions(td: TradingDay | Closed, venue: str) -> dict[str, tuple[str, str]]:
    assert isinstance(td, TradingDay), td
    return {s.name: (f"{s.start:%H:%M:%S}", f"{s.end:%H:%M:%S}") for s in td.venues[venue]}


@pytest.mark.parametrize(
    ("date", "reason"),
    [
        ("2026-12-25", "Christmas"),
        ("2027-01-01", "New Year's Day"),
        ("2026-12-31", "End of Year Holiday"),  # the year-end closure
        ("2026-09-25", "Chuseok (Korean Thanksgiving Day)"),
        ("2026-12-05", "Saturday"),
        ("2026-05-25", "exchange holiday"),  # XKRX lists it without a name (a substitute day)
    ],
)
def test_a_closed_day_says_why(date: str, reason: str) -> None:
    assert trading_day(day(date)) == Closed(day(date), reason)


def test_a_normal_day_has_the_hours_of_the_table() -> None:
    td = trading_day(day("2026-12-02"))
    assert isinstance(td, TradingDay) and td.note is None
    assert sessions(td, "KRX")["regular"] == ("09:00:00", "15:30:00")
    assert sessions(td, "KRX")["single-price"] == ("16:00:00", "18:00:00")
    assert sessions(td, "NXT") == {
        "pre-market": ("08:00:00", "08:50:00"),
        "main": ("09:00:30", "15:20:00"),
        "after-market order acceptance": ("15:30:00", "15:40:00"),
        "after-market": ("15:40:00", "20:00:00"),
    }
    assert td.close(("KRX",)) == at("2026-12-02", "18:00")
    assert td.close(("KRX", "NXT")) == td.close() == at("2026-12-02", "20:00")
    assert all(s.start.tzinfo is KST for v in td.venues.values() for s in v)


def test_the_csat_day_moves_every_session_an_hour_but_nxt_still_ends_at_20() -> None:
    # XKRX's own CSAT list stops in 2020: this one comes from our table.
    td = trading_day(day("2026-11-19"))
    assert isinstance(td, TradingDay) and td.note == "late open: college entrance exam (CSAT) day"
    krx = sessions(td, "KRX")
    assert krx["regular"] == ("10:00:00", "16:30:00")
    assert krx["opening auction"] == ("09:30:00", "10:00:00")
    assert krx["single-price"] == ("17:00:00", "19:00:00")
    assert sessions(td, "NXT")["main"] == ("10:00:30", "16:20:00")
    assert sessions(td, "NXT")["after-market"] == ("16:40:00", "20:00:00")


def test_the_first_trading_day_opens_an_hour_late_and_closes_as_usual() -> None:
    td = trading_day(day("2026-01-02"))  # from XKRX
    assert isinstance(td, TradingDay) and td.note == "late open: first trading day of the year"
    assert sessions(td, "KRX")["regular"] == ("10:00:00", "15:30:00")
    assert sessions(td, "KRX")["closing auction"] == ("15:20:00", "15:30:00")
    assert td.close(("KRX",)) == at("2026-01-02", "18:00")


def test_late_opens_and_hours_are_parameters() -> None:
    date = day("2026-12-02")
    late = {date: LateOpen("a drill", dt.timedelta(minutes=30), shifts_close=False)}
    extended = {"KRX": KRX_HOURS.with_sessions(Session("after-market", dt.time(16), dt.time(20), "close"))}
    td = trading_day(date, hours=extended, late_opens=late)
    assert isinstance(td, TradingDay) and td.note == "late open: a drill" and list(td.venues) == ["KRX"]
    assert sessions(td, "KRX")["regular"] == ("09:30:00", "15:30:00")
    assert td.close() == at("2026-12-02", "20:00")
    assert trading_day(date, late_opens={}) == trading_day(date, hours=DEFAULT_HOURS)


def test_a_year_outside_the_calendar_is_refused() -> None:
    with pytest.raises(ConfigError, match="covers"):
        trading_day(day("2100-01-04"))


def test_the_calendar_day_is_the_kst_date() -> None:
    # 2026-12-24 15:30 UTC is 2026-12-25 00:30 KST: Christmas, whatever the machine's zone.
    ns = int(dt.datetime(2026, 12, 24, 15, 30, tzinfo=dt.UTC).timestamp()) * 10**9
    assert trading_day(kst_today(ns)) == Closed(day("2026-12-25"), "Christmas")
