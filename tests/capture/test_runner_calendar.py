"""The capture and the trading calendar, under an injected clock: a closed day records nothing
and opens no connection unless forced; ``until_close`` ends after the last session recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from recorder.capture.runner import CaptureRequest, plan_capture, recorded_venues, run_capture
from recorder.errors import ConfigError, RecorderError
from recorder.kiwoom.calendar import Closed
from recorder.kiwoom.time import KST

APPKEY, SECRET = "calendar-appkey-5d1e", "calendar-secret-77ab0c"


def clock_at(date: str, hhmm: str) -> int:
    """``hhmm`` KST on ``date``, in epoch ns."""
    when = dt.datetime.combine(dt.date.fromisoformat(date), dt.time.fromisoformat(hhmm), tzinfo=KST)
    return int(when.timestamp()) * 1_000_000_000


def request(tmp_path: Path, date: str, hhmm: str, **kw: object) -> CaptureRequest:
    """A request whose clock is stopped at ``hhmm`` KST on ``date``."""
    now = clock_at(date, hhmm)
    return CaptureRequest(data_dir=tmp_path / "d", clock=lambda: now, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("symbols", "kw", "venues", "end"),
    [
        (["005930", "000660"], {}, ("KRX",), "18:05"),
        (["005930", "005930_NX"], {}, ("KRX", "NXT"), "20:05"),
        (["005930_NX"], {}, ("NXT",), "20:05"),
        (["005930"], {"nxt": True}, ("KRX", "NXT"), "20:05"),
    ],
)
def test_until_close_ends_after_the_last_session_of_the_venues_recorded(
    tmp_path: Path, symbols: list[str], kw: dict[str, object], venues: tuple[str, ...], end: str
) -> None:
    req = request(tmp_path, "2026-12-02", "15:00", symbols=symbols, until_close=True, **kw)
    assert recorded_venues(symbols, None, bool(kw.get("nxt"))) == venues
    plan = plan_capture(req)
    h, m = map(int, end.split(":"))
    assert plan.closed is None and plan.duration_s == (h * 60 + m - 15 * 60) * 60


def test_until_close_follows_a_late_open_and_its_grace(tmp_path: Path) -> None:
    # The CSAT day: KRX's single-price session ends at 19:00 instead of 18:00.
    req = request(tmp_path, "2026-11-19", "18:30", symbols=["005930"], until_close=True, grace_s=60.0)
    assert plan_capture(req).duration_s == 31 * 60


def test_until_close_after_the_close_or_on_a_closed_day_is_refused(tmp_path: Path) -> None:
    late = request(tmp_path, "2026-12-02", "18:06", symbols=["005930"], until_close=True)
    with pytest.raises(ConfigError, match="ended at 18:05 KST"):
        plan_capture(late)
    forced = request(tmp_path, "2026-12-25", "10:00", symbols=["005930"], until_close=True, force=True)
    with pytest.raises(ConfigError, match="closed on 2026-12-25"):
        plan_capture(forced)


def test_without_until_close_the_duration_is_kept(tmp_path: Path) -> None:
    req = request(tmp_path, "2026-12-02", "10:00", symbols=["005930"], duration_s=42.0)
    assert plan_capture(req).duration_s == 42.0


def test_the_kst_date_decides_whatever_the_utc_date(tmp_path: Path) -> None:
    # 00:30 KST on Christmas is still the 24th in UTC.
    assert plan_capture(request(tmp_path, "2026-12-25", "00:30", symbols=["005930"])).closed == Closed(
        dt.date(2026, 12, 25), "Christmas"
    )
    assert plan_capture(request(tmp_path, "2026-12-24", "23:30", symbols=["005930"])).closed is None


class Listener:
    """A TCP server on loopback that counts connections and closes them at once."""

    def __init__(self) -> None:
        self.connections = 0

    async def __aenter__(self) -> str:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize(
    ("date", "reason"), [("2026-12-25", "Christmas"), ("2026-12-31", "End of Year Holiday")]
)
def test_a_closed_day_returns_at_once_without_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, date: str, reason: str
) -> None:
    monkeypatch.setenv("KIWOOM_APPKEY", APPKEY)
    monkeypatch.setenv("KIWOOM_SECRETKEY", SECRET)

    async def main() -> tuple[object, int]:
        async with (listener := Listener()) as addr:
            req = request(
                tmp_path,
                date,
                "09:30",
                symbols=["005930"],
                ws_url=f"ws://{addr}/x",
                rest_url=f"http://{addr}",
            )
            result = await run_capture(req, progress=False)
        return result, listener.connections

    result, connections = asyncio.run(main())
    assert connections == 0
    assert result.closed == Closed(dt.date.fromisoformat(date), reason)  # type: ignore[attr-defined]
    assert result.summary().startswith(f"market closed on {date}: {reason}")  # type: ignore[attr-defined]
    assert not (tmp_path / "d").exists()


def test_force_records_on_a_closed_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIWOOM_APPKEY", APPKEY)
    monkeypatch.setenv("KIWOOM_SECRETKEY", SECRET)

    async def main() -> int:
        async with (listener := Listener()) as addr:
            req = request(
                tmp_path,
                "2026-12-25",
                "09:30",
                symbols=["005930"],
                ws_url=f"ws://{addr}/x",
                rest_url=f"http://{addr}",
                force=True,
                duration_s=1.0,
            )
            with pytest.raises(RecorderError):  # the listener is no Kiwoom: it tried, and failed
                await run_capture(req, progress=False)
        return listener.connections

    assert asyncio.run(main()) > 0


def test_until_close_runs_the_capture_until_then(tmp_path: Path) -> None:
    # Stopped at 18:00 KST with a 1 s grace, the embedded venue's capture has 1 s to run.
    req = request(tmp_path, "2026-12-02", "18:00", sim=True, nxt=False, until_close=True, grace_s=1.0)
    result = asyncio.run(run_capture(req, progress=False))
    assert result.closed is None and result.capture is not None
    assert result.capture.stats.subscribed and result.capture.stats.frames > 0


def test_the_isolated_lookup_answers_as_the_calendar_does() -> None:
    """The CLI looks the day up in a short-lived interpreter (the calendar's libraries stay
    out of the capture's memory): the same answers, errors included."""
    from recorder.capture.runner import isolated_trading_day
    from recorder.kiwoom.calendar import trading_day

    for day in ("2026-07-20", "2026-07-18", "2026-11-19"):  # trades, a Saturday, a late open
        date = dt.date.fromisoformat(day)
        assert isolated_trading_day(date) == trading_day(date), day
    with pytest.raises(ConfigError, match="the trading calendar covers"):
        isolated_trading_day(dt.date(2051, 1, 4))
