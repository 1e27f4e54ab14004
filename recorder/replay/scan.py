"""The encoded replay: a selection as REAL entries' JSON text, in replay order, window by window.

It gives what :func:`recorder.replay.rows.iter_rows` and the reference encoder give, row for
row and byte for byte, read and encoded in bulk (:mod:`recorder.replay.encode`):

- **Reading.** DuckDB reads the part files of both tables in one statement, encodes their
  rows and puts them in replay order. A market of thousands of small partitions is mostly
  per-file cost: pyarrow pays about 30 µs per column chunk (a fresh zstd context each), 5 ms
  for a 160-column order book file; DuckDB about a third of that. When files hold a few rows
  each, the statement sorts them before encoding: DuckDB encodes a vector at a time, and
  unsorted, each file's few rows would be a vector of their own.
- **Small selections** (an estimated :data:`WHOLE_ROWS` rows at most, from a sample of
  footers) are read in one statement.
- **Larger ones stream** in bounded memory, like :func:`recorder.replay.read.iter_windows`:
  a first pass reads every file's ``ts`` range (the catalog); files that fit one read batch
  are then read in groups of about :data:`GROUP_ROWS` rows, in the order of their first
  ``ts``, larger ones through :class:`recorder.replay.read.Run` (pyarrow, encoded by DuckDB
  a window at a time); a window goes out once every source has read past it.
- **Order.** Rows come in (``ts``, ``recv_ts``, ``seq``) order; exact ties in the order the
  row merge gives them: by the file's rank (table, date, symbol, run, place in the run), then
  the row's position in the file.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import StoreError
from recorder.kiwoom.schema import SCHEMAS
from recorder.replay.encode import SUFFIX_VENUE, entry_prefix, entry_sql, fill_reference
from recorder.replay.read import Partition, Run, Selection, chain_runs, conform, partitions, reading
from recorder.replay.rows import rows_of

__all__ = ["GROUP_ROWS", "WHOLE_ROWS", "Scan"]

log = logging.getLogger(__name__)

#: A selection of at most this many rows (estimated) is read in one statement per table.
WHOLE_ROWS = 262_144
#: Rows read in one statement when a selection streams.
GROUP_ROWS = 16_384
#: Footers read to estimate a selection's rows.
SAMPLE_FILES = 32
#: DuckDB's memory for the sorts; past it, it spills to a private temporary folder.
MEMORY_LIMIT = "1GB"

#: Below this many rows per file (on average), a statement sorts the rows it reads before
#: encoding them: DuckDB encodes a vector at a time, and a file gives a vector of its own
#: rows, so the encoding of a few rows would pay the cost of a full vector (160 columns).
SORT_FIRST_ROWS = 64

_OPTS = "__OPTS__"  # where a statement says how to read its files
_FILES = (
    "(SELECT *, file_index + {offset} AS _fi, file_row_number AS _fr FROM read_parquet(${param}__OPTS__))"
)
_SORTED = "(SELECT * FROM {files} ORDER BY ts, recv_ts, seq, _fi, _fr)"
_ORDER = "ts, recv, seq, fi, fr"
_BATCH = 65_536  # rows DuckDB hands over at a time


@dataclass
class _File:
    """One part file of the selection and what the catalog learnt of it."""

    path: Path
    part: Partition
    rows: int = 0
    lo: int | None = None  # first and last ts, epoch µs
    hi: int | None = None
    venues: frozenset[str] = frozenset()
    prev: int | None = None  # price - change of its first trade with both
    rank: int = -1


class Scan:
    """A selection's rows, encoded and in replay order (:meth:`windows`).

    Args:
        sel: what to replay.
        entries: ``text`` is each row's whole entry (NDJSON); False: its ``values`` object only
            (the served replay builds entries around it).
        inventory: also learn each file's venues and first trade's previous close
            (:meth:`file_facts`), which the served replay announces.
        whole_rows: selections up to this many rows (estimated) are read in one pass
            (default :data:`WHOLE_ROWS`).
        batch_rows: rows a streamed run reads at a time (default: as the row merge does); files
            no longer are read in groups.
        group_rows: rows of small files read in one statement when the selection streams.

    Raises:
        UnreadableFileError: a part file cannot be read (named).
        StoreError: a part file breaks the storage contract.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        sel: Selection,
        *,
        entries: bool = True,
        inventory: bool = False,
        whole_rows: int | None = None,
        batch_rows: int | None = None,
        group_rows: int = GROUP_ROWS,
    ) -> None:
        self.sel = sel
        self.group_rows = group_rows
        self.entries = entries
        self.inventory = inventory
        self.parts = partitions(sel)
        self.files = [_File(f, p) for p in self.parts for f in p.files]
        # DuckDB creates it if a sort spills; close() removes it.
        self._tmp = str(Path(tempfile.gettempdir()) / f"recorder-replay-{os.getpid()}-{id(self):x}")
        self._con = duckdb.connect()
        try:
            self._con.execute("SET enable_progress_bar = false")  # it would corrupt NDJSON on stdout
            self._con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            self._con.execute("SET temp_directory = ?", [self._tmp])
            most = WHOLE_ROWS if whole_rows is None else whole_rows
            rows = sum(_estimate_rows(fs) for _, fs in self._by_table(self.files))
            self._sort_first = rows < SORT_FIRST_ROWS * len(self.files)
            one_pass = bool(self.files) and rows <= most
            self._onepass = self._read(self.files, learn=True, most=2 * most) if one_pass else None
            # Streamed: too large, or more rows than the sample said.
            self.streamed = bool(self.files) and self._onepass is None
            if self.streamed:
                self._catalog()
            self.chains = self._rank()
        except BaseException:
            self.close()
            raise
        self.batch_rows = batch_rows or max(1024, min(65536, 262_144 // max(1, len(self.chains))))
        self.by_rank = sorted(self.files, key=lambda f: f.rank)
        self.prefixes = [entry_prefix(f.part.table, f.part.symbol) for f in self.by_rank]
        log.debug("replay scan: %d files, %s", len(self.files), "streamed" if self.streamed else "one pass")

    def close(self) -> None:
        """Close the DuckDB connection and remove its temporary folder (idempotent)."""
        self._con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def file_facts(self) -> list[tuple[Path, frozenset[str], int | None]]:
        """``(file, venues in it, price - change of its first trade)`` of every file (needs
        ``inventory``; only venues that pass the selection's filter are of interest)."""
        return [(f.path, f.venues, f.prev) for f in self.files]

    # ---------------------------------------------------------------- statements

    def _by_table(self, files: Sequence[_File]) -> Iterator[tuple[str, list[_File]]]:
        for table in self.sel.tables:
            mine = [f for f in files if f.part.table == table]
            if mine:
                yield table, mine

    def _query(
        self, sql: str, files: Sequence[_File], params: dict[str, Any], most: int | None = None
    ) -> pa.Table | None:
        """Run ``sql`` over ``files`` (its ``read_parquet`` calls say ``__OPTS__``); None as soon
        as its result passes ``most`` rows.

        Files whose columns differ (an older schema) are read again by column name.

        Raises:
            UnreadableFileError: a file cannot be read (named; pyarrow reads it to tell).
            StoreError: DuckDB refused the files for another reason.
        """
        failure: Exception | None = None
        for opts in ("", ", union_by_name = true"):
            try:
                reader = self._con.sql(sql.replace(_OPTS, opts), params=params).to_arrow_reader(_BATCH)
                batches, n = [], 0
                for batch in reader:
                    n += len(batch)
                    if most is not None and n > most:
                        return None
                    batches.append(batch)
                return pa.Table.from_batches(batches, reader.schema)
            except (duckdb.Error, OSError, pa.ArrowException) as exc:
                failure = exc
        reason = " ".join(str(failure).split()) or type(failure).__name__
        named = [f for f in files if str(f.path) in reason]  # DuckDB names the file, mostly
        for f in named + [f for f in files if f not in named]:
            with reading(f.path):
                pq.ParquetFile(f.path).read()
        raise StoreError(f"cannot read the part files of {files[0].part.table}: {reason}") from failure

    def interrupt(self) -> None:
        """Stop the statement running in another thread (it raises there)."""
        self._con.interrupt()

    def _read(self, files: list[_File], *, learn: bool = False, most: int | None = None) -> _Encoded | None:
        """``files`` (of both tables) read, encoded and put in order in one statement, and checked
        for the sort contract; None past ``most`` rows. ``learn``: fill in the files' catalog
        from their rows."""
        files = [f for _, fs in self._by_table(files) for f in fs]  # ``fi`` numbers this list
        keep = _keep_sql(files)
        sort = sum(f.rows for f in files) < SORT_FIRST_ROWS * len(files) if not learn else self._sort_first
        selects, params = [], {}
        offset = 0
        for i, (table, mine) in enumerate(self._by_table(files)):
            source = _FILES.format(offset=offset, param=f"files{i}")
            source = _SORTED.format(files=source) if sort else source
            sql = entry_sql(table, source, whole=self.entries, prev_close=learn and self.inventory, keep=keep)
            selects.append(sql)
            params[f"files{i}"] = [str(f.path) for f in mine]
            offset += len(mine)
        if self.entries:
            params["prefixes"] = [entry_prefix(f.part.table, f.part.symbol) for f in files]
        union = " UNION ALL ".join(f"({q})" for q in selects)
        t = self._query(f"SELECT * FROM ({union}) ORDER BY {_ORDER}", files, params, most)
        if t is None:
            return None
        e = _Encoded(t, files)
        e.check(learn=learn)
        return e

    def _catalog(self) -> None:
        """Every file's row count and ``ts`` range (and venues, first previous close)."""
        for table, files in self._by_table(self.files):
            cols = ["_fi AS fi", "count(*) AS n", "count(ts) AS n_ts"]
            cols += ["min(epoch_us(ts)) AS lo", "max(epoch_us(ts)) AS hi"]
            if self.inventory:
                cols.append("list(DISTINCT venue) AS venues")
                if table == "trades":
                    prev = "TRY_CAST(CAST(price AS HUGEINT) - change AS BIGINT)"
                    cols.append(f"arg_min({prev}, _fr) FILTER (WHERE {prev} IS NOT NULL) AS prev")
            source = _FILES.format(offset=0, param="files")
            sql = f"SELECT {', '.join(cols)} FROM {source} GROUP BY _fi"
            t = self._query(sql, files, {"files": [str(f.path) for f in files]})
            assert t is not None  # no limit
            for row in t.to_pylist():
                f = files[row["fi"]]
                if row["n"] != row["n_ts"]:
                    raise StoreError(f"{f.path} has rows without ts; cannot replay it")
                f.rows, f.lo, f.hi = row["n"], row["lo"], row["hi"]
                if self.inventory:
                    f.venues = frozenset(v for v in row["venues"] if v is not None)
                    f.prev = row.get("prev")

    def _rank(self) -> list[list[_File]]:
        """Number the files in the row merge's run order; return the runs (chains)."""
        by_path = {f.path: f for f in self.files}

        def ts_range(path: Path) -> tuple[int, int] | None:
            f = by_path[path]
            return (f.lo, f.hi) if f.rows and f.lo is not None and f.hi is not None else None

        chains = []
        rank = itertools.count()
        for part in self.parts:
            for chain in chain_runs(part.files, ts_range):
                files = [by_path[p] for p in chain]
                for f in files:
                    f.rank = next(rank)
                chains.append(files)
        return chains

    # ---------------------------------------------------------------- encoded rows

    def _finish(self, e: _Encoded) -> pa.Table:
        """Ranks for ``fi``, the venue filter, the reference encoder's rows."""
        t = e.t
        if e.files:
            ranks = pa.array([f.rank for f in e.files], pa.int64())
            t = t.set_column(t.schema.get_field_index("fi"), "fi", pc.take(ranks, t.column("fi")))
        if "keep" in t.column_names:
            t = t.filter(t.column("keep")).drop_columns(["keep"])
        if "pc" in t.column_names:
            t = t.drop_columns(["pc"])
        return fill_reference(t, self._stored_rows, whole=self.entries)

    def _stored_rows(self, rank: int, positions: list[int]) -> tuple[str, list[tuple[Any, ...]]]:
        """The table and rows ``positions`` of the file ranked ``rank``, in the reference
        encoder's layout."""
        f = self.by_rank[rank]
        with reading(f.path):
            t = pq.ParquetFile(f.path).read()
        return f.part.table, rows_of(conform(t, SCHEMAS[f.part.table], f.part.symbol).take(positions))

    def _encode_wide(self, table: str, t: pa.Table) -> pa.Table:
        """Rows read by :class:`Run` (``_fi`` their file's rank, ``_fr``) → encoded rows."""
        name = f"_piece_{id(t)}"
        self._con.register(name, t)
        try:
            sql = entry_sql(table, name, whole=self.entries)
            params = {"prefixes": self.prefixes} if self.entries else None
            out = self._con.sql(sql, params=params).to_arrow_table()
        finally:
            self._con.unregister(name)
        return self._finish(_Encoded(out, []))

    def encode_group(self, files: list[_File]) -> pa.Table:
        """Small files (of either table) read and encoded in one statement, in order."""
        e = self._read(files)
        assert e is not None  # no limit
        return _ordered([self._finish(e)])

    def windows(self) -> Iterator[pa.Table]:
        """Encoded rows in replay order, a window at a time. Columns: ``ts``, ``recv`` (µs),
        ``seq``, ``fi`` (the file's rank: :attr:`by_rank`), ``fr``, ``sfx``, ``text``."""
        if self.streamed:
            yield from self._stream()
            return
        done, self._onepass = self._onepass, None  # one pass: the rows are read once
        if done is not None and len(done.t):
            t = _ordered([self._finish(done)])
            for off in range(0, len(t), self.group_rows):
                yield t.slice(off, self.group_rows)

    def _stream(self) -> Iterator[pa.Table]:
        small = [f for f in self.files if 0 < f.rows <= self.batch_rows]
        groups = _Groups(self, sorted(small, key=lambda f: (f.lo, f.rank)))
        ranks = {f.path: f.rank for f in self.files}
        runs = []
        for chain in self.chains:
            big = [f.path for f in chain if f.rows > self.batch_rows]
            if big:
                runs.append(Run(chain[0].part, big, self.batch_rows, ranks))
        for r in runs:
            r.load()
        while True:
            live = [r for r in runs if len(r.buf) or not r.done]
            if not live and not groups.live:
                return
            limits = [r.last_ts for r in live if not r.done]
            if groups.next_lo is not None:
                limits.append(groups.next_lo)
            bound = min(limits) if limits else None
            wide: dict[str, list[pa.Table]] = {}
            for r in live:
                piece = r.take_before(bound)
                if piece is not None:
                    wide.setdefault(r.table, []).append(piece)
            pieces = [self._encode_wide(table, pa.concat_tables(ps)) for table, ps in wide.items()]
            pieces += groups.take_before(bound)
            if pieces:
                yield _ordered(pieces)
            for r in live:
                if not r.done and r.last_ts == bound:
                    r.load()
            if groups.next_lo is not None and groups.next_lo == bound:
                groups.load()


@dataclass
class _Encoded:
    """The rows of ``files`` encoded by one statement (``fi`` numbers ``files``)."""

    t: pa.Table
    files: list[_File]

    def check(self, *, learn: bool) -> None:
        """Every file sorted by ``ts`` (the storage contract), no null keys; with ``learn``,
        each file's rows, ``ts`` range, venues and first ``price - change``."""
        t = self.t
        for key in ("ts", "recv", "seq"):
            if t.column(key).null_count:
                raise StoreError(f"{self.files[0].path.parent} has rows without {key}; cannot replay them")
        fi, fr, ts = (_numpy(t.column(k)) for k in ("fi", "fr", "ts"))
        order = np.lexsort((fr, fi))  # each file's rows in its own order
        fi, ts = fi[order], ts[order]
        same = fi[1:] == fi[:-1]
        bad = np.flatnonzero(same & (ts[1:] < ts[:-1]))
        if len(bad):
            path = self.files[int(fi[bad[0]])].path
            raise StoreError(f"{path} is not sorted by ts (the storage contract); cannot replay it")
        if not learn or not len(fi):
            return
        starts = np.flatnonzero(np.concatenate(([True], ~same)))
        ends = np.concatenate((starts[1:], [len(fi)]))
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            f = self.files[int(fi[a])]
            f.rows, f.lo, f.hi = b - a, int(ts[a]), int(ts[b - 1])
        self._learn_venues(order, fi, starts, ends)

    def _learn_venues(self, order: np.ndarray, fi: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        codes = pc.dictionary_encode(self.t.column("sfx")).combine_chunks()
        index = pc.fill_null(codes.indices, -1).to_numpy(zero_copy_only=False)[order]
        suffixes = codes.dictionary.to_pylist()
        for i, s in np.unique(np.stack([fi, index]), axis=1).T.tolist():
            if s >= 0:
                f = self.files[i]
                f.venues = f.venues | {SUFFIX_VENUE[suffixes[s]]}
        if "pc" not in self.t.column_names:
            return
        column = self.t.column("pc")
        valid = pc.is_valid(column).to_numpy(zero_copy_only=False)[order]
        prev = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)[order]
        where = np.flatnonzero(valid)
        first = np.searchsorted(where, starts)
        for a, b, k in zip(starts.tolist(), ends.tolist(), first.tolist(), strict=True):
            if k < len(where) and where[k] < b:
                self.files[int(fi[a])].prev = int(prev[where[k]])


class _Groups:
    """The small files of a streamed scan, read in groups in the order of their first ``ts``.

    What a group read and no window took yet waits as sorted pieces, merged only when they go
    out (:meth:`take_before`), so a row is moved once.
    """

    def __init__(self, scan: Scan, files: list[_File]) -> None:
        self._scan = scan
        self._todo = collections.deque(files)
        self._pieces: list[pa.Table] = []

    @property
    def next_lo(self) -> int | None:
        """First ``ts`` of the next file to read: every row below it has been read."""
        return _lo(self._todo[0]) if self._todo else None

    @property
    def live(self) -> bool:
        return bool(self._todo or self._pieces)

    def load(self) -> None:
        """Read the next files: about ``group_rows`` rows (at least one file), and up to twice
        that while the next file begins before the group's last ends.

        A capture's flush writes one file per partition over the same stretch of time: read
        together, its files come out in order, and what waits for the next group is small.
        """
        group = [self._todo.popleft()]
        n, hi = group[0].rows, _hi(group[0])
        most = self._scan.group_rows
        while self._todo and n + self._todo[0].rows <= (most if _lo(self._todo[0]) >= hi else 2 * most):
            f = self._todo.popleft()
            n, hi = n + f.rows, max(hi, _hi(f))
            group.append(f)
        t = self._scan.encode_group(group)
        if len(t):
            self._pieces.append(t)

    def take_before(self, bound: int | None) -> list[pa.Table]:
        """Remove and return the rows read with ``ts < bound`` (all for None), as sorted pieces."""
        out, keep = [], []
        for t in self._pieces:
            k = len(t) if bound is None else int(np.searchsorted(_numpy(t.column("ts")), bound))
            if k:
                out.append(t.slice(0, k))
            if k < len(t):
                keep.append(t.slice(k))
        self._pieces = keep
        return out


def _lo(f: _File) -> int:
    assert f.lo is not None, f"{f.path}: not in the catalog"  # files with rows always are
    return f.lo


def _hi(f: _File) -> int:
    assert f.hi is not None, f"{f.path}: not in the catalog"
    return f.hi


def _keep_sql(files: Sequence[_File]) -> str | None:
    """The venue filter as SQL over ``_fi`` (numbers into ``files``), None if there is none."""
    groups: dict[frozenset[str], list[int]] = {}
    for i, f in enumerate(files):
        if f.part.venues is not None:
            groups.setdefault(f.part.venues, []).append(i)
    if not groups:
        return None
    cases = []
    for venues, idx in groups.items():
        names = ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(venues))
        cases.append(f"WHEN _fi IN ({', '.join(map(str, idx))}) THEN venue IN ({names})")
    return f"CASE {' '.join(cases)} ELSE true END"


def _estimate_rows(files: Sequence[_File]) -> float:
    """The rows of ``files`` (of one table), from the footers of a sample of them and every
    file's size."""
    step = max(1, len(files) // SAMPLE_FILES)
    sample = files[::step]
    rows = size = 0
    for f in sample:
        with reading(f.path):
            rows += pq.read_metadata(f.path).num_rows
            size += f.path.stat().st_size
    if len(sample) == len(files):
        return rows
    with reading(files[0].path.parent):
        total = sum(f.path.stat().st_size for f in files)
    return rows / max(1, size) * total


def _numpy(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return col.to_numpy(zero_copy_only=False)  # type: ignore[no-any-return]


def _ordered(tables: list[pa.Table]) -> pa.Table:
    """Encoded rows in replay order: (ts, recv, seq), then the file's rank and the row's place."""
    t = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    keys = [_numpy(t.column(k)) for k in ("fr", "fi", "seq", "recv", "ts")]
    order = np.lexsort(keys)
    if (order[1:] > order[:-1]).all():
        return t
    return t.combine_chunks().take(order)  # a take across chunks would join them first anyway
