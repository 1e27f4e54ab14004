"""Disk safety: the day's need against free space before a capture starts, and the warning
when free space falls under a floor while it runs. Only the disk size is faked (a callable)."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
from pathlib import Path

import pytest

from recorder.capture.diskcheck import (
    BYTES_PER_CODE_S,
    SEGMENT_BYTES,
    DiskWatch,
    check_disk,
    default_floor,
    estimate,
    parse_size,
)
from recorder.capture.runner import CaptureRequest, run_capture
from recorder.errors import ConfigError, StoreError
from soak.harness import CLI_CAPTURE, hermetic_env

GB = 10**9


def one_device(path: Path) -> int:
    return 1


def test_the_need_is_codes_times_seconds_times_the_rate_plus_a_segment(tmp_path: Path) -> None:
    need = estimate(200, 6.5 * 3600, store=tmp_path, journal=tmp_path / "_journal", free=lambda p: 80 * GB)
    assert need.need == {tmp_path: pytest.approx(200 * 6.5 * 3600 * BYTES_PER_CODE_S + SEGMENT_BYTES, abs=2)}
    assert need.short == [] and check_disk(need) == []
    # 200 codes for a 6.5 h day at the default rate: about 11 GB
    assert 10 * GB < need.need[tmp_path] < 12 * GB


def test_a_short_disk_refuses_with_one_line_naming_need_and_free(tmp_path: Path) -> None:
    need = estimate(200, 6.5 * 3600, store=tmp_path, journal=tmp_path / "_journal", free=lambda p: 3 * GB)
    with pytest.raises(StoreError) as err:
        check_disk(need, "refuse")
    msg = str(err.value)
    assert "\n" not in msg and "11.2 GB" in msg and "3.0 GB free" in msg and "--disk-check warn" in msg


def test_warn_logs_and_off_checks_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    need = estimate(10, 3600, store=tmp_path, journal=tmp_path / "_journal", free=lambda p: 0)
    with caplog.at_level(logging.WARNING):
        lines = check_disk(need, "warn")
    assert len(lines) == 1 and lines[0] in caplog.text
    assert check_disk(need, "off") == []
    with pytest.raises(ConfigError):
        check_disk(need, "maybe")


def test_journal_and_store_on_different_file_systems_are_checked_apart(tmp_path: Path) -> None:
    store, journal = tmp_path / "store", tmp_path / "journal"
    free = {store: 100 * GB, journal: SEGMENT_BYTES // 2}
    need = estimate(
        5, 60, store=store, journal=journal, free=free.__getitem__, dev=lambda p: 1 if p == store else 2
    )
    assert set(need.need) == {store, journal} and need.short == [journal]
    with pytest.raises(StoreError, match=str(journal)):
        check_disk(need)


def test_the_watch_warns_once_per_crossing(caplog: pytest.LogCaptureFixture) -> None:
    readings = iter([5 * GB, 900, 800, 700, 2 * GB, 500, 600])
    watch = DiskWatch([Path("/data")], floor=1000, free=lambda p: next(readings))
    with caplog.at_level(logging.WARNING):
        got = [watch.check() for _ in range(7)]
    assert [len(g) for g in got] == [0, 1, 0, 0, 0, 1, 0]
    assert "900 bytes free on /data" in got[1][0] and caplog.text.count("disk space low") == 2
    assert default_floor(1) == 1 << 30 and default_floor(200) == int(200 * 3600 * BYTES_PER_CODE_S)


def test_sizes_parse() -> None:
    assert [parse_size(s) for s in ("2340", "2.5KB", "50GB", "1GiB")] == [2340, 2500, 50 * GB, 1 << 30]
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_run_capture_refuses_before_creating_anything(tmp_path: Path) -> None:
    data = tmp_path / "store"
    req = CaptureRequest(data_dir=data, sim=True, duration_s=60, disk_free=lambda p: 10**6)
    with pytest.raises(StoreError, match="not enough disk space"):
        asyncio.run(run_capture(req, progress=False))
    assert not data.exists()  # no journal, no venue, no network


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_refuses_a_universe_too_large_for_the_disk_before_any_network_call(tmp_path: Path) -> None:
    port = closed_port()  # nothing listens: a capture that tried to connect would exit 4
    out = subprocess.run(
        [
            *CLI_CAPTURE,
            "--symbols",
            "005930,000660",
            "--force",
            "--duration",
            "1h",
            "--data-dir",
            str(tmp_path / "store"),
            "--ws-url",
            f"ws://127.0.0.1:{port}/api/dostk/websocket",
            "--rest-url",
            f"http://127.0.0.1:{port}",
            "--disk-rate",
            "1TB",
        ],
        capture_output=True,
        text=True,
        env=hermetic_env(KIWOOM_APPKEY="k" * 20, KIWOOM_SECRETKEY="s" * 20),
        timeout=60,
        check=False,
    )
    assert out.returncode == 1, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "needs about 7.2 PB" not in lines[0]  # sizes stop at TB
    assert "needs about 7,200.0 TB (2 codes x 1.0 h x 1.0 TB/code/s)" in lines[0] and "free" in lines[0]
    assert "s" * 20 not in out.stderr + out.stdout
    assert not (tmp_path / "store").exists()


def test_metrics_add_the_journal_file_system_when_it_is_another(tmp_path: Path) -> None:
    import os
    import tempfile

    from recorder.capture.metrics import CaptureCollector

    def gauges(data: Path) -> dict[str, float]:
        return {m.name: m.samples[0].value for m in CaptureCollector(data).collect() if "disk" in m.name}

    (tmp_path / "a" / "_journal").mkdir(parents=True)
    assert set(gauges(tmp_path / "a")) == {"recorder_disk_free_bytes"}
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second file system to put a journal on")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "_journal").symlink_to(other)
        got = gauges(tmp_path / "b")
        assert set(got) == {"recorder_disk_free_bytes", "recorder_journal_disk_free_bytes"}
        assert got["recorder_journal_disk_free_bytes"] > 0


def refusal(req: CaptureRequest) -> str:
    with pytest.raises(StoreError) as err:
        asyncio.run(run_capture(req, progress=False))
    return str(err.value)


def test_a_market_universe_counts_the_most_its_keys_may_record(tmp_path: Path) -> None:
    req = CaptureRequest(data_dir=tmp_path, universe="kospi", duration_s=3600, disk_free=lambda p: 0)
    assert "(200 codes x 1.0 h x" in refusal(req)
    req = CaptureRequest(data_dir=tmp_path, sim=True, sim_symbols=7, duration_s=60, disk_free=lambda p: 0)
    assert "(14 codes x 60 s x" in refusal(req)  # the embedded venue's symbols, KRX and NXT


def test_without_an_end_the_estimate_covers_the_rest_of_the_days_sessions(tmp_path: Path) -> None:
    import datetime as dt

    from recorder.capture.runner import close_time
    from recorder.kiwoom.calendar import trading_day

    kst = dt.timezone(dt.timedelta(hours=9))
    now = dt.datetime(2026, 7, 20, 11, 0, tzinfo=kst)  # a Monday, mid-session
    left = (close_time(trading_day(now.date()), ("KRX",)) - now).total_seconds()
    req = CaptureRequest(
        data_dir=tmp_path,
        symbols=["005930", "000660"],
        clock=lambda: int(now.timestamp()) * 10**9,
        disk_free=lambda p: 0,
    )
    assert f"(2 codes x {left / 3600:,.1f} h x" in refusal(req)
