"""Pure helpers that turn command-line spellings into values: durations, endpoints, symbols."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recorder.kiwoom.decode import KST
from recorder.errors import ConfigError

# kiwoom-protocol.md §1.
ENDPOINTS = {
    "prod": ("https://api.kiwoom.com", "wss://api.kiwoom.com:10000/api/dostk/websocket"),
    "mock": ("https://mockapi.kiwoom.com", "wss://mockapi.kiwoom.com:10000/api/dostk/websocket"),
}

_DURATION_RE = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_ITEM_RE = re.compile(r"[0-9A-Z]{6}(?:_NX|_AL)?")


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


def parse_symbols(text: str) -> list[str]:
    """``"005930,000660,005930_NX"`` → items; a code is 6 characters, suffix ``_NX``/``_AL``."""
    items = [s.strip().upper() for s in text.split(",") if s.strip()]
    bad = [s for s in items if not _ITEM_RE.fullmatch(s)]
    if bad:
        raise ConfigError(
            f"not a Kiwoom stock item: {', '.join(bad[:5])} (expected e.g. 005930 or 005930_NX)"
        )
    return list(dict.fromkeys(items))


def read_symbols_file(path: Path) -> list[str]:
    """A file of items, one per line or comma-separated; ``#`` starts a comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read universe file {path}: {exc.strerror}") from exc
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return parse_symbols(",".join(lines))


@dataclass(frozen=True)
class Endpoints:
    rest_url: str
    ws_url: str


def resolve_endpoints(
    env_name: str, rest_url: str | None, ws_url: str | None, environ: Mapping[str, str] | None = None
) -> Endpoints:
    """Options beat ``KIWOOM_REST_URL``/``KIWOOM_WS_URL``, which beat ``--env``'s defaults."""
    environ = os.environ if environ is None else environ
    if env_name not in ENDPOINTS:
        raise ConfigError(f"--env must be prod or mock, not {env_name!r}")
    rest_default, ws_default = ENDPOINTS[env_name]
    return Endpoints(
        rest_url=rest_url or environ.get("KIWOOM_REST_URL") or rest_default,
        ws_url=ws_url or environ.get("KIWOOM_WS_URL") or ws_default,
    )
