"""``recorder calendar`` and the calendar options of ``recorder capture``, on the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder.cli.main import main
from recorder.kiwoom.calendar import kst_today

RECORDER = (sys.executable, "-m", "recorder.cli.main")
ENV = {"KIWOOM_APPKEY": "cli-calendar-appkey-4e", "KIWOOM_SECRETKEY": "cli-calendar-secret-9a"}


def closed_port() -> int:
    """A port nothing listens on: bound, then released, so connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_normal_day_lists_each_venues_sessions() -> None:
    r = CliRunner().invoke(main, ["calendar", "--date", "2026-12-02"])
    assert r.exit_code == 0, r.output
    lines = [" ".join(line.split()) for line in r.output.splitlines()]  # columns aligned by spaces
    assert lines[0] == "2026-12-02 Wednesday"
    assert "KRX 09:00-15:30 regular" in lines
    assert "KRX 16:00-18:00 single-price" in lines
    assert "NXT 09:00:30-15:20 main" in lines
    assert "NXT 15:40-20:00 after-market" in lines
    assert len(lines) == 1 + 6 + 4


def test_a_late_open_says_so_and_shows_the_shifted_hours() -> None:
    r = CliRunner().invoke(main, ["calendar", "--date", "2026-11-19"])
    assert r.exit_code == 0
    assert r.output.splitlines()[0] == "2026-11-19 Thursday, late open: college entrance exam (CSAT) day"
    assert "KRX 10:00-16:30 regular" in [" ".join(line.split()) for line in r.output.splitlines()]


@pytest.mark.parametrize(
    ("date", "line"),
    [
        ("2026-12-25", "2026-12-25 closed: Christmas"),
        ("2027-01-01", "2027-01-01 closed: New Year's Day"),
        ("2026-12-31", "2026-12-31 closed: End of Year Holiday"),
    ],
)
def test_a_closed_day_is_one_line_and_exit_0(date: str, line: str) -> None:
    r = CliRunner().invoke(main, ["calendar", "--date", date])
    assert (r.exit_code, r.output) == (0, line + "\n")


@pytest.mark.parametrize("date", ["2026-13-01", "tomorrow"])
def test_a_bad_date_is_a_usage_error(date: str) -> None:
    r = subprocess.run([*RECORDER, "calendar", "--date", date], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [f"error: {date!r} is not a date (YYYY-MM-DD)"]


@pytest.mark.parametrize("tz", ["Pacific/Kiritimati", "America/Adak"])
def test_the_default_date_is_today_in_kst_whatever_the_zone(tz: str) -> None:
    # The two zones are 24 h apart; both must print the same KST day (either side of a
    # KST midnight that falls during the run).
    before = kst_today(time.time_ns())
    r = subprocess.run(
        [*RECORDER, "calendar"], capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": tz}
    )
    after = kst_today(time.time_ns())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] in {before.isoformat(), after.isoformat()}


def capture(tmp_path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    port = closed_port()
    return subprocess.run(
        [
            *RECORDER,
            "capture",
            "--symbols",
            "005930",
            "--data-dir",
            str(tmp_path / "d"),
            "--ws-url",
            f"ws://127.0.0.1:{port}/x",
            "--rest-url",
            f"http://127.0.0.1:{port}",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **ENV},
        cwd=tmp_path,
    )


def test_capture_on_a_holiday_exits_0_at_once_without_logging_in(tmp_path: Path) -> None:
    # --trading-date names the day the calendar consults (the clock's KST day otherwise).
    r = capture(tmp_path, "--trading-date", "2026-12-25", "--duration", "1h")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "market closed on 2026-12-25: Christmas; nothing recorded (--force records anyway)"
    ]
    assert "au10001" not in r.stderr and not (tmp_path / "d").exists()


def test_force_records_on_a_holiday(tmp_path: Path) -> None:
    r = capture(tmp_path, "--trading-date", "2026-12-25", "--duration", "1s", "--force")
    assert r.returncode == 4, r.stderr  # it tried: nothing listens on the port
    assert "never logged in" in r.stderr and (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--trading-date", "2026-12-25", "--force"], "the market is closed on 2026-12-25 (Christmas)"),
        (["--trading-date", "2024-12-02"], "sessions of 2024-12-02 ended at 18:05 KST"),
        (["--duration", "1m"], "give --duration or --until, not both"),
    ],
)
def test_until_close_that_cannot_be_is_a_usage_error(
    tmp_path: Path, options: list[str], message: str
) -> None:
    r = capture(tmp_path, "--until", "close", *options)
    assert r.returncode == 2 and message in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "d").exists()
