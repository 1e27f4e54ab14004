"""DuckDB over the recorder's store: views ``trades``, ``orderbook``, ``gaps``, ``rejects``.

``connect(data_dir)`` returns a DuckDB connection whose views read the Hive-partitioned
Parquet in place (nothing is copied): filters on ``date`` and ``symbol`` prune folders.
``symbol`` is read as VARCHAR (``005930`` is not a number) and ``date`` as DATE.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from recorder.errors import RecorderError, StoreError
from recorder.schema import SCHEMAS

_GLOBS = {
    "trades": "trades/*/*/*.parquet",
    "orderbook": "orderbook/*/*/*.parquet",
    "gaps": "gaps/*/*.parquet",
    "rejects": "rejects/*/*.parquet",
}


class QueryError(RecorderError):
    """DuckDB refused a query (its message is kept)."""


def _has_parts(data_dir: Path, table: str) -> bool:
    return any(data_dir.glob(_GLOBS[table]))


def connect(data_dir: Path | str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the store at ``data_dir``.

    A table with no part files yet is an empty view with the right columns.
    """
    data_dir = Path(data_dir)
    con = con or duckdb.connect()
    con.execute("SET TimeZone = 'Asia/Seoul'")  # show and bucket times in KST, the market's clock
    for table, glob in _GLOBS.items():
        if _has_parts(data_dir, table):
            path = (data_dir / glob).as_posix().replace("'", "''")
            hive = (
                "{'date': DATE, 'symbol': VARCHAR}" if table in ("trades", "orderbook") else "{'date': DATE}"
            )
            con.execute(
                f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{path}', "
                f"hive_partitioning = true, hive_types = {hive}, union_by_name = true)"
            )
        else:
            empty = SCHEMAS[table].empty_table()
            empty = empty.append_column("date", pa.array([], pa.date32()))
            con.register(f"_empty_{table}", empty)
            con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _empty_{table}")
    return con


def sql(data_dir: Path | str, query: str, params: dict[str, Any] | None = None) -> pa.Table:
    """Run ``query`` over the store and return an Arrow table.

    Raises:
        QueryError: DuckDB rejected the query; the message is DuckDB's.
    """
    con = connect(data_dir)
    try:
        rel = con.sql(query, params=params or None)
        if rel is None:  # a statement without a result (e.g. SET)
            return pa.table({})
        return rel.to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(str(exc).strip()) from exc
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    finally:
        con.close()
