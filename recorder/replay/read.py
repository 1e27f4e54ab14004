"""Reading a recorded store in time order: what to read, sorted runs of part files, windows.

The engine behind :mod:`recorder.replay.rows`: only the Hive folders of the requested tables,
dates and symbols are listed; each partition's part files are chained into runs sorted by
``ts`` (using the footers' statistics), and the runs are merged a window at a time so that
memory stays bounded whatever the size of the day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StoreError, UnreadableFileError
from recorder.kiwoom.fields import MARKET_TABLES, REAL_TYPES
from recorder.kiwoom.items import parse_filter
from recorder.kiwoom.schema import SCHEMAS
from recorder.store.layout import parse_part, part_glob

__all__ = [
    "KEYS",
    "Dateish",
    "Partition",
    "Run",
    "Selection",
    "chain_runs",
    "conform",
    "iter_windows",
    "parse_types",
    "partitions",
    "reading",
    "select",
]

log = logging.getLogger(__name__)

KEYS = [("ts", "ascending"), ("recv_ts", "ascending"), ("seq", "ascending")]
_TS_TYPE = pa.int64()
Dateish = str | dt.date


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
    return Selection(Path(data_dir), dates, parse_types(types), parse_filter(symbols))


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


# --------------------------------------------------------------------------- reading files


@contextlib.contextmanager
def reading(path: Path) -> Iterator[None]:
    """Translate what pyarrow and the OS raise while ``path`` is read into one error naming it.

    Raises:
        UnreadableFileError: ``path`` is truncated, damaged, not Parquet or cannot be opened.
    """
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        words = "".join(c if c.isprintable() else " " for c in str(exc)).split()
        reason = " ".join(words) or type(exc).__name__
        raise UnreadableFileError(
            f"cannot read {path}: {reason} (a damaged or truncated file; recorder verify lists them)"
        ) from exc


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
            found: dict[str, list[Path]] = {}
            for code in ("*",) if sel.symbols is None else sorted(sel.symbols):
                with reading(sel.data_dir / table):
                    for path in sel.data_dir.glob(part_glob(table, date, code)):
                        part = parse_part(path.relative_to(sel.data_dir))
                        if part is not None and part.symbol is not None:
                            found.setdefault(part.symbol, []).append(path)
            for code, files in sorted(found.items()):
                venues = None if sel.symbols is None else sel.symbols[code]
                out.append(Partition(table, date, code, tuple(sorted(files)), venues))
    return out


def _ts_range(path: Path) -> tuple[int, int] | None:
    """(min, max) of ``ts`` in µs from the footer statistics, or None if absent."""
    with reading(path):
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


def chain_runs(
    files: Sequence[Path], ts_range: Callable[[Path], tuple[int, int] | None] = _ts_range
) -> list[list[Path]]:
    """Group a partition's files into runs: files in a run follow one another in ``ts``.

    A file joins the first run whose last file ends at or before its first ``ts``; files
    without statistics are runs of their own (still correct, only more runs to merge).
    ``ts_range`` gives a file's (min, max) ``ts`` in µs, or None; by default from its footer.
    """
    known: list[tuple[int, int, Path]] = []
    runs: list[list[Path]] = []
    for f in files:
        r = ts_range(f)
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


def conform(t: pa.Table, schema: pa.Schema, symbol: str) -> pa.Table:
    """A part file's columns → ``schema``: the partition's ``symbol``, each column in the
    schema's type, nulls for the columns an older file lacks."""
    n = len(t)
    present = set(t.column_names)  # a set: column_names builds a new list on every call
    arrays = []
    for f in schema:
        if f.name == "symbol":
            arrays.append(pa.repeat(pa.scalar(symbol, pa.string()), n))
        elif f.name in present:
            col = t.column(f.name)
            arrays.append(col if col.type == f.type else col.cast(f.type))
        else:
            arrays.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class Run:
    """A sorted stream of one partition's rows (a chain of files), read a batch at a time.

    With ``ranks`` (file → number), every batch also carries ``_fi`` (the file's number) and
    ``_fr`` (the row's position in its file, before the venue filter).
    """

    def __init__(
        self, part: Partition, files: list[Path], batch_rows: int, ranks: dict[Path, int] | None = None
    ) -> None:
        self.table = part.table
        self.part = part
        self._schema = SCHEMAS[part.table]
        self._ranks = ranks
        if ranks is not None:
            self._schema = self._schema.append(pa.field("_fi", pa.int64())).append(
                pa.field("_fr", pa.int64())
            )
        self._batches = self._read(files, batch_rows)
        self.buf: pa.Table = self._schema.empty_table()
        self.done = False
        self._last_ts: int | None = None

    def _read(self, files: list[Path], batch_rows: int) -> Iterator[pa.Table]:
        for path in files:
            with reading(path):
                pf = pq.ParquetFile(path)
                present = set(pf.schema_arrow.names)
                cols = [n for n in self._schema.names if n in present]
                batches = pf.iter_batches(batch_size=batch_rows, columns=cols)
            first = 0
            while True:
                with reading(path):
                    batch = next(batches, None)
                if batch is None:
                    break
                t = pa.Table.from_batches([batch])
                if self._ranks is not None:
                    t = t.append_column("_fi", pa.repeat(pa.scalar(self._ranks[path], pa.int64()), len(t)))
                    t = t.append_column("_fr", pa.arange(first, first + len(t)))
                    first += len(t)
                yield self._conform(t, path)

    def _conform(self, t: pa.Table, path: Path) -> pa.Table:
        """File columns → the table's full schema (see :func:`conform`), the venue filter; and
        check the sort order the merge relies on."""
        out = conform(t, self._schema, self.part.symbol)
        n = len(out)
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
    runs = [Run(p, files, batch_rows) for p, files in chains]
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
