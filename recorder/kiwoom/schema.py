"""Arrow schemas of the stored tables, derived from the FID tables in :mod:`recorder.kiwoom.fields`.

The storage layout (docs/architecture.md, "The store") is a contract::

    DATA_DIR/trades/date=YYYY-MM-DD/symbol=XXXXXX/part-*.parquet
    DATA_DIR/orderbook/date=YYYY-MM-DD/symbol=XXXXXX/part-*.parquet
    DATA_DIR/gaps/date=YYYY-MM-DD/part-*.parquet
    DATA_DIR/rejects/date=YYYY-MM-DD/part-*.parquet

Part files carry types, not descriptions: a field's Kiwoom name and FID would cost ~20 KB of
footer in every order-book file. :func:`data_dictionary` renders them once, as
``docs/data-dictionary.md``.

Timestamps are ``timestamp[us, tz=Asia/Seoul]``. ``date`` and ``symbol`` are Hive partition
keys and are not stored inside the files. Read ``symbol`` as a string (``005930`` is not a
number): :func:`partitioning` gives the right types to ``pyarrow.dataset``, and DuckDB
needs ``hive_types={'symbol': 'VARCHAR'}`` (``queries.connect`` does this).
"""

from __future__ import annotations

import pyarrow as pa

from recorder.kiwoom.fields import BASE_COLUMNS, MARKET_TABLES, SOURCE, TABLE_TYPES, Kind, columns
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
        elif name in ("side", SOURCE):
            fields.append(pa.field(name, pa.string()))
        else:
            f = kinds[name]
            fields.append(pa.field(name, _KIND_TYPES[f.kind], nullable=not f.required))
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

#: What a backfill made of each hole in the trades (one row per hole and run that changed it).
BACKFILL_SCHEMA = pa.schema(
    [
        pa.field("start_ts", TIMESTAMP, nullable=False),  # the recorded trade before the hole
        pa.field("end_ts", TIMESTAMP, nullable=False),  # the recorded trade after it
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("venue", pa.string(), nullable=False),
        pa.field("gap_start_ts", TIMESTAMP),  # the gaps row the hole falls in (null: none)
        pa.field("gap_kind", pa.string()),
        pa.field("gap_seq", pa.int64()),
        pa.field("missing", pa.int64(), nullable=False),  # shares the cum_volume says are missing
        pa.field("filled", pa.int64(), nullable=False),  # shares written (= missing when healed)
        pa.field("trades", pa.int64(), nullable=False),  # rows written
        pa.field("outcome", pa.string(), nullable=False),  # healed | unhealable
        pa.field("detail", pa.string()),
        pa.field("checked_ts", TIMESTAMP, nullable=False),
        pa.field("seq", pa.int64(), nullable=False),  # the trade after the hole
    ],
    metadata={"table": "backfill"},
)


#: Full logical schema of each table (including the partition column ``symbol``).
SCHEMAS: dict[str, pa.Schema] = {
    "trades": _market_schema("trades"),
    "orderbook": _market_schema("orderbook"),
    "gaps": GAPS_SCHEMA,
    "rejects": REJECTS_SCHEMA,
    "backfill": BACKFILL_SCHEMA,
}


#: What the columns that no FID gives mean (the data dictionary's words).
COLUMN_DOCS = {
    "ts": "exchange time (KST, to the second) of the entry; for the order book its FID 21",
    "recv_ts": "when the recorder received the frame (KST, microseconds)",
    "seq": "order of receipt: the journal frame number shifted left 16 bits, plus the entry's index",
    "symbol": "six-character code without venue suffix (a string: `005930`); partition key",
    "venue": "`KRX`, `NXT` or `SOR`, from the item's suffix or FID 9081",
    "side": "`buy` or `sell`: the sign of FID 15 (volume is its absolute value)",
    "source": "`ws`: received on the WebSocket; `rest`: healed from the REST tick chart (ka10079)",
    "date": "KST trading date `YYYY-MM-DD`; partition key",
    "start_ts": "when the hole began (the last good moment before it)",
    "end_ts": "when data flowed again; null while the hole is open",
    "kind": "why: disconnect, stale, kicked, reg_rejected, login_failed, restart, continuity",
    "detail": "human-readable detail (close code, refusal text, missing quantity)",
    "symbols": "the items the hole concerns; null means every registered item",
    "reason": "why the entry was refused (which FID, which value)",
    "raw": "the entry's JSON exactly as received",
    "gap_start_ts": "the `gaps` row the hole falls in: its start_ts (null: no gap row)",
    "gap_kind": "that gap's kind",
    "gap_seq": "that gap's seq",
    "missing": "shares the cum_volume difference says are missing between the two trades",
    "filled": "shares written with source = 'rest' (equal to missing when healed)",
    "trades": "rows written",
    "outcome": "`healed` (the fill adds up to missing) or `unhealable` (nothing written; see detail)",
    "checked_ts": "when the backfill ran",
}


#: Where a column means something else in one table.
TABLE_COLUMN_DOCS = {
    "backfill": {
        "start_ts": "exchange time of the recorded trade before the hole",
        "end_ts": "exchange time of the recorded trade after the hole",
        "symbol": "six-character code (a column here, not a partition key)",
        "seq": "seq of the recorded trade after the hole",
        "detail": "what was filled, or why the hole cannot be healed",
    }
}


def data_dictionary() -> str:
    """Every stored column of every table, its type, FID and meaning, as Markdown."""
    from recorder.kiwoom.fields import REAL_TYPES

    by_table = {rt.table: rt for rt in REAL_TYPES.values()}
    out = [
        "# Data dictionary",
        "",
        "Generated from the recorder's FID tables (`python -m tests.test_docs dictionary`); a test",
        "keeps it in step. Part files carry the types; the meanings live here, written once.",
        "Prices are KRW, absolute (the sign Kiwoom sends is direction, not value); quantities are shares.",
    ]
    for table, schema in SCHEMAS.items():
        rt = by_table.get(table)
        fids = {f.column: f for f in rt.fields} if rt else {}
        title = f"`{table}` (Kiwoom {rt.code} {rt.name})" if rt else f"`{table}`"
        out += ["", f"## {title}", "", "| column | type | FID | meaning |", "|---|---|---|---|"]
        names = [*schema.names, "date"]
        for name in names:
            f = fids.get(name)
            typ = str(schema.field(name).type) if name in schema.names else "string"
            required = f is not None and f.required
            if f is not None:
                meaning = f.doc
            else:
                meaning = TABLE_COLUMN_DOCS.get(table, {}).get(name) or COLUMN_DOCS[name]
            meaning = meaning.replace("|", "\\|")
            fid = f.fid if f is not None else ("15" if name == "side" else "")
            out.append(f"| `{name}` | {typ}{' (required)' if required else ''} | {fid} | {meaning} |")
    return "\n".join(out) + "\n"


def file_schema(table: str) -> pa.Schema:
    """The schema inside a part file: the logical schema less the partition columns."""
    schema = SCHEMAS[table]
    if table in MARKET_TABLES:  # in `backfill`, symbol is a column, not a folder
        schema = schema.remove(schema.get_field_index("symbol"))
    return schema


def partitioning(table: str) -> pa.dataset.Partitioning:
    """Hive partitioning with string partition values, for ``pyarrow.dataset.dataset``."""
    import pyarrow.dataset as ds

    fields = [pa.field("date", pa.string())]
    if table in MARKET_TABLES:
        fields.append(pa.field("symbol", pa.string()))
    return ds.partitioning(pa.schema(fields), flavor="hive")
