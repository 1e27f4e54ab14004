"""The public API, ``recorder.Store``: each entry point against the Parquet files themselves.

The store is built from the synthetic market through the capture's pipeline (KRX and NXT
streams of three symbols); expectations are read from the part files with pyarrow, not
through the code under test.
"""

from __future__ import annotations

import datetime as dt
import inspect
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import recorder
import recorder.replay
from recorder import Store
from recorder.errors import ConfigError
from tests.replay.stores import build_store

DAY = "2026-07-20"
KST_TYPE = pa.timestamp("us", tz="Asia/Seoul")
NINE_HOURS = dt.timedelta(hours=9)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store")
    build_store(path, DAY, steps=30, symbols=3)
    return path


@pytest.fixture(scope="module")
def store(root: Path) -> Store:
    return Store(root)


def files_table(root: Path, table: str) -> pa.Table:
    """Every part file of ``table``, read directly, with ``symbol`` from the folder names."""
    parts = []
    for path in sorted((root / table).glob("date=*/symbol=*/*.parquet")):
        t = pq.read_table(path)
        symbol = path.parent.name.removeprefix("symbol=")
        parts.append(t.append_column("symbol", pa.array([symbol] * len(t), pa.string())))
    return pa.concat_tables(parts)


def counts(t: pa.Table, *keys: str) -> Counter[tuple]:
    return Counter(zip(*(t.column(k).to_pylist() for k in keys), strict=True))


def a_symbol_on_nxt(root: Path) -> str:
    trades = files_table(root, "trades")
    nxt = trades.filter(pc.equal(trades["venue"], "NXT"))
    return str(nxt["symbol"][0])


# --------------------------------------------------------------------------- sql, named


def test_sql_returns_the_stored_rows_with_kst_timestamps(store: Store, root: Path) -> None:
    got = store.sql(
        "SELECT symbol, venue, count(*) AS n, min(ts) AS first, min(ts)::TIMESTAMP AS wall "
        "FROM trades GROUP BY ALL"
    )
    trades = files_table(root, "trades")
    assert {(s, v): n for s, v, n in counts(got, "symbol", "venue", "n")} == counts(trades, "symbol", "venue")
    assert got.schema.field("first").type == KST_TYPE
    assert got.schema.field("wall").type == KST_TYPE  # a zoneless time is read as KST wall time
    assert got["wall"].to_pylist() == got["first"].to_pylist()
    first = got["first"][0].as_py()
    assert first.utcoffset() == NINE_HOURS and first.hour == 9  # the synthetic day starts 09:00 KST


def test_sql_binds_parameters(store: Store, root: Path) -> None:
    symbol = a_symbol_on_nxt(root)
    got = store.sql("SELECT DISTINCT symbol FROM trades WHERE symbol = $s", {"s": symbol})
    assert got["symbol"].to_pylist() == [symbol]
    injected = store.sql("SELECT count(*) AS n FROM trades WHERE symbol = $s", {"s": "x' OR 1=1 --"})
    assert injected["n"].to_pylist() == [0]


def test_named_takes_items_as_symbols(store: Store, root: Path) -> None:
    symbol = a_symbol_on_nxt(root)
    trades = files_table(root, "trades")
    volume = Counter()
    for s, v, q in zip(
        trades["symbol"].to_pylist(), trades["venue"].to_pylist(), trades["volume"].to_pylist(), strict=True
    ):
        volume[(s, v)] += q

    every = store.named("bars", start=DAY, end=DAY, symbol=symbol, interval="1 day")
    assert sorted(every["venue"].to_pylist()) == ["KRX", "NXT"]
    nxt = store.named("bars", start=DAY, end=DAY, symbol=f"{symbol}_NX", interval="1 day")
    assert nxt["venue"].to_pylist() == ["NXT"]
    assert nxt["symbol"].to_pylist() == [symbol]
    assert nxt["volume"].to_pylist() == [volume[(symbol, "NXT")]]
    assert nxt.schema.field("bucket").type == KST_TYPE
    assert nxt["bucket"][0].as_py() == dt.datetime(2026, 7, 20, tzinfo=dt.timezone(NINE_HOURS))


def test_named_refuses_filters_that_cannot_match(store: Store) -> None:
    for bad in (
        {"symbol": "005930_NX", "venue": "KRX"},  # the item is on another venue
        {"symbol": "5930_XX"},  # not an item
        {"symbol": "005930,000660"},  # one symbol at a time
    ):
        with pytest.raises(ConfigError):
            store.named("bars", start=DAY, end=DAY, **bad)


# --------------------------------------------------------------------------- replay, batches


def test_replay_yields_every_row_in_time_order_with_kst_times(store: Store, root: Path) -> None:
    rows = list(store.replay(DAY))
    trades, books = files_table(root, "trades"), files_table(root, "orderbook")
    assert counts_of_rows(rows) == Counter({"trades": len(trades), "orderbook": len(books)})
    keys = [(r.ts, r["recv_ts"], r["seq"]) for r in rows]
    assert keys == sorted(keys)
    assert {r["seq"] for r in rows if r.table == "trades"} == set(trades["seq"].to_pylist())
    assert sorted(r.ts for r in rows if r.table == "trades") == sorted(trades["ts"].to_pylist())
    for r in rows[:50]:
        assert r.ts.utcoffset() == NINE_HOURS and str(r.ts.tzinfo) == "Asia/Seoul"
        assert r["recv_ts"].utcoffset() == NINE_HOURS
    trade = next(r for r in rows if r.table == "trades")
    assert isinstance(trade["price"], int) and trade["price"] > 0


def counts_of_rows(rows: list[recorder.api.Row]) -> Counter[str]:
    return Counter(r.table for r in rows)


def test_replay_filters_by_item_and_type(store: Store, root: Path) -> None:
    symbol = a_symbol_on_nxt(root)
    trades = files_table(root, "trades")
    want = trades.filter(pc.and_(pc.equal(trades["symbol"], symbol), pc.equal(trades["venue"], "NXT")))
    rows = list(store.replay(DAY, symbols=f"{symbol}_NX", types="0B"))
    assert len(rows) == len(want) > 0
    assert {(r.table, r.symbol, r.venue) for r in rows} == {("trades", symbol, "NXT")}
    plain = list(store.replay(DAY, symbols=[symbol], types=["0B"]))
    assert {r.venue for r in plain} == {"KRX", "NXT"}
    assert list(store.replay(DAY, end_date="2026-07-21", symbols=f"{symbol}_NX", types="0B")) == rows


def test_replay_checks_its_arguments_before_reading(store: Store) -> None:
    with pytest.raises(ConfigError):
        store.replay("20-07-2026")  # raised by the call, not by the first next()
    with pytest.raises(ConfigError):
        store.replay(DAY, symbols="005930_XX")
    with pytest.raises(ConfigError):
        store.batches(DAY, types="0Z")


def test_batches_hold_the_replayed_rows_in_the_stored_schema(store: Store, root: Path) -> None:
    symbol = a_symbol_on_nxt(root)
    pairs = list(store.batches(DAY, symbols=f"{symbol}_NX", batch_rows=7))
    assert {table for table, _ in pairs} == {"trades", "orderbook"}
    assert all(b.num_rows <= 7 for _, b in pairs)
    trades = pa.Table.from_batches([b for table, b in pairs if table == "trades"])
    assert trades.schema.field("ts").type == KST_TYPE
    assert trades.schema.field("recv_ts").type == KST_TYPE
    rows = [r for r in store.replay(DAY, symbols=f"{symbol}_NX") if r.table == "trades"]
    assert trades["seq"].to_pylist() == [r["seq"] for r in rows]
    assert trades["ts"].to_pylist() == [r.ts for r in rows]


# --------------------------------------------------------------------------- inventory, verify


def test_inventory_counts_the_files(store: Store, root: Path) -> None:
    inv = store.inventory()
    by_table = {t.table: t for t in inv.tables}
    for table in ("trades", "orderbook"):
        files = list((root / table).glob("date=*/symbol=*/*.parquet"))
        assert by_table[table].files == len(files)
        assert by_table[table].rows == len(files_table(root, table))
        assert by_table[table].dates == [DAY]
        assert len(by_table[table].symbols) == 3
    assert inv.to_dict()["tables"][0]["table"] == "trades"


def test_verify_is_clean_and_catches_a_damaged_file(root: Path, tmp_path: Path) -> None:
    assert Store(root).verify().status == "clean"
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    part = next(copy.glob("trades/date=*/symbol=*/*.parquet"))
    part.write_bytes(part.read_bytes()[:100])
    rep = Store(copy).verify(scratch_dir=tmp_path)
    assert rep.status == "unreadable" and rep.exit_code == 2
    assert any(part.name in line for line in rep.problems)


# --------------------------------------------------------------------------- the data dir


def test_a_missing_data_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Store(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        Store(tmp_path / "file")
    with pytest.raises(ConfigError, match="not supported"):
        Store("gs://bucket/prefix")  # s3:// is a store: tests/s3
    assert Store(tmp_path).data_dir == tmp_path


# --------------------------------------------------------------------------- the package surface


def test_importing_recorder_loads_neither_pyarrow_nor_duckdb() -> None:
    code = (
        "import sys, recorder\n"
        "before = sorted(m for m in ('pyarrow', 'duckdb') if m in sys.modules)\n"
        "from recorder import Store\n"
        "after = sorted(m for m in ('pyarrow', 'duckdb') if m in sys.modules)\n"
        "print(before, after, Store.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "[]", "recorder.api"]


def test_the_public_names() -> None:
    assert recorder.__all__ == ["Store"]
    assert recorder.Store is Store
    modules = [recorder.replay, *(getattr(recorder.replay, m) for m in ("read", "rows", "feed"))]
    for module in modules:
        for name in module.__all__:
            assert not name.startswith("_"), (module.__name__, name)
            obj = getattr(module, name)
            if module is not recorder.replay and (inspect.isclass(obj) or inspect.isfunction(obj)):
                assert obj.__module__ == module.__name__, f"{module.__name__} re-exports {name}"
    assert {"iter_rows", "iter_batches", "aiter_rows", "ReplayRow", "RecordedFeed"} <= set(
        recorder.replay.__all__
    )
