"""Spark over the recorder's store: the DuckDB views and named queries as DataFrames.

Needs the ``[spark]`` extra (``pip install 'kiwoom-recorder[spark]'``); ``import recorder``
never loads pyspark, only ``import recorder.spark`` does::

    from recorder import spark as rs

    spark = rs.session("local[*]")                    # or your cluster's session
    trades = rs.table(spark, "data", "trades")        # the columns and types of the DuckDB view
    bars = rs.named(spark, "data", "bars", start="2026-07-20", end="2026-07-20", symbol="005930")

:func:`table` reads the Hive-partitioned Parquet in place with an explicit schema, so
``symbol`` is a string (a plain ``spark.read.parquet`` infers ``005930`` as the integer 5930)
and ``date`` a date; filters on them prune folders as in DuckDB. Times are ``TimestampType``
(instants): Spark shows them in ``spark.sql.session.timeZone``, which :data:`SESSION_CONF`
sets to Asia/Seoul, the market's clock, as ``queries.connect`` does for DuckDB. The named
queries bucket in KST whatever the session's time zone.

``data_dir`` is a local folder (it must exist) or a URL Spark's filesystems resolve
(``s3a://bucket/prefix``, ``hdfs://…``), passed through as given. docs/spark.md has the
details, and how DuckDB, Polars and pandas read the store.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from queries.named import NamedQuery, NamedQueryError, get
from recorder.errors import ConfigError, StoreError
from recorder.kiwoom.fields import TABLES
from recorder.kiwoom.schema import SCHEMAS
from recorder.kiwoom.time import TZ_NAME
from recorder.store.layout import partition_keys, store_dir

try:
    from pyspark.errors import AnalysisException
    from pyspark.sql import Column, DataFrame, SparkSession, Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError:
    raise ImportError("recorder.spark needs pyspark: pip install 'kiwoom-recorder[spark]'") from None

__all__ = ["SESSION_CONF", "named", "schema", "session", "table"]

#: Settings a session reading the store should have: times shown in KST, as in DuckDB.
SESSION_CONF: dict[str, str] = {"spark.sql.session.timeZone": TZ_NAME}

_PARTITION_TYPES: dict[str, T.DataType] = {"date": T.DateType(), "symbol": T.StringType()}
# What the gaps view adds from the backfill table (see queries.connect).
_OUTCOME_FIELDS = [
    T.StructField("outcome", T.StringType()),
    T.StructField("healed", T.LongType()),
    T.StructField("residual", T.LongType()),
]


def session(master: str | None = None, app_name: str = "kiwoom-recorder", **conf: str) -> SparkSession:
    """A Spark session with :data:`SESSION_CONF` set (``conf`` is added on top).

    Args:
        master: ``local[*]``, ``spark://host:7077``…; None keeps what ``spark-submit`` or the
            environment gives.
        app_name: the application's name in Spark's UI.
        conf: more settings, e.g. ``**{"spark.sql.shuffle.partitions": "8"}``.

    An already running session is returned with these settings applied to it.
    """
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in {**SESSION_CONF, **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


# --------------------------------------------------------------------------- tables


def schema(name: str) -> T.StructType:
    """The Spark schema :func:`table` gives ``name``: the DuckDB view's columns, in its order.

    The stored columns, then the partition columns (``date``, then ``symbol`` for the market
    tables); ``gaps`` ends with its backfill outcome (``outcome``, ``healed``, ``residual``).

    Raises:
        ConfigError: ``name`` is not a table of the store.
    """
    fields = _files_schema(_table_name(name)).fields
    return T.StructType(fields + _OUTCOME_FIELDS if name == "gaps" else fields)


def table(spark: SparkSession, data_dir: str | os.PathLike[str], name: str) -> DataFrame:
    """Table ``name`` of the store at ``data_dir`` (``trades``, ``orderbook``, ``gaps``,
    ``rejects`` or ``backfill``) as a DataFrame with :func:`schema`'s columns.

    Reads every ``*.parquet`` of the table's partition folders in place (names starting
    with ``.`` or ``_`` are Spark's hidden files: temporary files are never read); a table
    with no files yet is an empty DataFrame. ``gaps`` carries what the backfills made of
    each gap, as the DuckDB view does.

    Raises:
        ConfigError: an unknown table, or a local ``data_dir`` that is not a folder.
        StoreError: Spark could not list or read the table's files.
    """
    name = _table_name(name)
    root = _root(data_dir)
    if name == "gaps":
        return _with_outcomes(_read(spark, root, "gaps"), _read(spark, root, "backfill"))
    return _read(spark, root, name)


def _table_name(name: str) -> str:
    if name not in TABLES:
        raise ConfigError(f"no table {name!r}; tables are {', '.join(TABLES)}")
    return name


def _root(data_dir: str | os.PathLike[str]) -> str:
    """The store's location as Spark takes it: a URL as given, a local folder as ``file://``
    (so a cluster whose default filesystem is HDFS still reads the local folder)."""
    text = os.fspath(data_dir)
    if "://" in text:
        return text.rstrip("/")
    return f"file://{store_dir(text, must_exist=True).resolve().as_posix()}"


def _spark_type(t: pa.DataType) -> T.DataType:
    if pa.types.is_timestamp(t):
        return T.TimestampType() if t.tz else T.TimestampNTZType()
    if pa.types.is_list(t):
        return T.ArrayType(_spark_type(t.value_type))
    types: dict[pa.DataType, T.DataType] = {
        pa.int64(): T.LongType(),
        pa.float64(): T.DoubleType(),
        pa.string(): T.StringType(),
    }
    return types[t]


def _files_schema(table: str) -> T.StructType:
    """The columns inside the part files, then the Hive partition columns with their types."""
    keys = partition_keys(table)
    stored = [T.StructField(f.name, _spark_type(f.type)) for f in SCHEMAS[table] if f.name not in keys]
    return T.StructType(stored + [T.StructField(k, _PARTITION_TYPES[k]) for k in keys])


def _read(spark: SparkSession, root: str, table: str) -> DataFrame:
    base = f"{root}/{table}"
    want = _files_schema(table)
    try:
        # The explicit schema gives the partition columns their types (no inference of
        # symbol=005930 as an integer); basePath makes date= and symbol= columns.
        df = (
            spark.read.schema(want)
            .option("basePath", base)
            .option("pathGlobFilter", "*.parquet")
            .parquet(base)
        )
        df.schema  # noqa: B018  Spark Connect resolves lazily: find a missing folder here
    except AnalysisException as exc:
        if _condition(exc) == "PATH_NOT_FOUND":  # no file written yet
            return spark.createDataFrame([], want)
        raise StoreError(f"cannot read {table} of the store at {root}: {str(exc).splitlines()[0]}") from exc
    return df.select(*want.names)


def _condition(exc: AnalysisException) -> str | None:
    # getCondition since pyspark 4.0, getErrorClass before (deprecated since).
    get_condition = getattr(exc, "getCondition", None) or exc.getErrorClass
    return get_condition()


def _with_outcomes(gaps: DataFrame, backfill: DataFrame) -> DataFrame:
    """``gaps`` with each gap's backfill outcome: the DuckDB view's ``_GAPS_WITH_OUTCOMES``.

    Each hole's latest backfill row counts; a gap is healed when all its holes were,
    partial when some were, unhealable when none were, null when no backfill found a hole.
    """
    newest = Window.partitionBy("start_ts", "symbol", "venue").orderBy(F.col("checked_ts").desc())
    latest = backfill.withColumn("_n", F.row_number().over(newest)).where(F.col("_n") == 1)
    healed = F.col("outcome") == "healed"
    per_gap = (
        latest.where(F.col("gap_seq").isNotNull())
        .groupBy("gap_start_ts", "gap_kind", "gap_seq")
        .agg(
            F.sum("filled").alias("healed"),
            F.sum(F.when(healed, F.lit(0)).otherwise(F.col("missing"))).alias("residual"),
            F.bool_and(healed).alias("_all_healed"),
            F.bool_or(healed).alias("_any_healed"),
        )
    )
    on = (
        (gaps["start_ts"] == per_gap["gap_start_ts"])
        & (gaps["kind"] == per_gap["gap_kind"])
        & (gaps["seq"] == per_gap["gap_seq"])
    )
    outcome = (
        F.when(per_gap["gap_seq"].isNull(), F.lit(None).cast("string"))
        .when(F.col("_all_healed"), "healed")
        .when(F.col("_any_healed"), "partial")
        .otherwise("unhealable")
    )
    cols = [gaps[c] for c in gaps.columns]
    return gaps.join(per_gap, on, "left").select(*cols, outcome.alias("outcome"), "healed", "residual")


# --------------------------------------------------------------------------- named queries


def named(spark: SparkSession, data_dir: str | os.PathLike[str], name: str, /, **params: Any) -> DataFrame:
    """The rows of ``queries.run(name, data_dir, **params)``, computed by Spark.

    ``bars`` and ``vwap`` are available. Parameters are those of the query's ``.sql`` file
    (``queries.named()[name].signature``), checked and defaulted the same way: dates as
    ``datetime.date`` or ``"2026-07-20"``, ``symbol`` a code or an item (``005930_NX``),
    ``interval`` a DuckDB interval (``"5 minutes"``, ``"1 day"``). Columns, types, bucket
    alignment and row order are DuckDB's; the session's time zone changes only how times
    are shown.

    Raises:
        NamedQueryError: no such query, one Spark does not have, or bad parameters.
        ConfigError, StoreError: as :func:`table`.
    """
    query = get(name)
    build = _NAMED.get(name)
    if build is None:
        raise NamedQueryError(
            f"{name}: not available on Spark (Spark has {', '.join(_NAMED)}); run it with queries.run"
        )
    bound = _bind(query, params)  # a usage error before any Spark work
    return build(table(spark, data_dir, "trades"), bound)


def _bind(query: NamedQuery, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters checked, defaulted and cast by DuckDB's own rules, as Python values;
    an interval becomes a :class:`_Width`."""
    bound = query.bind(params)
    con = duckdb.connect()
    try:
        query.check_types(con, bound)
        out: dict[str, Any] = {}
        for p in query.params:
            v = bound[p.name]
            if v is None:
                out[p.name] = None
            elif p.type == "INTERVAL":
                out[p.name] = _Width.of(con, query.name, p.name, v)
            else:
                out[p.name] = con.execute(f"SELECT CAST($v AS {p.type})", {"v": v}).fetchone()[0]  # type: ignore[index]
        return out
    finally:
        con.close()


_DAY_US = 86_400_000_000
# DuckDB's time_bucket origins, taken in the bucketing time zone: Monday 2000-01-03 for
# widths in days or finer, 2000-01-01 for widths in months.
_ORIGIN_DATE = dt.date(2000, 1, 3)
_ORIGIN_MONTH = 2000 * 12


@dataclass(frozen=True, slots=True)
class _Width:
    """A bucket width as DuckDB's ``time_bucket(width, ts, 'Asia/Seoul')`` classifies it:
    exactly one of months, days or micros (the interval's parts, never converted)."""

    months: int
    days: int
    micros: int

    @classmethod
    def of(cls, con: duckdb.DuckDBPyConnection, query: str, param: str, value: Any) -> _Width:
        """``value`` cast to INTERVAL by DuckDB, split into its parts.

        Raises:
            NamedQueryError: a width time_bucket refuses (zero, negative, or mixing parts).
        """
        row = con.execute(
            "SELECT datepart('year', $v::INTERVAL) * 12 + datepart('month', $v::INTERVAL), "
            "datepart('day', $v::INTERVAL), datepart('hour', $v::INTERVAL) * 3600000000 "
            "+ datepart('minute', $v::INTERVAL) * 60000000 + datepart('microseconds', $v::INTERVAL)",
            {"v": value},
        ).fetchone()
        assert row is not None
        width = cls(*(int(x) for x in row))
        parts = [x for x in (width.months, width.days, width.micros) if x]
        if len(parts) != 1 or parts[0] < 0:
            raise NamedQueryError(
                f"{query}: parameter {param}={value!r}: a bucket width is a positive number of "
                "months, of days or of a time unit, not a mix"
            )
        return width

    def bucket(self, ts: Column) -> Column:
        """The start of the bucket holding ``ts``, as ``time_bucket(self, ts, 'Asia/Seoul')``."""
        if self.micros:
            # Below a day DuckDB buckets instants from the origin's instant, not wall clocks.
            origin = _epoch_us(dt.datetime.combine(_ORIGIN_DATE, dt.time(), _tz()))
            us = F.unix_micros(ts)
            return F.timestamp_micros(us - F.pmod(us - F.lit(origin), F.lit(self.micros)))
        day = _local_day(ts)
        if self.days:
            n = F.unix_date(day) - F.lit((_ORIGIN_DATE - dt.date(1970, 1, 1)).days)
            return _local_midnight(F.date_sub(day, F.pmod(n, F.lit(self.days))))
        month = F.year(day) * 12 + F.month(day) - 1 - F.lit(_ORIGIN_MONTH)
        start = month - F.pmod(month, F.lit(self.months)) + F.lit(_ORIGIN_MONTH)
        year = ((start - F.pmod(start, F.lit(12))) / 12).cast("int")
        return _local_midnight(F.make_date(year, F.pmod(start, F.lit(12)) + 1, F.lit(1)))


def _tz() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    return ZoneInfo(TZ_NAME)


def _epoch_us(t: dt.datetime) -> int:
    return (t - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _local_day(ts: Column) -> Column:
    """The KST calendar date of instant ``ts``, whatever the session's time zone."""
    wall = F.unix_micros(F.from_utc_timestamp(ts, TZ_NAME))  # KST wall clock as if UTC
    return F.date_from_unix_date(((wall - F.pmod(wall, F.lit(_DAY_US))) / _DAY_US).cast("int"))


def _local_midnight(day: Column) -> Column:
    """The instant KST date ``day`` begins."""
    wall = F.timestamp_micros(F.unix_date(day).cast("long") * F.lit(_DAY_US))
    return F.to_utc_timestamp(wall, TZ_NAME)


def _trades_in(trades: DataFrame, p: Mapping[str, Any]) -> DataFrame:
    """The named queries' WHERE: dates (inclusive), then symbol and venue when given."""
    df = trades.where(F.col("date").between(F.lit(p["start"]), F.lit(p["end"])))
    if p["symbol"] is not None:
        df = df.where(F.col("symbol") == F.lit(p["symbol"]))
    if p["venue"] is not None:
        df = df.where(F.col("venue") == F.lit(p["venue"]))
    return df


def _sums() -> list[Column]:
    """vwap, volume, value and trades as bars.sql and vwap.sql compute them (BIGINT sums)."""
    value = F.sum(F.col("price") * F.col("volume"))
    return [
        (value.cast("double") / F.nullif(F.sum("volume"), F.lit(0))).alias("vwap"),
        F.sum("volume").cast("long").alias("volume"),
        value.cast("long").alias("value"),
        F.count(F.lit(1)).alias("trades"),
    ]


def _bars(trades: DataFrame, p: Mapping[str, Any]) -> DataFrame:
    """queries/bars.sql: open and close are the first and last price by (ts, seq)."""
    first = F.min(F.struct("ts", "seq", "price"))["price"]
    last = F.max(F.struct("ts", "seq", "price"))["price"]
    vwap, volume, value, count = _sums()
    width: _Width = p["interval"]
    return (
        _trades_in(trades, p)
        .groupBy(width.bucket(F.col("ts")).alias("bucket"), "symbol", "venue")
        .agg(
            first.alias("open"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            last.alias("close"),
            volume,
            value,
            vwap,
            count,
        )
        .orderBy("bucket", "symbol", "venue")
    )


def _vwap(trades: DataFrame, p: Mapping[str, Any]) -> DataFrame:
    """queries/vwap.sql."""
    return (
        _trades_in(trades, p)
        .groupBy("date", "symbol", "venue")
        .agg(*_sums(), F.min("ts").alias("first_ts"), F.max("ts").alias("last_ts"))
        .orderBy("date", "symbol", "venue")
    )


_NAMED: dict[str, Callable[[DataFrame, Mapping[str, Any]], DataFrame]] = {"bars": _bars, "vwap": _vwap}
