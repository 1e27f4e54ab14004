"""Arrow schemas of the stored tables, derived from the FID tables in :mod:`recorder.kiwoom.fields`.

The storage layout (docs/architecture.md, "The store") is a contract::

    DATA_DIR/trades/date=YYYY-MM-DD/symbol=XXXXXX/part-*.parquet
    DATA_DIR/orderbook/date=YYYY-MM-DD/symbol=XXXXXX/part-*.parquet
    DATA_DIR/gaps/date=YYYY-MM-DD/part-*.parquet
    DATA_DIR/rejects/date=YYYY-MM-DD/part-*.parquet

Timestamps are ``timestamp[us, tz=Asia/Seoul]``. ``date`` and ``symbol`` are Hive partition
keys and are not stored inside the files. Read ``symbol`` as a string (``005930`` is not a
number): :func:`partitioning` gives the right types to ``pyarrow.dataset``, and DuckDB
needs ``hive_types={'symbol': 'VARCHAR'}`` (``queries.connect`` does this).
"""

from __future__ import annotations

import pyarrow as pa

from recorder.kiwoom.fields import BASE_COLUMNS, MARKET_TABLES, TABLE_TYPES, Kind, columns
from recorder.kiwoom.time import TZ_NAME

TZ = TZ_NAME
# Microseconds: DuckDB 2 has full arithmetic and date functions for TIMESTAMPTZ but not for
# TIMESTAMPTZ_NS, and Kiwoom's exchange times have one-second resolution. The journal keeps
# receive times in nanoseconds.
TIMESTAMP = pa.timestamp("us", tz=TZ)
_TIMESTAMP_NS = pa.timestamp("ns", tz=TZ)


def timestamps(ns: list[int | None]) -> pa.Array:
    """Epoch nanoseconds → the stored timestamp type (truncated to microseconds)."""
    return pa.array(ns, _TIMESTAMP_NS).cast(TIMESTAMP, safe=False)


_KIND_TYPES = {
    Kind.PRICE: pa.int64(),
    Kind.INT: pa.int64(),
    Kind.SIDE_VOLUME: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.TEXT: pa.string(),
}
_BASE_TYPES = {
    "ts": TIMESTAMP,
    "recv_ts": TIMESTAMP,
    "seq": pa.int64(),
    "symbol": pa.string(),
    "venue": pa.string(),
}


def _market_schema(table: str) -> pa.Schema:
    rt = TABLE_TYPES[table]
    kinds = {f.column: f for f in rt.fields}
    fields = []
    for name in columns(rt):
        if name in BASE_COLUMNS:
            fields.append(pa.field(name, _BASE_TYPES[name], nullable=name == "symbol"))
        elif name == "side":
            fields.append(pa.field(name, pa.string(), metadata={"doc": "buy/sell from the sign of FID 15"}))
        else:
            f = kinds[name]
            meta = {"fid": f.fid, "doc": f.doc}
            fields.append(pa.field(name, _KIND_TYPES[f.kind], nullable=not f.required, metadata=meta))
    return pa.schema(fields, metadata={"kiwoom_type": rt.code, "table": table})


GAPS_SCHEMA = pa.schema(
    [
        pa.field("start_ts", TIMESTAMP, nullable=False),
        pa.field("end_ts", TIMESTAMP),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("symbols", pa.list_(pa.string())),
        pa.field("seq", pa.int64(), nullable=False),
    ],
    metadata={"table": "gaps"},
)

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("recv_ts", TIMESTAMP, nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string(), nullable=False),
    ],
    metadata={"table": "rejects"},
)

#: Full logical schema of each table (including the partition column ``symbol``).
SCHEMAS: dict[str, pa.Schema] = {
    "trades": _market_schema("trades"),
    "orderbook": _market_schema("orderbook"),
    "gaps": GAPS_SCHEMA,
    "rejects": REJECTS_SCHEMA,
}


def file_schema(table: str) -> pa.Schema:
    """The schema inside a part file: the logical schema less the partition columns."""
    schema = SCHEMAS[table]
    if "symbol" in schema.names:
        schema = schema.remove(schema.get_field_index("symbol"))
    return schema


def partitioning(table: str) -> pa.dataset.Partitioning:
    """Hive partitioning with string partition values, for ``pyarrow.dataset.dataset``."""
    import pyarrow.dataset as ds

    fields = [pa.field("date", pa.string())]
    if table in MARKET_TABLES:
        fields.append(pa.field("symbol", pa.string()))
    return ds.partitioning(pa.schema(fields), flavor="hive")
