"""Compacted part files: their per-column encodings, and what readers make of them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.kiwoom.schema import SCHEMAS
from recorder.store.encoding import COMPACT_ZSTD_LEVEL, compact_write_options, write_compacted

KST = dt.timezone(dt.timedelta(hours=9))
T0_US = 1_784_510_878_000_000  # 2026-07-20 10:27:58 KST


def trades(n: int) -> pa.Table:
    """``n`` trades of one partition, sorted by (ts, seq), the other columns null or constant."""
    schema = SCHEMAS["trades"]
    cols: dict[str, pa.Array] = {}
    for f in schema:
        if pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array([T0_US + i * 1000 for i in range(n)], f.type)
        elif f.name == "seq":
            cols[f.name] = pa.array([(i << 16) | 1 for i in range(n)], f.type)
        elif f.name == "venue":
            cols[f.name] = pa.array(["KRX"] * n, f.type)
        elif not f.nullable:
            cols[f.name] = pa.array([70_000 + i % 7 for i in range(n)], f.type)
        else:
            cols[f.name] = pa.nulls(n, f.type)
    return pa.table(cols, schema=schema)


def test_times_and_seq_are_delta_encoded_strings_dictionary_others_plain(tmp_path: Path) -> None:
    t = trades(2000)
    out = tmp_path / "part.parquet"
    write_compacted(t, out)
    rg = pq.ParquetFile(out).metadata.row_group(0)
    enc = {rg.column(i).path_in_schema: set(rg.column(i).encodings) for i in range(rg.num_columns)}
    for name in ("ts", "recv_ts", "seq"):
        assert "DELTA_BINARY_PACKED" in enc[name], name
    assert "RLE_DICTIONARY" in enc["venue"]
    assert enc["price"].isdisjoint({"DELTA_BINARY_PACKED", "RLE_DICTIONARY", "BYTE_STREAM_SPLIT"})
    assert compact_write_options(t.schema)["compression_level"] == COMPACT_ZSTD_LEVEL
    # smaller than the same rows written as the live sink does (zstd default level, plain times)
    live = tmp_path / "live.parquet"
    pq.write_table(t, live, compression="zstd")
    assert out.stat().st_size < live.stat().st_size


def test_pyarrow_pandas_and_duckdb_read_kst_times_back(tmp_path: Path) -> None:
    t = trades(50)
    out = tmp_path / "part.parquet"
    write_compacted(t, out)
    back = pq.read_table(out)
    assert back.equals(t)
    assert str(back.schema.field("ts").type) == "timestamp[us, tz=Asia/Seoul]"
    first = back.to_pandas()["ts"].iloc[0]
    assert (first.hour, first.minute, str(first.tz)) == (10, 27, "Asia/Seoul")
    got = duckdb.sql(f"SELECT min(ts) AS m, count(*) AS n, sum(seq) AS s FROM '{out}'").fetchall()[0]
    assert got[0].astimezone(KST) == dt.datetime(2026, 7, 20, 10, 27, 58, tzinfo=KST)
    assert (got[1], got[2]) == (50, sum((i << 16) | 1 for i in range(50)))
