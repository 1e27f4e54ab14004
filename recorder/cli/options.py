"""Pure helpers that turn command-line spellings into values: durations and clock times."""

from __future__ import annotations

import datetime as dt
import re

from recorder.errors import ConfigError
from recorder.kiwoom.time import KST

_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str) -> float:
    """``"30s"``, ``"10m"``, ``"2h"``, ``"1h30m"`` or plain seconds → seconds."""
    text = text.strip().lower()
    try:
        return _positive(float(text), text)
    except ValueError:
        pass
    m = _DURATION_RE.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ConfigError(f"cannot read duration {text!r}: use e.g. 30s, 10m, 2h or 1h30m")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return _positive(h * 3600 + mi * 60 + s, text)


def _positive(seconds: float, text: str) -> float:
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return seconds


def seconds_until(hhmm: str, now: dt.datetime) -> float:
    """Seconds from ``now`` until the next ``HH:MM`` KST today; an hour already past is an error."""
    try:
        t = dt.time.fromisoformat(hhmm)
    except ValueError as exc:
        raise ConfigError(f"cannot read --until {hhmm!r}: use HH:MM (KST)") from exc
    now_kst = now.astimezone(KST)
    end = dt.datetime.combine(now_kst.date(), t, tzinfo=KST)
    if end <= now_kst:
        raise ConfigError(f"--until {hhmm} KST has already passed (it is {now_kst:%H:%M} KST)")
    return (end - now_kst).total_seconds()
