"""Spark reads the store as DuckDB does: ``recorder.spark.table`` against the DuckDB views and
``recorder.spark.named`` against ``queries.run``, on a store written by the real decoder and sink.

One local Spark session (``local[2]``, UI off, two shuffle partitions) serves the module.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest

import queries
from queries.named import NamedQueryError
from recorder.errors import ConfigError
from recorder.kiwoom.decode import Decoder
from recorder.kiwoom.schema import SCHEMAS, timestamps
from recorder.kiwoom.time import KST, NS, trading_day
from recorder.sim.market import SyntheticMarket
from recorder.store.sink import Gap, Sink

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="Spark needs Java: no java on PATH")

if shutil.which("java") is not None:
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F

    from recorder import spark as rs

DAY1, DAY2 = "2026-07-20", "2026-07-21"
SYMBOLS = ["005930", "000660", "035420"]  # leading zeros: read as numbers they would be lost
ROOT = Path(__file__).resolve().parents[1]


def t(day: str, hhmmss: str) -> int:
    """A KST wall-clock time on ``day`` → epoch ns."""
    d = dt.date.fromisoformat(day)
    clock = dt.time(int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:]))
    return int(dt.datetime.combine(d, clock, KST).timestamp()) * NS


def write_day(sink: Sink, day: str, seed: int, fno: int) -> int:
    """Fifteen minutes of a seeded market from 09:00 KST on KRX and NXT, flushed in two halves
    (two part files per partition), then a late trade and an entry that does not decode.
    Returns the next frame number."""
    market = SyntheticMarket(SYMBOLS, seed=seed, venues=("KRX", "NXT"), trade_rate=2.0)
    trade: dict[str, Any] = {}
    for half in range(2):
        dec = Decoder(trading_day=trading_day(day))
        for i in range(half * 450, half * 450 + 450):
            now = t(day, "090000") + i * NS
            entries = market.step(now)
            trade = next((e for e in entries if e["type"] == "0B"), trade)
            dec.add(orjson.dumps({"trnm": "REAL", "data": entries}), now + 3_000_000, fno)
            fno += 1
        sink.add(dec.finish())
        sink.flush_all()
    # Arrives last but is stamped first: open/close follow (ts, seq), not arrival order.
    late = {**trade, "values": {**trade["values"], "20": "090000", "10": "+1"}}
    bad = {**trade, "values": {**trade["values"], "10": "not-a-price"}}
    dec = Decoder(trading_day=trading_day(day))
    dec.add(orjson.dumps({"trnm": "REAL", "data": [late, bad]}), t(day, "091500"), fno)
    res = dec.finish()
    assert len(res.rejects) == 1, res.rejects
    sink.add(res)
    return fno + 1


def backfill_rows() -> pa.Table:
    """Holes of three gaps: one partly healed, one healed on a second run, one outside any gap."""
    a, b = (t(DAY1, "090200"), "disconnect", 1 << 16), (t(DAY1, "090500"), "kicked", 2 << 16)
    rows = [  # (hole start, symbol, venue, gap, missing, filled, outcome, checked)
        (t(DAY1, "090201"), "005930", "KRX", a, 30, 30, "healed", "100000"),
        (t(DAY1, "090202"), "000660", "NXT", a, 12, 0, "unhealable", "100000"),
        (t(DAY1, "090501"), "005930", "NXT", b, 7, 0, "unhealable", "100000"),
        (t(DAY1, "090501"), "005930", "NXT", b, 7, 7, "healed", "110000"),
        (t(DAY1, "090700"), "035420", "KRX", None, 3, 3, "healed", "100000"),
    ]
    cols: dict[str, list[Any]] = {name: [] for name in SCHEMAS["backfill"].names}
    for seq, (start, symbol, venue, gap, missing, filled, outcome, checked) in enumerate(rows, 1):
        values = {
            "start_ts": start,
            "end_ts": start + 2 * NS,
            "symbol": symbol,
            "venue": venue,
            "gap_start_ts": gap[0] if gap else None,
            "gap_kind": gap[1] if gap else None,
            "gap_seq": gap[2] if gap else None,
            "missing": missing,
            "filled": filled,
            "trades": filled // 7 + 1 if filled else 0,
            "outcome": outcome,
            "detail": f"{outcome} hole {seq}",
            "checked_ts": t(DAY1, checked),
            "seq": seq << 16,
        }
        for name, v in values.items():
            cols[name].append(v)
    for name in ("start_ts", "end_ts", "gap_start_ts", "checked_ts"):
        cols[name] = timestamps(cols[name])
    table = pa.table(cols, schema=SCHEMAS["backfill"])
    return table.append_column("date", pa.array([DAY1] * len(table), pa.string()))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    sink = Sink(root, "t")
    fno = write_day(sink, DAY1, seed=3, fno=0)
    write_day(sink, DAY2, seed=4, fno=fno)
    sink.add_gaps(
        [
            Gap(t(DAY1, "090200"), t(DAY1, "090230"), "disconnect", "close 1006", (), 1 << 16),
            Gap(t(DAY1, "090500"), t(DAY1, "090510"), "kicked", "R10001", ("005930_NX",), 2 << 16),
            Gap(t(DAY2, "090300"), t(DAY2, "090303"), "continuity", "missed 5", ("005930",), 3 << 16),
            Gap(t(DAY2, "091000"), None, "reg_rejected", "open-ended", ("000660", "000660_NX"), 4 << 16),
        ]
    )
    sink.add_tables({"backfill": backfill_rows()})
    sink.close()
    # What is not part of any table: journals, temporary and stray files.
    (root / "_journal" / "t").mkdir(parents=True)
    (root / "_journal" / "t" / "frames.parquet").write_bytes(b"not parquet")
    partition = root / "trades" / f"date={DAY1}" / "symbol=005930"
    (partition / ".part-t-000000009999-000000009999.parquet.tmp").write_bytes(b"half written")
    (partition / "notes.txt").write_text("not data")
    return root


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = rs.session(
        "local[2]",
        app_name="recorder-tests",
        **{
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --------------------------------------------------------------------------- comparing

_SPARK_NAMES = {
    pa.int64(): "bigint",
    pa.float64(): "double",
    pa.string(): "string",
    pa.date32(): "date",
}


def spark_type_name(t: pa.DataType) -> str:
    """The Spark type a DuckDB column of Arrow type ``t`` must have."""
    if pa.types.is_timestamp(t):
        assert t.tz == "Asia/Seoul", t  # DuckDB's TIMESTAMPTZ in the session's zone
        return "timestamp"
    if pa.types.is_list(t):
        return f"array<{spark_type_name(t.value_type)}>"
    return _SPARK_NAMES[t]


def columns(df: DataFrame) -> list[tuple[str, str]]:
    return [(f.name, f.dataType.simpleString()) for f in df.schema.fields]


def duck_columns(table: pa.Table) -> list[tuple[str, str]]:
    return [(f.name, spark_type_name(f.type)) for f in table.schema]


def assert_same(df: DataFrame, expected: pa.Table) -> None:
    """Same columns, types and rows in the same order (timestamps compared as instants)."""
    assert columns(df) == duck_columns(expected)
    got = df.toArrow().to_pylist()
    want = expected.to_pylist()
    assert len(got) == len(want)
    assert got == want


ORDER = {"trades": "seq", "orderbook": "seq", "gaps": "seq", "rejects": "seq", "backfill": "seq, checked_ts"}


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("name", list(ORDER))
def test_table_has_the_duckdb_views_columns_types_and_rows(
    spark: SparkSession, store: Path, name: str
) -> None:
    expected = queries.sql(store, f"SELECT * FROM {name} ORDER BY {ORDER[name]}")
    assert expected.num_rows > 0
    df = rs.table(spark, store, name)
    assert df.schema == rs.schema(name)
    assert_same(df.orderBy(*(c.strip() for c in ORDER[name].split(","))), expected)


def test_symbol_keeps_its_leading_zeros(spark: SparkSession, store: Path) -> None:
    trades = rs.table(spark, store, "trades")
    assert sorted(r.symbol for r in trades.select("symbol").distinct().collect()) == sorted(SYMBOLS)


def test_filters_on_date_and_symbol_open_only_that_folder(
    spark: SparkSession, store: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    for part in (copy / "trades" / f"date={DAY1}" / "symbol=005930").glob("part-*.parquet"):
        part.write_bytes(b"damaged")  # any read of this folder fails
    trades = rs.table(spark, copy, "trades")
    one = trades.where((F.col("date") == dt.date(2026, 7, 21)) & (F.col("symbol") == "005930"))
    want = queries.sql(store, f"SELECT count(*) AS n FROM trades WHERE date = '{DAY2}' AND symbol = '005930'")
    assert one.count() == want["n"][0].as_py() > 0
    with pytest.raises((Py4JJavaError, PySparkException), match="FAILED_READ_FILE"):
        trades.where(F.col("symbol") == "005930").count()  # the damaged folder is read


def test_times_show_in_kst(spark: SparkSession, store: Path) -> None:
    trades = rs.table(spark, store, "trades").where(F.col("date") == dt.date(2026, 7, 20))
    (first,) = trades.select(F.date_format(F.min("ts"), "yyyy-MM-dd HH:mm:ss").alias("t")).collect()
    assert first.t == "2026-07-20 09:00:00"  # the late trade stamped 09:00:00 KST


def test_gaps_carry_the_backfill_outcome_of_each_gap(spark: SparkSession, store: Path) -> None:
    rows = rs.table(spark, store, "gaps").orderBy("seq").collect()
    got = [(r.kind, r.outcome, r.healed, r.residual) for r in rows]
    assert got == [
        ("disconnect", "partial", 30, 12),  # one hole healed, one not
        ("kicked", "healed", 7, 0),  # the latest run of the hole counts
        ("continuity", None, None, None),  # no backfill found a hole
        ("reg_rejected", None, None, None),
    ]


def test_a_store_with_no_files_yet_gives_empty_tables_with_the_views_columns(
    spark: SparkSession, tmp_path: Path
) -> None:
    sink = Sink(tmp_path, "t")
    sink.add_gaps([Gap(t(DAY1, "085500"), None, "login_failed", "8005", (), 1)])
    sink.close()
    for name in ("trades", "orderbook", "rejects", "backfill"):
        df = rs.table(spark, tmp_path, name)
        assert df.count() == 0 and df.schema == rs.schema(name)
        expected = queries.sql(tmp_path, f"SELECT * FROM {name}")
        # DuckDB's empty view lists symbol where the schema has it; its columns are the same.
        assert sorted(columns(df)) == sorted(duck_columns(expected))
    gaps = rs.table(spark, tmp_path, "gaps")
    assert_same(gaps, queries.sql(tmp_path, "SELECT * FROM gaps"))
    bars = rs.named(spark, tmp_path, "bars", start=DAY1, end=DAY1)
    assert_same(bars, queries.run("bars", tmp_path, start=DAY1, end=DAY1))


# --------------------------------------------------------------------------- named queries

BARS = [
    {"start": DAY1, "end": DAY1},
    {"start": DAY1, "end": DAY2, "symbol": "005930_NX", "interval": "7 minutes"},
    {"start": dt.date(2026, 7, 20), "end": DAY2, "venue": "krx", "interval": "1 day"},
    {"start": DAY1, "end": DAY2, "venue": "NXT", "interval": "1 week"},  # weeks start on Monday
    {"start": DAY1, "end": DAY2, "symbol": "000660", "interval": "1 month"},
    {"start": DAY2, "end": DAY2, "interval": "90 seconds"},
]
VWAP = [{"start": DAY1, "end": DAY2}, {"start": DAY2, "end": DAY2, "symbol": "005930"}]


@pytest.mark.parametrize(("name", "params"), [("bars", p) for p in BARS] + [("vwap", p) for p in VWAP])
def test_named_gives_the_rows_of_queries_run(
    spark: SparkSession, store: Path, name: str, params: dict[str, Any]
) -> None:
    expected = queries.run(name, store, **params)
    assert expected.num_rows > 0
    assert_same(rs.named(spark, store, name, **params), expected)


def test_bars_open_and_close_follow_ts_then_seq(spark: SparkSession, store: Path) -> None:
    bars = rs.named(spark, store, "bars", start=DAY1, end=DAY1, symbol=SYMBOLS[0], venue="KRX")
    first = bars.first()
    assert first is not None and first.open == 1  # the late trade stamped 09:00:00


def test_bars_bucket_in_kst_whatever_the_sessions_time_zone(spark: SparkSession, store: Path) -> None:
    params = {"start": DAY1, "end": DAY2, "interval": "1 day"}
    expected = queries.run("bars", store, **params)
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        assert_same(rs.named(spark, store, "bars", **params), expected)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "Asia/Seoul")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("spread", {"start": DAY1, "end": DAY1}, "not available on Spark"),
        ("nope", {}, "no named query 'nope'"),
        ("bars", {"start": DAY1}, "missing parameter(s) end"),
        ("bars", {"start": DAY1, "end": DAY1, "symbol": "5930"}, "symbol='5930'"),
        ("bars", {"start": DAY1, "end": DAY1, "interval": "1 day 2 hours"}, "not a mix"),
        ("bars", {"start": DAY1, "end": DAY1, "interval": "-5 minutes"}, "positive"),
        ("vwap", {"start": "July", "end": DAY1}, "start='July' is not a valid date"),
    ],
)
def test_named_refuses_what_it_cannot_answer(
    spark: SparkSession, store: Path, name: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(NamedQueryError, match=re.escape(message)):
        rs.named(spark, store, name, **params)


def test_table_refuses_an_unknown_table_and_a_missing_folder(
    spark: SparkSession, store: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no table 'ticks'"):
        rs.table(spark, store, "ticks")
    with pytest.raises(ConfigError, match="does not exist"):
        rs.table(spark, tmp_path / "missing", "trades")


# --------------------------------------------------------------------------- imports


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)


def test_import_recorder_does_not_load_pyspark() -> None:
    res = run_python(
        "import sys, recorder, queries; recorder.Store; import recorder.cli.main\n"
        "assert 'pyspark' not in sys.modules, 'pyspark loaded'"
    )
    assert res.returncode == 0, res.stderr


def test_recorder_spark_without_pyspark_names_the_extra() -> None:
    res = run_python("import sys; sys.modules['pyspark'] = None; import recorder.spark")
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1] == (
        "ImportError: recorder.spark needs pyspark: pip install 'kiwoom-recorder[spark]'"
    )
