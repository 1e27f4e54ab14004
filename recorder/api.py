"""The recorder's public Python API: one :class:`Store` over one data directory.

::

    from recorder import Store

    store = Store("data")
    store.sql("SELECT symbol, venue, count(*) FROM trades GROUP BY ALL")     # pyarrow.Table
    store.named("bars", start="2026-07-20", end="2026-07-20", symbol="005930_NX")
    for row in store.replay("2026-07-20", symbols=["005930"]):              # time order
        print(row.table, row.ts, row["price"])
    store.inventory()    # dates, symbols, files, rows, bytes
    store.verify()       # part files against the journal

Two conventions hold for every entry point:

- **One time type.** Every time returned is an instant in KST: Arrow columns are
  ``timestamp[*, tz=Asia/Seoul]``, and rows carry the Python value of such a timestamp (an
  aware ``datetime`` in ``Asia/Seoul``). Kiwoom's exchange times are KST wall-clock times.
- **One filter vocabulary.** Symbols are Kiwoom items: ``005930`` is the symbol on every
  venue, ``005930_NX`` its NXT rows only, ``005930_AL`` its SOR rows
  (:func:`recorder.kiwoom.items.parse_filter`).

The CLI's store-reading commands (``query``, ``replay``, ``ls``, ``verify``) do what these
methods do. The heavy libraries (pyarrow, DuckDB) are imported by the methods that need
them, so ``import recorder`` stays cheap.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from recorder.store.inventory import Inventory
    from recorder.store.objstore import S3Store
    from recorder.store.verify import VerifyReport

__all__ = ["Row", "Store"]

Dateish = str | dt.date

#: The replayed tables' default: trades (0B) and order books (0D).
DEFAULT_TYPES = ("0B", "0D")

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_COLUMNS = ("ts", "recv_ts")


def _kst() -> dt.tzinfo:
    from zoneinfo import ZoneInfo

    from recorder.kiwoom.time import TZ_NAME

    return ZoneInfo(TZ_NAME)


@dataclass(frozen=True, slots=True)
class Row:
    """One recorded trade (0B) or order-book snapshot (0D), as :meth:`Store.replay` yields it.

    ``row["price"]`` reads a column.

    Attributes:
        table: ``"trades"`` or ``"orderbook"``.
        values: column name → value, in the table's column order (``symbol`` and ``venue``
            included). ``ts`` (exchange time) and ``recv_ts`` (receive time) are aware
            datetimes in ``Asia/Seoul``, microsecond resolution, as stored.
    """

    table: str
    values: dict[str, Any]

    def __getitem__(self, column: str) -> Any:
        return self.values[column]

    @property
    def ts(self) -> dt.datetime:
        """Exchange time (KST)."""
        return self.values["ts"]  # type: ignore[no-any-return]

    @property
    def symbol(self) -> str:
        """The 6-character code, without venue suffix."""
        return self.values["symbol"]  # type: ignore[no-any-return]

    @property
    def venue(self) -> str:
        """``KRX``, ``NXT`` or ``SOR``."""
        return self.values["venue"]  # type: ignore[no-any-return]


class Store:
    """A recorded store (Hive-partitioned Parquet plus its journal) opened for reading.

    Args:
        data_dir: the store's folder, as given to ``recorder capture --data-dir``, or an
            ``s3://bucket/prefix`` URL (docs/s3.md): SQL reads the objects in place, replay
            copies the selected partitions into a temporary folder while it runs.

    Raises:
        ConfigError: ``data_dir`` does not exist, is not a folder, holds nothing (``s3://``)
            or is a URL of another scheme.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | S3Store) -> None:
        from recorder.store.layout import store_location

        self._dir = store_location(data_dir, must_exist=True)

    @property
    def data_dir(self) -> Path | S3Store:
        """The store's folder (or its :class:`~recorder.store.objstore.S3Store`)."""
        return self._dir

    def __repr__(self) -> str:
        return f"Store({str(self._dir)!r})"

    # ----------------------------------------------------------------------- SQL

    def sql(self, text: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        """Run SQL over the views ``trades``, ``orderbook``, ``gaps`` and ``rejects``.

        Args:
            text: one DuckDB statement; ``$name`` placeholders are bound from ``params``.
            params: values for the placeholders (bound, never pasted into the SQL).

        Returns:
            The result. Timestamp columns are ``tz=Asia/Seoul``; a time without a zone
            (``ts::TIMESTAMP``) is read as the KST wall-clock time it shows.

        Raises:
            queries.QueryError: DuckDB refused the query (its message is kept).
            StoreError: the store could not be read.
        """
        import queries

        return _in_kst(queries.sql(self._dir, text, dict(params) if params else None))

    def named(self, name: str, /, **params: Any) -> pa.Table:
        """Run a named query (``bars``, ``spread``, ``imbalance``, ``coverage``, ``vwap``).

        ``symbol`` takes a code (``005930``: every venue) or an item (``005930_NX``: the
        code on NXT); ``venue`` takes ``KRX``, ``NXT`` or ``SOR``. A filter that cannot match
        is refused, never an empty answer. ``queries.named()`` lists the queries and their
        parameters.

        Returns:
            The result, timestamp columns in ``tz=Asia/Seoul``.

        Raises:
            queries.NamedQueryError: no such query, or parameters unknown, missing or not
                of their declared type (also a ConfigError).
            queries.QueryError: DuckDB failed while running it.
            StoreError: the store could not be read.
        """
        import queries

        return _in_kst(queries.run(name, self._dir, **params))

    # ----------------------------------------------------------------------- replay

    def replay(
        self,
        date: Dateish,
        *,
        end_date: Dateish | None = None,
        symbols: str | Iterable[str] | None = None,
        types: str | Iterable[str] = DEFAULT_TYPES,
    ) -> Iterator[Row]:
        """Every recorded row of the days, trades and order books merged in time order.

        Rows come in (``ts``, ``recv_ts``, ``seq``) order across symbols, venues and both
        tables: exchange time first, then receive time and journal position. Files are read
        a window at a time, so memory stays bounded whatever the size of the day.

        Args:
            date: first KST trading date (``YYYY-MM-DD`` or a ``date``).
            end_date: last date, inclusive; None replays ``date`` only.
            symbols: items (``"005930,005930_NX"`` or a list); None: every symbol.
            types: ``0B`` (trades) and/or ``0D`` (orderbook).

        Raises:
            ConfigError: a bad date, symbol or type (raised before anything is read).
            StoreError: a part file cannot be read or breaks the storage contract.
        """
        from recorder.replay import iter_rows, select

        select(Path("."), date, end_date, symbols=symbols, types=types)  # check eagerly
        return _rows(_mirrored(self._dir, iter_rows, date, end_date, symbols=symbols, types=types))

    def batches(
        self,
        date: Dateish,
        *,
        end_date: Dateish | None = None,
        symbols: str | Iterable[str] | None = None,
        types: str | Iterable[str] = DEFAULT_TYPES,
        batch_rows: int = 65536,
    ) -> Iterator[tuple[str, pa.RecordBatch]]:
        """The rows of :meth:`replay` as ``(table, pyarrow.RecordBatch)`` pairs, for speed.

        Batches have the stored schema (``ts``, ``recv_ts``: ``timestamp[us,
        tz=Asia/Seoul]``) and at most ``batch_rows`` rows. They come in windows: every row
        of a window is earlier (by ``ts``) than every row of the next; within a window the
        trades batches come first, then the orderbook ones, each in (``ts``, ``recv_ts``,
        ``seq``) order. Arguments and errors as :meth:`replay`.
        """
        from recorder.replay import iter_batches, select

        select(Path("."), date, end_date, symbols=symbols, types=types)  # check eagerly
        return _mirrored(
            self._dir, iter_batches, date, end_date, symbols=symbols, types=types, batch_rows=batch_rows
        )

    # ----------------------------------------------------------------------- upkeep

    def inventory(self) -> Inventory:
        """What the store holds: per table and partition (date, symbol) the files, rows
        (from the Parquet footers) and bytes; per journal writer its segments, bytes and
        checkpoint. ``.to_dict()`` gives plain data (``recorder ls --format json``).

        Raises:
            StoreError, JournalError: a folder cannot be listed.
        """
        from recorder.store.inventory import inventory

        return inventory(self._dir)

    def verify(self, *, scratch_dir: str | os.PathLike[str] | None = None) -> VerifyReport:
        """Check every part file (readable, schema, sort order, no overlapping writers) and
        compare the tables with a fresh decode of the journal.

        The one change it makes: an interrupted compaction is finished first.

        Args:
            scratch_dir: where journals are decoded for the comparison (default: the system
                temp dir).

        Returns:
            A report: ``status`` is ``clean``, ``problems`` or ``unreadable``;
            ``exit_code`` is 0, 1 or 2 accordingly (``recorder verify``'s exit status);
            ``problems``, ``warnings`` and ``info`` are lines to show.

        Raises:
            ConfigError: a compaction is running (verify when it has finished).
        """
        from recorder.store.verify import verify

        return verify(self._dir, scratch_dir=Path(scratch_dir) if scratch_dir is not None else None)


def _mirrored(
    where: Path | S3Store, read: Any, date: Dateish, end_date: Dateish | None, **kw: Any
) -> Iterator[Any]:
    """``read(folder, date, end_date, **kw)`` over ``where``; an ``s3://`` store's selected
    partitions are copied into a temporary folder first, removed when the iterator ends."""
    if isinstance(where, Path):
        yield from read(where, date, end_date, **kw)
        return
    from recorder.replay import select
    from recorder.store.objstore import local_view

    sel = select(Path("."), date, end_date, symbols=kw.get("symbols"), types=kw.get("types", DEFAULT_TYPES))
    codes = sorted(sel.symbols) if sel.symbols is not None else None
    with local_view(where, tables=sel.tables, dates=sel.dates, symbols=codes) as local:
        yield from read(local, date, end_date, **kw)


# --------------------------------------------------------------------------- helpers


def _rows(rows: Iterable[Any]) -> Iterator[Row]:
    """Replay rows (times as epoch ns) → :class:`Row` (times as KST datetimes)."""
    kst = _kst()
    for r in rows:
        values = r.as_dict()
        for col in _TIME_COLUMNS:
            ns = values[col]
            if ns is not None:
                values[col] = (_EPOCH + dt.timedelta(microseconds=ns // 1000)).astimezone(kst)
        yield Row(r.table, values)


def _in_kst(table: pa.Table) -> pa.Table:
    """Every timestamp column in ``tz=Asia/Seoul``; zoneless ones read as KST wall time."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from recorder.kiwoom.time import TZ_NAME

    for i, field in enumerate(table.schema):
        t = field.type
        if not pa.types.is_timestamp(t) or t.tz == TZ_NAME:
            continue
        col = table.column(i)
        if t.tz is None:
            col = pc.assume_timezone(col, TZ_NAME, ambiguous="earliest", nonexistent="earliest")
        else:  # the same instants, shown in KST: a change of type metadata only
            col = col.cast(pa.timestamp(t.unit, tz=TZ_NAME))
        table = table.set_column(i, field.with_type(col.type), col)
    return table
