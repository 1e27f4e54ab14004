"""DuckDB over the recorder's store: views ``trades``, ``orderbook``, ``gaps``, ``rejects``,
``backfill``, ad-hoc SQL and named queries.

``connect(data_dir)`` returns a DuckDB connection whose views read the Hive-partitioned
Parquet in place (nothing is copied): filters on ``date`` and ``symbol`` prune folders, so
``WHERE date = '2026-07-20' AND symbol = '005930'`` opens only that folder's files.
``symbol`` is read as VARCHAR (``005930`` is not a number) and ``date`` as DATE. The session
time zone is Asia/Seoul, so times show and bucket in KST. The macro
``book_seconds(ts, next_ts, bucket, width)`` gives the seconds an order-book snapshot stands
within its time bucket (the time weighting of ``spread`` and ``imbalance``), and
``item_venue(item)`` the venue of a Kiwoom item (``'005930_NX'`` → ``'NXT'``), as
:mod:`recorder.kiwoom.items` spells it.

The ``gaps`` view adds what backfills made of each gap: ``outcome`` (``healed``, ``partial``,
``unhealable``, or null when no backfill found trades missing in it), ``healed`` (shares
filled) and ``residual`` (shares still missing), from the latest ``backfill`` row of each hole.

Named queries (``bars``, ``spread``, ``imbalance``, ``coverage``, ``vwap``) are ``.sql``
files in this package with bound ``$name`` parameters (see :mod:`queries.named`)::

    import queries
    t = queries.run("bars", "data", start="2026-07-20", end="2026-07-20", symbol="005930")
    df = t.to_pandas()            # or polars.from_arrow(t)
    queries.named()["bars"].signature   # 'start date, end date, symbol varchar = NULL, …'

Every function returns a ``pyarrow.Table``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from queries.named import NamedQuery, NamedQueryError, Param, QueryError, duckdb_message, get, named
from recorder.errors import StoreError
from recorder.kiwoom.fields import MARKET_TABLES, TABLES
from recorder.kiwoom.items import SUFFIX_VENUE
from recorder.kiwoom.schema import SCHEMAS, file_schema
from recorder.store.layout import hive_types, parse_part, part_glob

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

__all__ = [
    "NamedQuery",
    "NamedQueryError",
    "Param",
    "QueryError",
    "connect",
    "get",
    "named",
    "run",
    "sql",
]


def _has_parts(data_dir: Path, table: str) -> bool:
    return any(parse_part(p.relative_to(data_dir)) for p in data_dir.glob(part_glob(table)))


def _has_objects(con: duckdb.DuckDBPyConnection, root: str, table: str) -> bool:
    rows = con.execute("SELECT file FROM glob(?)", [f"{root}/{part_glob(table)}"]).fetchall()
    return any(parse_part(str(f).removeprefix(root + "/")) for (f,) in rows)


def _root(data_dir: Path | str | S3Store) -> Path | S3Store:
    from recorder.store.objstore import S3Store, parse_location

    return data_dir if isinstance(data_dir, S3Store) else parse_location(str(data_dir))


def connect(
    data_dir: Path | str | S3Store,
    con: duckdb.DuckDBPyConnection | None = None,
    *,
    union_by_name: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the store at ``data_dir``.

    A table with no part files yet is an empty view with the right columns.

    Args:
        data_dir: the store: a folder, or ``s3://bucket/prefix`` (objects read in place through
            :func:`recorder.store.s3duckdb.register_duckdb`).
        con: add the views to this connection instead of a new in-memory one.
        union_by_name: unify the columns of all part files by name. Off by default because
            DuckDB then opens *every* part file's footer whenever a view is bound, whatever
            the filters, which defeats partition pruning (the store is one schema, derived
            from ``recorder.kiwoom.fields``). Turn it on for a store that mixes files written by
            versions with different columns.
    """
    where = _root(data_dir)
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Seoul'")  # show and bucket times in KST, the market's clock
    # DuckDB draws a progress bar on stdout for long queries: it would corrupt CSV/JSON output.
    con.execute("SET enable_progress_bar = false")
    con.execute(_BOOK_SECONDS)
    con.execute(_item_venue_macro())
    if isinstance(where, Path):
        root, has = where.as_posix(), functools.partial(_has_parts, where)
    else:
        from recorder.store.s3duckdb import register_duckdb

        root = register_duckdb(con, where)
        has = functools.partial(_has_objects, con, root)
    for table in TABLES:
        view = f"_{table}_files" if table == "gaps" else table
        if has(table):
            path = f"{root}/{part_glob(table)}".replace("'", "''")
            hive = hive_types(table)
            # Without union_by_name the first file (glob order: oldest date) gives the
            # columns and the others are matched to it by name when they are read; files in
            # partitions the filters exclude are never opened.
            con.execute(
                f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet('{path}', "
                f"hive_partitioning = true, hive_types = {hive}, "
                f"union_by_name = {'true' if union_by_name else 'false'})"
            )
        else:
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {_empty_select(table)}")
    con.execute(_GAPS_WITH_OUTCOMES)
    return con


def _empty_select(table: str) -> str:
    """A SELECT of no rows with the table's columns and types (plus ``date``), in SQL alone:
    registering an empty Arrow table instead makes DuckDB import pandas (0.2 s per command)."""
    # Hive partition columns come last, as in a view over files: the file's columns, then
    # symbol (market tables), then date.
    fields = list(file_schema(table)) + ([SCHEMAS[table].field("symbol")] if table in MARKET_TABLES else [])
    cols = [f'NULL::{_sql_type(f.type)} AS "{f.name}"' for f in fields]
    return f"SELECT {', '.join(cols)}, NULL::DATE AS date WHERE false"


def _sql_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_list(t):
        return _sql_type(t.value_type) + "[]"
    return {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.string(): "VARCHAR"}[t]


# Each hole's latest backfill outcome, summed per gap: healed when every hole of the gap was
# healed, partial when some were, unhealable when none; null when no backfill found a hole.
_GAPS_WITH_OUTCOMES = """
CREATE OR REPLACE VIEW gaps AS
WITH latest AS (
    SELECT * FROM backfill
    QUALIFY row_number() OVER (PARTITION BY start_ts, symbol, venue ORDER BY checked_ts DESC) = 1
), per_gap AS (
    SELECT gap_start_ts, gap_kind, gap_seq,
           -- BIGINT, not DuckDB's HUGEINT sum (as in the named queries): exact, and the type
           -- every reader (Arrow int64, Spark LongType, pandas) has.
           CAST(sum(filled) AS BIGINT) AS healed,
           CAST(sum(CASE WHEN outcome = 'healed' THEN 0 ELSE missing END) AS BIGINT) AS residual,
           bool_and(outcome = 'healed') AS all_healed,
           bool_or(outcome = 'healed') AS any_healed
    FROM latest WHERE gap_seq IS NOT NULL
    GROUP BY ALL
)
SELECT g.*,
       CASE WHEN p.gap_seq IS NULL THEN NULL WHEN p.all_healed THEN 'healed'
            WHEN p.any_healed THEN 'partial' ELSE 'unhealable' END AS outcome,
       p.healed, p.residual
FROM _gaps_files g
LEFT JOIN per_gap p ON g.start_ts = p.gap_start_ts AND g.kind = p.gap_kind AND g.seq = p.gap_seq
"""


# A 0D snapshot shows the whole book, which stands from its ts until the next snapshot of the
# same stream (next_ts), but only within the snapshot's own bucket: capped at the bucket's end,
# and standing until then when there is no next snapshot (the day's last).
_BOOK_SECONDS = """
CREATE OR REPLACE MACRO book_seconds(ts, next_ts, bucket, width) AS
    (epoch_us(least(coalesce(next_ts, bucket + width), bucket + width)) - epoch_us(ts)) / 1e6
"""


def _item_venue_macro() -> str:
    """``item_venue(item)``: the venue of an item, from the one table of item suffixes."""
    # The suffix follows the 6-character code; anything else (not an item) has no venue.
    whens = " ".join(f"WHEN '{suffix}' THEN '{venue}'" for suffix, venue in SUFFIX_VENUE.items())
    return f"CREATE OR REPLACE MACRO item_venue(item) AS CASE substr(item, 7) {whens} END"


def _connect_or_raise(data_dir: Path | str | S3Store) -> duckdb.DuckDBPyConnection:
    try:
        return connect(data_dir)
    except duckdb.Error as exc:  # e.g. the first part file is not Parquet
        raise StoreError(f"cannot read the store at {data_dir}: {duckdb_message(exc)}") from exc
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc


def sql(data_dir: Path | str | S3Store, query: str, params: dict[str, Any] | None = None) -> pa.Table:
    """Run ``query`` over the store and return an Arrow table.

    Args:
        data_dir: the store.
        query: SQL over the views; ``$name`` placeholders are bound from ``params``.
        params: values for the query's ``$name`` placeholders (bound, never pasted).

    Raises:
        QueryError: DuckDB rejected the query; the message is DuckDB's.
        StoreError: the store could not be read.
    """
    con = _connect_or_raise(data_dir)
    try:
        rel = con.sql(query, params=params or None)
        if rel is None:  # a statement without a result (e.g. SET)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(duckdb_message(exc)) from exc
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    finally:
        con.close()


def run(name: str, data_dir: Path | str | S3Store, /, **params: Any) -> pa.Table:
    """Run the named query ``name`` over the store with ``params`` bound.

    Parameters not given take the defaults the query's file declares; values may be
    Python objects (``datetime.date``) or strings DuckDB casts to the declared type
    (``"2026-07-20"``, ``"5 minutes"``). ``queries.run(...).to_pandas()`` gives a DataFrame.

    Raises:
        NamedQueryError: no such query, or unknown, missing or ill-typed parameters
            (also a ConfigError).
        QueryError: DuckDB failed while running it.
        StoreError: the store could not be read.
    """
    query = get(name)
    con = _connect_or_raise(data_dir)
    try:
        return query.execute(con, params)
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    finally:
        con.close()
