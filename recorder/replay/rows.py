"""Recorded days back out of the store, in time order: rows, Arrow batches, paced rows, REAL frames.

The row faces of ``recorder replay`` (docs/architecture.md, "Packages"):

- :func:`iter_rows`: :class:`ReplayRow` values merged across symbols and tables;
- :func:`iter_batches`: the same data as Arrow record batches, for speed;
- :func:`aiter_rows`: :func:`iter_rows` paced by the recorded receive times.

REAL frames (:mod:`recorder.replay.feed`: NDJSON that ``recorder ingest`` turns back into the
same tables, and :class:`~recorder.replay.feed.RecordedFeed` for the Kiwoom-compatible venue)
come from :mod:`recorder.replay.scan`, which gives these rows in this order, already encoded
as :func:`recorder.kiwoom.frames.encode_frame` would encode them.

Order. Rows come in (``ts``, ``recv_ts``, ``seq``) order: exchange time first, then the
receive time and the journal position as tie-breakers, across every symbol and both tables.

Reading. Only the Hive folders of the requested tables, dates and symbols are listed, and
no file is read whole: part files are sorted by (``ts``, ``seq``) (the storage contract),
so each partition is a few sorted *runs* (files chained when their ``ts`` ranges, from the
Parquet footers, do not overlap), and the runs are merged a window at a time. Memory stays
bounded by about one read batch per run whatever the size of the day, and rows become
Python objects a chunk at a time.

Times. Stored timestamps are ``timestamp[us, tz=Asia/Seoul]``; in rows ``ts`` and ``recv_ts``
are integer epoch nanoseconds, the layout :func:`recorder.kiwoom.frames.encode_entry` takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from recorder.errors import ConfigError
from recorder.kiwoom.frames import row_columns
from recorder.replay.read import (
    KEYS,
    Dateish,
    Selection,
    iter_windows,
    select,
)

__all__ = [
    "Pacer",
    "ReplayRow",
    "aiter_rows",
    "iter_batches",
    "iter_row_chunks",
    "iter_rows",
    "rows_of",
    "window_rows",
]

log = logging.getLogger(__name__)

_TS_TYPE = pa.int64()


class ReplayRow(NamedTuple):
    """One recorded row.

    Attributes:
        table: ``"trades"`` or ``"orderbook"``.
        row: the values in the order of :func:`recorder.kiwoom.frames.row_columns` (that is
            :func:`recorder.kiwoom.fields.columns`), ``ts`` and ``recv_ts`` as epoch ns ints;
            ``protocol.encode_entry(table, row)`` takes it as is.
    """

    table: str
    row: tuple[Any, ...]

    @property
    def ts(self) -> int:
        return self.row[0]  # type: ignore[no-any-return]

    @property
    def recv_ts(self) -> int:
        return self.row[1]  # type: ignore[no-any-return]

    @property
    def seq(self) -> int:
        return self.row[2]  # type: ignore[no-any-return]

    def as_dict(self) -> dict[str, Any]:
        """Column name → value."""
        return dict(zip(row_columns(self.table), self.row, strict=True))


# --------------------------------------------------------------------------- public iterators


def iter_batches(
    data_dir: Path | str,
    start: Dateish,
    end: Dateish | None = None,
    *,
    symbols: Iterable[str] | None = None,
    types: Iterable[str] = ("0B", "0D"),
    batch_rows: int = 65536,
) -> Iterator[tuple[str, pa.RecordBatch]]:
    """Recorded rows as ``(table, batch)`` pairs, time-ordered (arguments as :func:`iter_rows`).

    Batches have the schema :data:`recorder.kiwoom.schema.SCHEMAS` gives the table (``symbol``
    included, timestamps as stored) and at most ``batch_rows`` rows.

    Ordering guarantee: batches come in *windows*. Within a window, the trades batches
    come first, then the orderbook ones, each table's rows in (``ts``, ``recv_ts``, ``seq``)
    order. Every row of a window has an exchange time ``ts`` strictly earlier than every
    row of any later window. So each table's batches, concatenated, are fully ordered, and
    the two tables interleave correctly to the window; merging a window's trades and
    orderbook rows by (``ts``, ``recv_ts``, ``seq``) gives :func:`iter_rows`' exact order.
    """
    for window in iter_windows(select(data_dir, start, end, symbols=symbols, types=types)):
        for table, t in window.items():
            for batch in t.to_batches(max_chunksize=batch_rows):
                yield table, batch


def rows_of(t: pa.Table) -> list[tuple[Any, ...]]:
    """Stored rows (a table of ``SCHEMAS`` columns) → tuples, ``ts`` and ``recv_ts`` in epoch ns."""
    cols = []
    for name, col in zip(t.column_names, t.columns, strict=True):
        if name in ("ts", "recv_ts"):
            col = pc.multiply(col.cast(_TS_TYPE), 1000)  # µs → ns
        cols.append(col.to_pylist())
    return list(zip(*cols, strict=True))


def window_rows(window: dict[str, pa.Table], chunk: int = 8192) -> Iterator[list[ReplayRow]]:
    """One window of :func:`iter_windows` as rows, both tables merged by (ts, recv_ts, seq).

    Yields lists of at most ``chunk`` rows, so that only that many rows exist as Python
    objects at a time (a window can hold a few hundred thousand wide orderbook rows).
    """
    names = list(window)
    tables = list(window.values())
    if len(tables) == 1:
        tags = [0] * len(tables[0])
    else:
        # A stable sort of sorted inputs keeps each table's own order, so every chunk of the
        # merged order is a contiguous slice of each table: only the tags need sorting.
        keys = {k: pa.concat_arrays([t.column(k).combine_chunks() for t in tables]) for k, _ in KEYS}
        keys["tag"] = pa.concat_arrays(
            [pa.repeat(pa.scalar(i, pa.int8()), len(t)) for i, t in enumerate(tables)]
        )
        order = pc.sort_indices(pa.table(keys), sort_keys=KEYS)
        tags = keys["tag"].take(order).to_pylist()
    pos = [0] * len(tables)
    for off in range(0, len(tags), chunk):
        part = tags[off : off + chunk]
        rows = []
        for i, t in enumerate(tables):
            n = part.count(i)
            rows.append(iter(rows_of(t.slice(pos[i], n))))
            pos[i] += n
        yield [ReplayRow(names[i], next(rows[i])) for i in part]


def iter_row_chunks(sel: Selection) -> Generator[list[ReplayRow], None, None]:
    """:func:`iter_rows` in consecutive lists of rows (what the paced and served replays consume)."""
    for window in iter_windows(sel):
        yield from window_rows(window)


def iter_rows(
    data_dir: Path | str,
    start: Dateish,
    end: Dateish | None = None,
    *,
    symbols: Iterable[str] | None = None,
    types: Iterable[str] = ("0B", "0D"),
) -> Iterator[ReplayRow]:
    """Every recorded row of the selection, in (``ts``, ``recv_ts``, ``seq``) order.

    Args:
        data_dir: the store.
        start: first KST trading date (``YYYY-MM-DD`` or a date).
        end: last date, inclusive; None replays ``start`` only.
        symbols: codes (``005930``: every venue) or items (``005930_NX``: that venue only);
            None replays every symbol of the dates.
        types: ``0B`` (trades) and/or ``0D`` (orderbook); table names work too.

    Raises:
        ConfigError: bad arguments (checked before anything is read).
        StoreError: a part file breaks the storage contract (not sorted by ``ts``).
    """
    sel = select(data_dir, start, end, symbols=symbols, types=types)
    for rows in iter_row_chunks(sel):
        yield from rows


# --------------------------------------------------------------------------- pacing


class Pacer:
    """Turns recorded receive times into waits, so a replay keeps the recording's rhythm.

    The first row goes at once; row *n* is due ``(recv_n - recv_first) / speed`` seconds
    after it (by ``clock``). Targets are anchored to the start, so skipped small waits and
    late wake-ups do not accumulate drift. Receive times that go backwards (rows are in
    exchange-time order) are due at once: pacing follows the largest receive time so far.
    A hole in the recording (a disconnect) becomes a silence ``1/speed`` as long.

    Args:
        speed: 1 real time, 10 ten times faster; None no waiting at all.
        clock: monotonic seconds.
        min_wait: waits shorter than this are not worth a timer; they are caught up later.
    """

    def __init__(
        self, speed: float | None, clock: Callable[[], float] = time.monotonic, min_wait: float = 0.001
    ) -> None:
        if speed is not None and not speed > 0:
            raise ConfigError(f"speed must be positive, not {speed}")
        self.speed = speed
        self.clock = clock
        self.min_wait = min_wait
        self._t0 = 0.0
        self._r0: int | None = None
        self._high = 0

    def wait(self, recv_ns: int) -> float:
        """Seconds to wait before emitting a row received at ``recv_ns`` (0 when due)."""
        if self.speed is None:
            return 0.0
        if self._r0 is None:
            self._t0, self._r0, self._high = self.clock(), recv_ns, recv_ns
            return 0.0
        if recv_ns > self._high:
            self._high = recv_ns
        delay = self._t0 + (self._high - self._r0) / 1e9 / self.speed - self.clock()
        return delay if delay >= self.min_wait else 0.0


async def aiter_rows(
    data_dir: Path | str,
    start: Dateish,
    end: Dateish | None = None,
    *,
    symbols: Iterable[str] | None = None,
    types: Iterable[str] = ("0B", "0D"),
    speed: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[ReplayRow]:
    """:func:`iter_rows`, paced by the recorded ``recv_ts`` (see :class:`Pacer`).

    Files are read in a worker thread, a chunk of rows at a time, so the event loop never
    blocks on disk. ``clock`` and ``sleep`` are injectable for tests (a fake clock that advances
    when ``sleep`` is awaited makes the pacing exact and instant).
    """
    pacer = Pacer(speed, clock)
    chunks = iter_row_chunks(select(data_dir, start, end, symbols=symbols, types=types))
    try:
        while (rows := await asyncio.to_thread(next, chunks, None)) is not None:
            for r in rows:
                delay = pacer.wait(r.row[1])
                if delay:
                    await sleep(delay)
                yield r
    finally:
        chunks.close()
