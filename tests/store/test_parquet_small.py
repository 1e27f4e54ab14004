"""The small-file Parquet writer: its files read back as the same table everywhere.

Each file is compared with the rows it was given (pyarrow, schema metadata included), with
the file pyarrow writes for the same rows (DuckDB: column types and rows), and its
statistics with those pyarrow computes.
"""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.kiwoom.schema import SCHEMAS
from recorder.store.encoding import STAT_COLUMNS
from recorder.store.parquet_small import CREATED_BY, supports, write_files

_TS = pa.timestamp("us", tz="Asia/Seoul")
_MIXED = pa.schema(
    [
        pa.field("ts", _TS, nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("venue", pa.string(), nullable=False),
        pa.field("price", pa.int64()),
        pa.field("rate", pa.float64()),
        pa.field("side", pa.string()),
        pa.field("end_ts", _TS),
    ],
    metadata={b"table": b"mixed"},
)
_STATS = frozenset({"ts", "seq", "venue", "price", "end_ts"})

_I64 = st.integers(-(2**63), 2**63 - 1)
_ROW = st.tuples(
    st.integers(0, 2**50),
    _I64,
    st.text(max_size=6),
    st.none() | _I64,
    st.none() | st.floats(allow_nan=False),
    st.none() | st.text(max_size=12),
    st.none() | st.integers(-(2**50), 2**50),
)


def _table(rows: list[tuple]) -> pa.Table:
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in _MIXED]
    return pa.table([pa.array(c, f.type) for c, f in zip(cols, _MIXED, strict=True)], schema=_MIXED)


def _read(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def _stats(data: bytes) -> dict[str, tuple]:
    rg = pq.read_metadata(io.BytesIO(data)).row_group(0)
    out = {}
    for i in range(rg.num_columns):
        c = rg.column(i)
        s = c.statistics
        if s is not None:
            out[c.path_in_schema] = (s.has_min_max and s.min, s.has_min_max and s.max, s.null_count)
    return out


@settings(max_examples=60)
@given(st.lists(_ROW, min_size=1, max_size=40), st.data())
def test_each_file_reads_back_as_its_rows_with_pyarrows_statistics(rows: list[tuple], data) -> None:
    t = _table(rows)
    cuts = data.draw(
        st.lists(st.integers(1, len(rows) - 1), unique=True, max_size=5) if len(rows) > 1 else st.just([])
    )
    starts = [0, *sorted(cuts), len(rows)]
    files = write_files(t, starts, stats=_STATS)
    assert len(files) == len(starts) - 1
    for data_, a, b in zip(files, starts, starts[1:], strict=False):
        want = t.slice(a, b - a)
        got = _read(data_)
        assert got.schema.equals(want.schema, check_metadata=True)
        assert got.equals(want)
        theirs = io.BytesIO()
        pq.write_table(want, theirs, write_statistics=sorted(_STATS))
        assert _stats(data_) == _stats(theirs.getvalue())


@pytest.mark.parametrize("table", ["trades", "orderbook"])
def test_store_tables_read_the_same_in_duckdb_as_pyarrows_files(table: str, tmp_path: Path) -> None:
    """The store's own schemas, with nulls in every nullable column: DuckDB sees the same
    column types and the same rows in our file as in pyarrow's, and the codec is zstd."""
    rng = np.random.default_rng(5)
    n = 300
    schema = SCHEMAS[table]
    arrays = []
    for f in schema:
        mask = (rng.random(n) < 0.3) if f.nullable else None
        if pa.types.is_string(f.type):
            values = rng.choice(["KRX", "NXT", "", "매수", "x" * 40], n)
            arrays.append(pa.array(values, f.type, mask=mask))
        elif pa.types.is_floating(f.type):
            arrays.append(pa.array(rng.normal(0, 50, n), f.type, mask=mask))
        elif pa.types.is_timestamp(f.type):
            arrays.append(pa.array(rng.integers(0, 2**52, n), pa.int64(), mask=mask).cast(f.type))
        else:
            arrays.append(pa.array(rng.integers(-(2**62), 2**62, n), f.type, mask=mask))
    t = pa.Table.from_arrays(arrays, schema=schema)
    assert supports(schema)
    starts = [0, 1, 2, 50, 299, 300]
    files = write_files(t, starts, stats=STAT_COLUMNS)
    con = duckdb.connect()
    for i, data in enumerate(files):
        ours, theirs = tmp_path / f"ours{i}.parquet", tmp_path / f"theirs{i}.parquet"
        ours.write_bytes(data)
        want = t.slice(starts[i], starts[i + 1] - starts[i])
        pq.write_table(want, theirs)
        assert _read(data).equals(want)
        meta = pq.read_metadata(ours)
        assert meta.created_by == CREATED_BY.decode()
        assert {meta.row_group(0).column(j).compression for j in range(meta.num_columns)} == {"ZSTD"}
        assert (
            con.execute(f"DESCRIBE SELECT * FROM '{ours}'").fetchall()
            == con.execute(f"DESCRIBE SELECT * FROM '{theirs}'").fetchall()
        )
        for a, b in ((ours, theirs), (theirs, ours)):
            assert con.execute(f"SELECT * FROM '{a}' EXCEPT ALL SELECT * FROM '{b}'").fetchall() == []


def test_types_it_does_not_write_are_refused() -> None:
    schema = SCHEMAS["gaps"]  # a list column
    assert not supports(schema)
    with pytest.raises(TypeError):
        write_files(schema.empty_table(), [0])
