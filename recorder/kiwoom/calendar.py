"""The trading calendar: which KST days trade, and each venue's sessions on them (pure).

Holidays, the year-end closure and the late open of the first trading day of the year come
from ``exchange_calendars``' XKRX calendar, which computes them by rule (lunar holidays from
its own tables); it is imported inside the functions that need it, so importing this module
stays cheap. Session hours are data (:data:`DEFAULT_HOURS`, protocol notes §6), a parameter
of :func:`trading_day`: the planned KRX extended hours (§6.1) are unknown, so a caller who
learns them passes a table with more sessions (:meth:`VenueHours.with_sessions`).

XKRX stops shifting the college entrance exam (CSAT) day after 2020; :data:`LATE_OPENS` is
our own small table of those days, also a parameter. On a CSAT day every session of both
venues moves one hour later (KRX regular 10:00–16:30), except that NXT's after-market still
ends at 20:00 (an assumption: NXT's notices for the exam day were not checked). On the first
trading day of the year only the sessions up to and including the open move (KRX regular
10:00–15:30, as XKRX says); the close and what follows keep their hours.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from recorder.errors import ConfigError
from recorder.kiwoom.time import KST, kst_date

if TYPE_CHECKING:  # pragma: no cover
    import exchange_calendars

#: When a late open moves a session: ``open`` always (before and at the open), ``day``
#: its start always and its end with the close, ``close`` only with the close.
Phase = Literal["open", "day", "close"]


@dataclass(frozen=True)
class Session:
    """One session of a venue, in KST wall-clock times of the day."""

    name: str
    start: dt.time
    end: dt.time
    phase: Phase = "day"


@dataclass(frozen=True)
class VenueHours:
    """A venue's sessions on a normal trading day (protocol notes §6).

    ``day_end`` caps every session after a late open shifts it (NXT stops at 20:00).
    """

    venue: str
    sessions: tuple[Session, ...]
    day_end: dt.time | None = None

    def with_sessions(self, *sessions: Session) -> VenueHours:
        """These hours plus ``sessions`` (e.g. the planned KRX extended hours once known)."""
        return replace(self, sessions=tuple(sorted((*self.sessions, *sessions), key=lambda s: s.start)))


def _t(text: str) -> dt.time:
    return dt.time.fromisoformat(text)


KRX_HOURS = VenueHours(
    "KRX",
    (
        Session("pre-market closing price", _t("08:30"), _t("08:40"), "open"),
        Session("opening auction", _t("08:30"), _t("09:00"), "open"),
        Session("regular", _t("09:00"), _t("15:30"), "day"),
        Session("closing auction", _t("15:20"), _t("15:30"), "close"),
        Session("after-hours closing price", _t("15:40"), _t("16:00"), "close"),
        Session("single-price", _t("16:00"), _t("18:00"), "close"),
    ),
)
NXT_HOURS = VenueHours(
    "NXT",
    (
        Session("pre-market", _t("08:00"), _t("08:50"), "open"),
        Session("main", _t("09:00:30"), _t("15:20"), "day"),
        Session("after-market order acceptance", _t("15:30"), _t("15:40"), "close"),
        Session("after-market", _t("15:40"), _t("20:00"), "close"),
    ),
    day_end=_t("20:00"),
)
#: Venue name → hours. KRX's planned extended hours (§6.1: 07:00–08:00, 16:00–20:00) are
#: not in it: they had not started when measured.
DEFAULT_HOURS: Mapping[str, VenueHours] = {"KRX": KRX_HOURS, "NXT": NXT_HOURS}
#: The years XKRX computes holidays for (its precomputed tables span 1956-2050).
YEARS = range(1957, 2050)
#: XKRX's regular open and close; a day whose open or close differs is a late open.
REGULAR_OPEN = _t("09:00")
REGULAR_CLOSE = _t("15:30")


@dataclass(frozen=True)
class LateOpen:
    """A day whose sessions start ``delay`` later; with ``shifts_close`` they all move."""

    reason: str
    delay: dt.timedelta = dt.timedelta(hours=1)
    shifts_close: bool = True


_CSAT = "college entrance exam (CSAT) day"
#: CSAT days after XKRX's own list ends (2020). 2021–2026: announced dates; 2027-11-18 is
#: a guess (the third Thursday of November, as usual): correct it once announced.
LATE_OPENS: Mapping[dt.date, LateOpen] = {
    dt.date(2021, 11, 18): LateOpen(_CSAT),
    dt.date(2022, 11, 17): LateOpen(_CSAT),
    dt.date(2023, 11, 16): LateOpen(_CSAT),
    dt.date(2024, 11, 14): LateOpen(_CSAT),
    dt.date(2025, 11, 13): LateOpen(_CSAT),
    dt.date(2026, 11, 19): LateOpen(_CSAT),
    dt.date(2027, 11, 18): LateOpen(_CSAT + " (date assumed)"),
}


@dataclass(frozen=True)
class Interval:
    """A session on a given day: aware KST datetimes."""

    name: str
    start: dt.datetime
    end: dt.datetime


@dataclass(frozen=True)
class TradingDay:
    """A day that trades: each venue's sessions, and why its hours differ if they do."""

    date: dt.date
    venues: Mapping[str, tuple[Interval, ...]]
    note: str | None = None  # e.g. "late open: first trading day of the year"

    def close(self, venues: tuple[str, ...] | None = None) -> dt.datetime:
        """The end of the last session of ``venues`` (default: every venue)."""
        names = venues if venues is not None else tuple(self.venues)
        return max(iv.end for v in names for iv in self.venues[v])


@dataclass(frozen=True)
class Closed:
    """A day without trading, and why (a holiday's name when the calendar knows it)."""

    date: dt.date
    reason: str


def trading_day(
    date: dt.date,
    *,
    hours: Mapping[str, VenueHours] = DEFAULT_HOURS,
    late_opens: Mapping[dt.date, LateOpen] = LATE_OPENS,
) -> TradingDay | Closed:
    """The sessions of every venue in ``hours`` on the KST ``date``, or why it is closed.

    NXT trades on KRX's trading days (it follows the KRX calendar). A late open comes from
    XKRX when it shifts the day (the first trading day of the year), else from ``late_opens``.

    Raises:
        ConfigError: ``date`` is outside :data:`YEARS`.
    """
    if date.year not in YEARS:
        raise ConfigError(f"{date}: the trading calendar covers {YEARS[0]}-{YEARS[-1]}")
    if date.weekday() >= 5:
        return Closed(date, date.strftime("%A"))
    cal = _xkrx(date.year, date.month)
    import pandas as pd  # exchange_calendars' own dependency

    label = pd.Timestamp(date)
    if not cal.is_session(label):
        return Closed(date, _holiday_name(cal, date))
    late = _xkrx_late_open(cal, label) or late_opens.get(date)
    venues = {name: _intervals(date, vh, late) for name, vh in hours.items()}
    return TradingDay(date, venues, f"late open: {late.reason}" if late else None)


def kst_today(now_ns: int) -> dt.date:
    """The KST date of an epoch-nanosecond instant, whatever the machine's time zone."""
    return dt.date.fromisoformat(kst_date(now_ns))


@functools.cache
def _xkrx(year: int, month: int) -> exchange_calendars.ExchangeCalendar:
    # One calendar per month, with a month either side so that the month's first and last
    # days are inside its bounds: XKRX's default range ends a year after today, a calendar
    # over 14 months took 2.3 s to build and one over 3 months takes 1 s (a capture looks
    # up one day, at its start).
    import exchange_calendars as xc

    first = dt.date(year, month, 1)
    start = (first - dt.timedelta(days=1)).replace(day=1)
    end = (first + dt.timedelta(days=62)).replace(day=1) - dt.timedelta(days=1)
    return xc.get_calendar("XKRX", start=start.isoformat(), end=end.isoformat())


def _holiday_name(cal: exchange_calendars.ExchangeCalendar, date: dt.date) -> str:
    # Over the whole year: the lunar holidays' rules do not answer a one-day query.
    names = cal.regular_holidays.holidays(f"{date.year}-01-01", f"{date.year}-12-31", return_name=True)
    found = [str(name) for when, name in names.items() if when.date() == date]
    return " / ".join(found) if found else "exchange holiday"


def _xkrx_late_open(cal: exchange_calendars.ExchangeCalendar, label: object) -> LateOpen | None:
    opens = cal.session_open(label).tz_convert("Asia/Seoul").time()
    closes = cal.session_close(label).tz_convert("Asia/Seoul").time()
    delay = _minus(opens, REGULAR_OPEN)
    if not delay:
        return None
    shifts_close = closes != REGULAR_CLOSE
    reason = _CSAT if shifts_close else "first trading day of the year"
    return LateOpen(reason, delay, shifts_close=shifts_close)


def _minus(a: dt.time, b: dt.time) -> dt.timedelta:
    day = dt.date(2000, 1, 1)
    return dt.datetime.combine(day, a) - dt.datetime.combine(day, b)


def _intervals(date: dt.date, vh: VenueHours, late: LateOpen | None) -> tuple[Interval, ...]:
    out = []
    cap = dt.datetime.combine(date, vh.day_end, tzinfo=KST) if vh.day_end else None
    for s in vh.sessions:
        start = dt.datetime.combine(date, s.start, tzinfo=KST)
        end = dt.datetime.combine(date, s.end, tzinfo=KST)
        if late is not None:
            start += late.delay if s.phase != "close" or late.shifts_close else dt.timedelta()
            end += late.delay if s.phase == "open" or late.shifts_close else dt.timedelta()
        if cap is not None:
            start, end = min(start, cap), min(end, cap)
        out.append(Interval(s.name, start, end))
    return tuple(out)


__all__ = [
    "DEFAULT_HOURS",
    "KRX_HOURS",
    "LATE_OPENS",
    "NXT_HOURS",
    "Closed",
    "Interval",
    "LateOpen",
    "Session",
    "TradingDay",
    "VenueHours",
    "kst_today",
    "trading_day",
]
