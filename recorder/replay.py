"""Recorded days back out of the store, in time order: rows, Arrow batches, paced rows, REAL frames.

One engine behind every face of ``recorder replay`` (ARCHITECTURE.md, "replay"):

- :func:`iter_rows`: :class:`ReplayRow` values merged across symbols and tables;
- :func:`iter_batches`: the same data as Arrow record batches, for speed;
- :func:`aiter_rows`: :func:`iter_rows` paced by the recorded receive times;
- :mod:`recorder.replay_feed`: REAL frames built by :func:`recorder.protocol.encode_frame`
  (NDJSON that ``recorder ingest`` turns back into the same tables) and
  :class:`~recorder.replay_feed.RecordedFeed`, a feed for the Kiwoom-compatible venue.

Order. Rows come in (``ts``, ``recv_ts``, ``seq``) order: exchange time first, then the
receive time and the journal position as tie-breakers, across every symbol and both tables.

Reading. Only the Hive folders of the requested tables, dates and symbols are listed, and
no file is read whole: part files are sorted by (``ts``, ``seq``) (the storage contract),
so each partition is a few sorted *runs* (files chained when their ``ts`` ranges, from the
Parquet footers, do not overlap), and the runs are merged a window at a time. Memory stays
bounded by about one read batch per run whatever the size of the day, and rows become
Python objects a chunk at a time.

Times. Stored timestamps are ``timestamp[us, tz=Asia/Seoul]``; in rows ``ts`` and ``recv_ts``
are integer epoch nanoseconds, the layout :func:`recorder.protocol.encode_entry` takes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.decode import split_item
from recorder.errors import ConfigError, StoreError
from recorder.fields import REAL_TYPES
from recorder.protocol import row_columns
from recorder.schema import MARKET_TABLES, SCHEMAS

log = logging.getLogger(__name__)

Dateish = str | dt.date
KEYS = [("ts", "ascending"), ("recv_ts", "ascending"), ("seq", "ascending")]
_TS_TYPE = pa.int64()


class ReplayRow(NamedTuple):
    """One recorded row.

    Attributes:
        table: ``"trades"`` or ``"orderbook"``.
        row: the values in the order of :func:`recorder.protocol.row_columns` (that is
            :func:`recorder.fields.columns`), ``ts`` and ``recv_ts`` as epoch ns ints;
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


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """What to replay: resolved dates, tables and symbols.

    Attributes:
        data_dir: the store.
        dates: KST trading dates ``YYYY-MM-DD``, in order.
        tables: ``trades`` and/or ``orderbook``.
        symbols: code → venues wanted (None = every venue); None selects every symbol.
    """

    data_dir: Path
    dates: tuple[str, ...]
    tables: tuple[str, ...]
    symbols: dict[str, frozenset[str] | None] | None = None


def select(
    data_dir: Path | str,
    start: Dateish,
    end: Dateish | None = None,
    *,
    symbols: Iterable[str] | None = None,
    types: Iterable[str] = ("0B", "0D"),
) -> Selection:
    """Resolve replay arguments (see :func:`iter_rows`).

    Raises:
        ConfigError: a bad date, an end before the start, an unknown type or a bad symbol.
    """
    first, last = _date(start), _date(end if end is not None else start)
    if last < first:
        raise ConfigError(f"end date {last} is before start date {first}")
    dates = tuple((first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1))
    return Selection(Path(data_dir), dates, parse_types(types), parse_symbols(symbols))


def _date(value: Dateish) -> dt.date:
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(f"{value!r} is not a date (YYYY-MM-DD)") from exc


def parse_types(types: Iterable[str]) -> tuple[str, ...]:
    """Real-time type codes (``0B``, ``0D``) or table names → tables, in storage order.

    A string is split on commas (``"0B,0D"``).
    """
    wanted = set()
    for t in types.split(",") if isinstance(types, str) else types:
        t = t.strip()
        table = REAL_TYPES[t.upper()].table if t.upper() in REAL_TYPES else t.lower()
        if table not in MARKET_TABLES:
            raise ConfigError(f"unknown type {t!r}: use 0B (trades) and/or 0D (orderbook)")
        wanted.add(table)
    if not wanted:
        raise ConfigError("no types to replay")
    return tuple(t for t in MARKET_TABLES if t in wanted)


def parse_symbols(symbols: Iterable[str] | None) -> dict[str, frozenset[str] | None] | None:
    """``"005930"`` → every venue of 005930; ``"005930_NX"`` → its NXT rows only.

    A string is split on commas (``"005930,000660_NX"``).

    A plain code means the symbol (the partition key), not Kiwoom's KRX item: a replay
    filter is about what is stored. Give ``005930`` and ``005930_NX`` together and the plain
    code wins (all venues).
    """
    if symbols is None:
        return None
    out: dict[str, frozenset[str] | None] = {}
    for text in symbols.split(",") if isinstance(symbols, str) else symbols:
        item = text.strip().upper()
        split = split_item(item)
        if split is None:
            raise ConfigError(f"not a stock item: {text!r} (expected e.g. 005930 or 005930_NX)")
        code, venue = split
        if "_" not in item:
            out[code] = None
        elif code not in out or out[code] is not None:
            out[code] = (out.get(code) or frozenset()) | {venue}
    return out


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Partition:
    """One ``table/date=…/symbol=…`` folder and its part files."""

    table: str
    date: str
    symbol: str
    files: tuple[Path, ...]
    venues: frozenset[str] | None  # None = every venue


def partitions(sel: Selection) -> list[Partition]:
    """The partitions the selection touches, found by listing only their Hive folders."""
    out = []
    for table in sel.tables:
        for date in sel.dates:
            day = sel.data_dir / table / f"date={date}"
            if not day.is_dir():
                continue
            if sel.symbols is None:
                codes = sorted(p.name[7:] for p in day.iterdir() if p.name.startswith("symbol="))
            else:
                codes = sorted(sel.symbols)
            for code in codes:
                files = tuple(sorted((day / f"symbol={code}").glob("[!._]*.parquet")))
                if files:
                    venues = None if sel.symbols is None else sel.symbols[code]
                    out.append(Partition(table, date, code, files, venues))
    return out


def _ts_range(path: Path) -> tuple[int, int] | None:
    """(min, max) of ``ts`` in µs from the footer statistics, or None if absent."""
    md = pq.ParquetFile(path).metadata
    names = md.schema.names
    if "ts" not in names or md.num_row_groups == 0:
        return None
    j = names.index("ts")
    lo = hi = None
    for i in range(md.num_row_groups):
        st = md.row_group(i).column(j).statistics
        if st is None or not st.has_min_max:
            return None
        lo = st.min_raw if lo is None else min(lo, st.min_raw)
        hi = st.max_raw if hi is None else max(hi, st.max_raw)
    return (lo, hi) if lo is not None and hi is not None else None


def chain_runs(files: Sequence[Path]) -> list[list[Path]]:
    """Group a partition's files into runs: files in a run follow one another in ``ts``.

    A file joins the first run whose last file ends at or before its first ``ts``; files
    without statistics are runs of their own (still correct, only more runs to merge).
    """
    known: list[tuple[int, int, Path]] = []
    runs: list[list[Path]] = []
    for f in files:
        r = _ts_range(f)
        if r is None:
            runs.append([f])
        else:
            known.append((r[0], r[1], f))
    ends: list[int] = []
    chained: list[list[Path]] = []
    for lo, hi, f in sorted(known, key=lambda k: (k[0], k[1])):
        for i, end in enumerate(ends):
            if end <= lo:
                chained[i].append(f)
                ends[i] = hi
                break
        else:
            chained.append([f])
            ends.append(hi)
    return chained + runs


class _Run:
    """A sorted stream of one partition's rows (a chain of files), read a batch at a time."""

    def __init__(self, part: Partition, files: list[Path], batch_rows: int) -> None:
        self.table = part.table
        self.part = part
        self._schema = SCHEMAS[part.table]
        self._batches = self._read(files, batch_rows)
        self.buf: pa.Table = self._schema.empty_table()
        self.done = False
        self._last_ts: int | None = None

    def _read(self, files: list[Path], batch_rows: int) -> Iterator[pa.Table]:
        for path in files:
            pf = pq.ParquetFile(path)
            present = set(pf.schema_arrow.names)
            cols = [n for n in self._schema.names if n in present]
            for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
                yield self._conform(pa.Table.from_batches([batch]), path)

    def _conform(self, t: pa.Table, path: Path) -> pa.Table:
        """File columns → the table's full schema: the partition's symbol, nulls for columns
        an older file lacks, the venue filter; and check the sort order the merge relies on."""
        n = len(t)
        present = set(t.column_names)  # a set: column_names builds a new list on every call
        arrays = []
        for f in self._schema:
            if f.name == "symbol":
                arrays.append(pa.repeat(pa.scalar(self.part.symbol, pa.string()), n))
            elif f.name in present:
                col = t.column(f.name)
                arrays.append(col if col.type == f.type else col.cast(f.type))
            else:
                arrays.append(pa.nulls(n, f.type))
        out = pa.Table.from_arrays(arrays, schema=self._schema)
        ts = out.column("ts").cast(_TS_TYPE)
        if n and (
            (self._last_ts is not None and ts[0].as_py() < self._last_ts)
            or (n > 1 and not pc.all(pc.greater_equal(ts.slice(1), ts.slice(0, n - 1))).as_py())
        ):
            raise StoreError(f"{path} is not sorted by ts (the storage contract); cannot replay it")
        if n:
            self._last_ts = ts[n - 1].as_py()
        if self.part.venues is not None:
            out = out.filter(pc.is_in(out.column("venue"), pa.array(sorted(self.part.venues))))
        return out

    def load(self) -> None:
        """Append batches until one adds rows or the run ends."""
        for t in self._batches:
            if len(t):
                self.buf = pa.concat_tables([self.buf, t]) if len(self.buf) else t
                return
        self.done = True

    @property
    def last_ts(self) -> int:
        return self.buf.column("ts")[-1].value  # type: ignore[no-any-return]

    def take_before(self, bound: int | None) -> pa.Table | None:
        """Remove and return the buffered rows with ``ts < bound`` (all of them for None)."""
        if not len(self.buf):
            return None
        if bound is None:
            k = len(self.buf)
        else:
            # The buffer is sorted by ts, so the rows below the bound are the ones counted.
            below = pc.less(self.buf.column("ts").cast(_TS_TYPE), pa.scalar(bound, _TS_TYPE))
            k = pc.sum(below).as_py() or 0
        if k == 0:
            return None
        piece, self.buf = self.buf.slice(0, k), self.buf.slice(k)
        return piece


def iter_windows(sel: Selection, batch_rows: int | None = None) -> Iterator[dict[str, pa.Table]]:
    """The merge: windows of rows, each window a dict table → rows sorted by (ts, recv_ts, seq).

    Every row of a window has a ``ts`` strictly below every row of the windows after it.
    A window holds at most one table per table name (in storage order: trades, orderbook).
    """
    parts = partitions(sel)
    chains = [(p, files) for p in parts for files in chain_runs(p.files)]
    if batch_rows is None:  # ~256k rows (~350 MB of orderbook) buffered in all, whatever the runs
        batch_rows = max(1024, min(65536, 262_144 // max(1, len(chains))))
    runs = [_Run(p, files, batch_rows) for p, files in chains]
    log.debug("replay: %d partitions, %d runs, %d rows per read", len(parts), len(runs), batch_rows)
    for r in runs:
        r.load()
    while True:
        live = [r for r in runs if len(r.buf) or not r.done]
        if not live:
            return
        # No run still reading can hold a row earlier than its buffer's last ts: below the
        # smallest of those, every row has been read and can go out.
        limits = [r.last_ts for r in live if not r.done]
        bound = min(limits) if limits else None
        pieces: dict[str, list[pa.Table]] = {}
        for r in live:
            piece = r.take_before(bound)
            if piece is not None:
                pieces.setdefault(r.table, []).append(piece)
        if pieces:
            yield {t: pa.concat_tables(pieces[t]).sort_by(KEYS) for t in sel.tables if t in pieces}
        for r in live:
            if not r.done and r.last_ts == bound:  # the runs holding the window back read on
                r.load()


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

    Batches have the schema :data:`recorder.schema.SCHEMAS` gives the table (``symbol``
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


def _rows_of(t: pa.Table) -> list[tuple[Any, ...]]:
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
            rows.append(iter(_rows_of(t.slice(pos[i], n))))
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
