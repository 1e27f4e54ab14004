"""Time as Kiwoom writes it: KST wall-clock strings ⇄ integer epoch nanoseconds (pure).

Internally every instant is an ``int`` of nanoseconds since the epoch (``*_ns``); KST
strings exist only at the edges (protocol notes §4.3: ``HHMMSS`` exchange times,
``YYYYMMDDHHMMSS`` token expiries). Korea has no daylight saving time, so KST is a fixed
offset of +9 h and no time-zone database is needed for the arithmetic.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

NS = 1_000_000_000
DAY_NS = 86_400 * NS
KST_OFFSET_NS = 9 * 3600 * NS
KST = dt.timezone(dt.timedelta(hours=9), "KST")
#: The IANA name the stored timestamps carry, so readers show KST wall-clock times.
TZ_NAME = "Asia/Seoul"

_EPOCH_DATE = dt.date(1970, 1, 1)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DAY_CACHE: dict[int, str] = {}


def kst_date(ts_ns: int) -> str:
    """The KST calendar date of an epoch-nanosecond instant, as ``YYYY-MM-DD``."""
    kst_day = (ts_ns + KST_OFFSET_NS) // DAY_NS
    s = _DAY_CACHE.get(kst_day)
    if s is None:
        s = (_EPOCH_DATE + dt.timedelta(days=kst_day)).isoformat()
        _DAY_CACHE[kst_day] = s
    return s


def trading_day(date: str | dt.date) -> int:
    """Days since the epoch of a KST date, the form ``Decoder(trading_day=)`` takes."""
    d = dt.date.fromisoformat(date) if isinstance(date, str) else date
    return (d - _EPOCH_DATE).days


def day_start_ns(date: str | dt.date) -> int:
    """Epoch ns of 00:00 KST on ``date``."""
    return trading_day(date) * DAY_NS - KST_OFFSET_NS


def parse_time(value: Any, recv_ts_ns: int, day: int | None = None) -> int | None:
    """HHMMSS (or YYYYMMDDHHMMSS, §4.3) in KST → epoch ns; None if it does not parse.

    With no trading ``day`` given, the day is the KST date of the receive time, moved by
    one when that puts the exchange time more than 12 h away (a tick stamped 23:59:59 and
    received at 00:00:01 belongs to the day before).
    """
    if not isinstance(value, str) or not value.isascii() or not value.isdigit():
        return None
    if len(value) == 14:
        return parse_kst_stamp(value)
    if len(value) != 6:
        return None
    hh, mm, ss = int(value[:2]), int(value[2:4]), int(value[4:])
    if hh > 23 or mm > 59 or ss > 59:
        return None
    secs = (hh * 3600 + mm * 60 + ss) * NS - KST_OFFSET_NS
    if day is not None:
        return day * DAY_NS + secs
    ts = (recv_ts_ns + KST_OFFSET_NS) // DAY_NS * DAY_NS + secs
    if ts - recv_ts_ns > DAY_NS // 2:
        ts -= DAY_NS
    elif recv_ts_ns - ts > DAY_NS // 2:
        ts += DAY_NS
    return ts


def parse_kst_stamp(text: Any) -> int | None:
    """``YYYYMMDDHHMMSS`` in KST (token expiries, §2.1; tick-chart times) → epoch ns, or None."""
    if not isinstance(text, str) or len(text) != 14 or not (text.isascii() and text.isdigit()):
        return None
    mo, d, h, mi, s = (int(text[i : i + 2]) for i in range(4, 14, 2))
    try:
        when = dt.datetime(int(text[:4]), mo, d, h, mi, s, tzinfo=KST)
    except ValueError:
        return None
    return (when - _EPOCH) // dt.timedelta(seconds=1) * NS


def format_kst_stamp(ts_ns: int) -> str:
    """Epoch ns → ``YYYYMMDDHHMMSS`` in KST (the inverse of :func:`parse_kst_stamp`)."""
    return (_EPOCH + dt.timedelta(seconds=ts_ns // NS)).astimezone(KST).strftime("%Y%m%d%H%M%S")


def hhmmss_kst(ts_ns: int) -> str:
    """Epoch ns → ``HHMMSS`` in KST, the time format of FIDs 20 and 21 (§4.3)."""
    secs = (ts_ns + KST_OFFSET_NS) // NS % 86400
    return f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}"


def format_kst(ts_ns: int) -> str:
    """Epoch ns → ``"YYYY-MM-DD HH:MM:SS KST"``, for logs and messages."""
    when = _EPOCH + dt.timedelta(microseconds=ts_ns // 1000)
    return when.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S KST")
