"""The real ``recorder`` CLI in subprocesses: kill -9 and restart, bad credentials, ingest, rebuild.

Nothing here depends on the machine's speed: a capture runs until the venue has seen what the
test needs (LOGINs, REAL entries, a PING barrier proving the capture read them), then gets
SIGTERM. Time limits only bound a hang.
"""

from __future__ import annotations

import collections
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

import queries
from recorder.cli.common import EXIT_AUTH
from recorder.sim.venue import VenueConfig
from recorder.store import verify as verify_store
from soak.harness import capture_command, hermetic_env
from tests.helpers import WAIT_S, capture_until, journal_rows, stored_rows

RECORDER = [sys.executable, "-m", "recorder.cli.main"]
APPKEY, SECRET = "cli-appkey-7f3a9c", "cli-secret-d41d8cd98f"
DATA = Path(__file__).parents[1] / "data"


def capture_cmd(vt: Any, data_dir: Path, *extra: str) -> list[str]:
    return capture_command(vt.venue, data_dir, "cli", *extra)


def test_sigkill_then_restart_loses_and_duplicates_nothing(tmp_path: Path, venue_thread: Any) -> None:
    """Two kill -9s after a clean run: recovery runs over a journal of compressed (the clean
    run's) and live segments; the store holds every journaled entry once, as does a rebuild."""
    vt = venue_thread(VenueConfig(n_symbols=3, tick_interval=0.02, trade_rate=10.0, seed=11))
    env = hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)
    clean = capture_until(vt, capture_cmd(vt, tmp_path, "--no-compact"), env, logins=1, trades=20)
    assert clean.returncode == 0, clean.stderr
    for round_ in range(1, 3):
        proc = subprocess.Popen(
            capture_cmd(vt, tmp_path, "--flush-age", "0.3s"),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        vt.wait_logins(round_ + 1, WAIT_S)
        vt.wait_entries(vt.entries_sent() + 150, WAIT_S)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(WAIT_S) == -signal.SIGKILL
    segments = [p.name for p in (tmp_path / "_journal" / "cli").glob("seg-*")]
    assert any(n.endswith(".jnl.zst") for n in segments) and any(n.endswith(".jnl") for n in segments)
    done = capture_until(vt, capture_cmd(vt, tmp_path), env, logins=4)
    assert done.returncode == 0, done.stderr
    want = {table: journal_rows(tmp_path, "cli", table) for table in ("trades", "orderbook")}
    for table, rows in want.items():
        assert len(rows) > 40
        assert stored_rows(tmp_path, table) == rows  # every journaled entry exactly once
    gaps = queries.sql(tmp_path, "SELECT kind FROM gaps WHERE kind = 'restart'").num_rows
    assert gaps == 3  # the downtime after the clean run and after each kill is on record
    rebuilt = subprocess.run(
        [*RECORDER, "rebuild", "--data-dir", str(tmp_path)], env=env, capture_output=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert {table: stored_rows(tmp_path, table) for table in want} == want


def test_sigterm_flushes_and_exits_zero(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0))
    proc = subprocess.Popen(
        capture_cmd(vt, tmp_path),
        env=hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    vt.wait_entries(60, WAIT_S)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, err
    assert stored_rows(tmp_path, "trades") == journal_rows(tmp_path, "cli", "trades")
    assert "captured" in out


def test_wrong_secret_exits_fast_naming_the_cause(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VenueConfig(appkey=APPKEY, secretkey="the-right-secret"))
    r = subprocess.run(
        capture_cmd(vt, tmp_path),  # no --duration: only the refusal can end it
        env=hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    # Fast because it gives up at the first refusal: one token request, no retry, no socket.
    st = vt.run(lambda: vt.venue.stats)
    assert vt.run(lambda: (st.rest_requests, st.tokens_issued, st.connections)) == (1, 0, 0)
    assert r.returncode == EXIT_AUTH
    assert "authentication failed" in r.stderr and "refused" in r.stderr
    everything = (
        r.stdout
        + r.stderr
        + "".join(p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file())
    )
    assert SECRET not in everything and APPKEY not in everything


def test_missing_credentials_name_the_variable(tmp_path: Path) -> None:
    r = subprocess.run(
        [*RECORDER, "capture", "--symbols", "005930", "--data-dir", str(tmp_path), "--force"],
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert r.returncode != 0 and "KIWOOM_APPKEY" in r.stderr


def test_ingest_then_rebuild_from_the_journal(tmp_path: Path, venue_thread: Any) -> None:
    frames = tmp_path / "frames.ndjson"
    frames.write_bytes(
        b"".join(
            orjson.dumps(orjson.loads(line)["frame"]) + b"\n"
            for line in (DATA / "kiwoom-frames.jsonl").read_bytes().splitlines()
        )
    )
    store = tmp_path / "store"
    r = subprocess.run(
        [*RECORDER, "ingest", str(frames), "--data-dir", str(store), "--date", "2026-07-20"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "6 rows, 1 rejects" in r.stdout
    t = queries.sql(store, "SELECT symbol, venue, price, ts FROM trades ORDER BY seq").to_pylist()
    assert [(x["symbol"], x["venue"], x["price"]) for x in t] == [
        ("005930", "KRX", 251000),
        ("000660", "KRX", 1851000),
        ("373220", "KRX", 331000),
        ("005930", "NXT", 252500),
    ]
    assert str(t[0]["ts"]) == "2026-07-20 10:27:56+09:00"
    again = subprocess.run(
        [*RECORDER, "ingest", str(frames), "--data-dir", str(store)], capture_output=True, text=True
    )
    assert again.returncode != 0 and "already ingested" in again.stderr

    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0))
    cap = tmp_path / "cap"
    env = hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)
    done = capture_until(vt, capture_cmd(vt, cap), env, logins=1, trades=5)
    assert done.returncode == 0, done.stderr
    before = {t: stored_rows(cap, t) for t in ("trades", "orderbook")}
    rb = subprocess.run(
        [*RECORDER, "rebuild", "--data-dir", str(cap)], capture_output=True, text=True, timeout=60
    )
    assert rb.returncode == 0, rb.stderr
    assert {t: stored_rows(cap, t) for t in ("trades", "orderbook")} == before
    assert before["trades"]


def test_more_than_200_codes_is_refused_before_any_network_call(tmp_path: Path) -> None:
    codes = ",".join(f"{100000 + i:06d}" for i in range(201))
    r = subprocess.run(
        [
            *RECORDER,
            "capture",
            "--symbols",
            codes,
            "--data-dir",
            str(tmp_path),
            "--rest-url",
            "http://127.0.0.1:9",
            "--ws-url",
            "ws://127.0.0.1:9/x",
        ],
        env=hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "201 codes exceed" in r.stderr and "2 keys are needed" in r.stderr


def test_no_secret_in_any_output_or_file_of_a_debug_run(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(
        VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0, appkey=APPKEY, secretkey=SECRET)
    )
    r = capture_until(
        vt,
        [*RECORDER, "--log-level", "DEBUG", *capture_cmd(vt, tmp_path)[len(RECORDER) :]],
        hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET),
        logins=1,
    )
    assert r.returncode == 0, r.stderr
    tokens = vt.venue.tokens.issued()
    assert tokens and "DEBUG" in r.stderr
    blobs = [r.stdout, r.stderr] + [
        p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()
    ]
    for secret in (APPKEY, SECRET, *tokens):
        assert not any(secret in b for b in blobs), "a secret leaked"


def test_crash_recovery_equals_rebuild_for_a_pinned_trading_date(tmp_path: Path, venue_thread: Any) -> None:
    """Recovery restores the checkpointed pipeline state (trading day, continuity), so the
    store after kill -9 and restart is exactly what a rebuild from the journal gives."""
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0, seed=21))
    env = hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)
    pinned = ("--trading-date", "2026-07-20")
    proc = subprocess.Popen(
        capture_cmd(vt, tmp_path, "--flush-age", "0.2s", *pinned),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    vt.wait_entries(vt.entries_sent() + 200, WAIT_S)
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT_S)
    done = capture_until(vt, capture_cmd(vt, tmp_path, *pinned), env, logins=2)
    assert done.returncode == 0, done.stderr
    dates = queries.sql(tmp_path, "SELECT DISTINCT date::VARCHAR AS d FROM trades").to_pylist()
    assert dates == [{"d": "2026-07-20"}]
    tables = ("trades", "orderbook", "gaps")
    before = {
        t: queries.sql(tmp_path, f"SELECT * EXCLUDE (date) FROM {t} ORDER BY seq").to_pylist() for t in tables
    }
    subprocess.run(
        [*RECORDER, "rebuild", "--data-dir", str(tmp_path)], check=True, capture_output=True, timeout=60
    )
    after = {
        t: queries.sql(tmp_path, f"SELECT * EXCLUDE (date) FROM {t} ORDER BY seq").to_pylist() for t in tables
    }
    assert after == before and before["trades"]


def test_venues_can_insist_on_our_own_key_pair(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from recorder.cli.common import venue_credentials

    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("KIWOOM_APPKEY", APPKEY)
    monkeypatch.setenv("KIWOOM_SECRETKEY", SECRET)
    assert venue_credentials(False) == (None, None)
    assert venue_credentials(True) == (APPKEY, SECRET)


def test_query_loads_neither_pandas_nor_the_decoders(tmp_path: Path) -> None:
    """A query is DuckDB over Parquet: importing pandas alone would double its start-up time."""
    args = ["query", "SELECT count(*) AS n FROM gaps", "--data-dir", str(tmp_path), "--format", "csv"]
    watched = ("pandas", "recorder.kiwoom.decode_arrow", "websockets")
    code = (
        "import sys\n"
        "from recorder.cli.main import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code in (0, None), e.code\n"
        f"print(sorted(m for m in {watched!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ['"n"', "0", "[]"]


@pytest.mark.parametrize(("end", "compact"), [("duration", True), ("duration", False), ("signal", True)])
def test_a_capture_compacts_its_part_files_when_it_ends(
    tmp_path: Path, venue_thread: Any, end: str, compact: bool
) -> None:
    """Flushes every 0.2 s leave many part files per partition; by default a capture that ends
    by itself merges them into one per partition (rows unchanged); --no-compact leaves them,
    and so does a stop by signal (a quick exit: it says so)."""
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=10.0, book_rate=10.0))
    extra = ["--flush-age", "0.2s", *(["--journal-keep", "0"] if compact else ["--no-compact"])]
    env = hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)
    if end == "signal":
        done = capture_until(vt, capture_cmd(vt, tmp_path, *extra), env, logins=1, trades=80)
    else:
        cmd = capture_cmd(vt, tmp_path, *extra, "--duration", "5s")
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr
    assert stored_rows(tmp_path, "trades") == journal_rows(tmp_path, "cli", "trades")
    files = list(tmp_path.glob("trades/*/*/*.parquet"))
    per_partition = collections.Counter(p.parent for p in files)
    # live part files are snappy (cheaper on the capture's path), merged ones zstd
    codecs = {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in files}
    merged = compact and end == "duration"
    assert codecs == ({"ZSTD"} if merged else {"SNAPPY"})
    # the journal is sealed and compressed either way; pruning never takes a writer's last segment
    segments = sorted(p.name for p in (tmp_path / "_journal" / "cli").glob("seg-*"))
    assert segments and all(n.endswith(".jnl.zst") for n in segments)
    if merged:
        assert set(per_partition.values()) == {1}
        assert "compacted" in done.stdout or "re-encoded" in done.stdout
        assert verify_store.verify(tmp_path).status == "clean"
    else:
        assert "compacted" not in done.stdout and "re-encoded" not in done.stdout
    if end == "signal":  # (how many flushes it got before the stop depends on the machine)
        assert "stopped by a signal: compaction skipped" in done.stderr
