"""Decoded rows → Hive-partitioned Parquet part files, atomically, exactly once.

Rows are buffered per (table, date, symbol) and flushed when a buffer holds ``max_rows``
rows, when all buffers together exceed ``max_bytes`` (the largest goes first), when a
buffer is older than ``max_age_s``, and on :meth:`Sink.close`. A flush writes a temporary
file per partition opened with ``O_EXCL`` (nothing is ever truncated); then one
:class:`~recorder.store.fs.DurableBatch` commit makes them all durable and renames them into
place, so a part file is visible only complete, and a flush of thousands of partitions waits
for the disk twice, not twice per file. Rows inside a file are sorted by
(``ts``, ``seq``); compression is zstd, or snappy for the part files of a live capture (its
compaction rewrites them in zstd: snappy costs half the time per file, the flush is on the
capture's critical path, and the files are about 1.5x the size). In zstd the ``trades`` and
``orderbook`` files of a flush are encoded together by :mod:`recorder.store.parquet_small`
(about a fifth of pyarrow's CPU per file: what a flush of thousands of partitions costs).

File names say what they hold: ``part-<writer>-<first fno>-<last fno>.parquet``, the
journal frame numbers of the first and last row. That makes recovery exactly-once: with
``resume=True`` the sink drops rows whose frame a part file of the same writer already
holds in that partition (a partition's rows are appended in frame order and a frame's rows
for one partition are always flushed together).

A write error raises :class:`~recorder.errors.StoreError`; it is never swallowed.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import StoreError
from recorder.kiwoom.decode import SEQ_SHIFT, Decoded, TableColumns
from recorder.kiwoom.fields import MARKET_TABLES
from recorder.kiwoom.schema import SCHEMAS, TIMESTAMP, timestamps
from recorder.kiwoom.time import kst_date
from recorder.store.encoding import STAT_COLUMNS
from recorder.store.fs import DurableBatch, atomic_write
from recorder.store.layout import SORT_TIME, WRITER_RE, parse_part_name, part_name, partition_dir

_WRITERS = min(os.cpu_count() or 1, 8)  # threads writing the partitions of one flush
_RUNS_PER_BUDGET = 8  # a full buffer holds about this many sorted runs per table

#: Writes one part file: ``write(rows, final, batch)`` puts ``rows`` into ``batch`` (to appear at
#: ``final`` when the flush commits it). :func:`write_part` is the store's own.
PartWriter = Callable[[pa.Table, Path, DurableBatch], None]


@dataclass(frozen=True, slots=True)
class Gap:
    """One row of the ``gaps`` table (times in epoch ns)."""

    start_ns: int
    end_ns: int | None
    kind: str
    detail: str
    symbols: tuple[str, ...]
    seq: int


PartKey = tuple[str, str, str | None]  # (table, date, symbol or None)


@dataclass(slots=True)
class _Run:
    """Buffered rows sorted by (partition, time, seq), less the partition columns, and where
    each partition's rows are: ``where[key] = (start, stop)``."""

    body: pa.Table
    where: dict[PartKey, tuple[int, int]]

    @property
    def nbytes(self) -> int:
        return self.body.nbytes


@dataclass(slots=True)
class _Buffer:
    """Rows of one table waiting to be written: recent Arrow tables with a ``date`` column as
    they came (``chunks``), and older ones already sorted into :class:`_Run` s."""

    created: float
    chunks: list[pa.Table] = field(default_factory=list)
    chunk_bytes: int = 0
    runs: list[_Run] = field(default_factory=list)
    rows: int = 0
    first_fno: int = -1

    @property
    def nbytes(self) -> int:
        return self.chunk_bytes + sum(r.nbytes for r in self.runs)


class Sink:
    """Buffers decoded rows per table and writes one part file per partition on flush.

    Args:
        root: the store (``DATA_DIR``).
        writer: this writer's id; part file names carry it so that several processes can
            share one store without collisions.
        max_rows: flush a table when it buffers this many rows.
        max_bytes: flush the largest table while all buffers together hold more.
        max_age_s: flush a table whose oldest buffered row is this old (by ``clock``).
        resume: skip rows that part files of this writer already hold (crash recovery).
        rejects_date: the trading date (``YYYY-MM-DD``) every ``rejects`` row is filed under;
            default: the KST date of its receive time. Ingest of a past day's frames sets it,
            as their receive time is the time of the ingest.
        run_bytes: buffered rows are sorted into a run whenever this many bytes came in
            since the last one (default an eighth of ``max_bytes``, at least 1 MiB), so that a
            flush writes each partition from slices of a few runs and never holds a sorted
            copy of everything it writes.
        clock: monotonic seconds.
        write: writes one part file into the flush's batch; default :func:`write_part`. A
            test or a soak run passes a slower or failing writer here.
        compression: the Parquet codec of the default writer (``zstd`` or ``snappy``).
        group_rows: with the small-file writer, partitions are encoded together in groups
            of about this many rows (a group's pages are held uncompressed, compressed and
            assembled at once; one group compresses while the next is encoded).
    """

    def __init__(
        self,
        root: Path,
        writer: str,
        *,
        max_rows: int = 2_000_000,
        max_bytes: int = 512 << 20,
        max_age_s: float = 900.0,
        resume: bool = False,
        rejects_date: str | None = None,
        run_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        write: PartWriter | None = None,
        compression: str = "zstd",
        group_rows: int = 32_768,
    ) -> None:
        if not WRITER_RE.fullmatch(writer):
            raise StoreError(f"writer id {writer!r} must be letters, digits, '.', '_' and '-'")
        self.root = root
        self.writer = writer
        self.max_rows, self.max_bytes, self.max_age_s = max_rows, max_bytes, max_age_s
        self.run_bytes = run_bytes if run_bytes is not None else max(1 << 20, max_bytes // _RUNS_PER_BUDGET)
        self.resume = resume
        self.rejects_date = rejects_date
        self.clock = clock
        self._write = write or functools.partial(write_part, compression=compression)
        # The market tables' part files of a flush in one go: much cheaper per file than
        # pyarrow's writer (zstd only; resuming after a crash filters per partition first).
        self._small = write is None and compression == "zstd" and not resume
        self.group_rows = group_rows
        self._buffers: dict[str, _Buffer] = {}
        self._done: dict[tuple[str, str, str | None], int] = {}  # partition → last fno on disk
        self.files_written = 0
        self.rows_written: dict[str, int] = dict.fromkeys(SCHEMAS, 0)
        self.rows_skipped = 0

    def prepare(self) -> None:
        """Do the one-time work of the first flush now (a caller with a moment to spare: ingest
        while its first block is parsed)."""
        if self._small:
            from recorder.store import parquet_small

            for table in MARKET_TABLES:
                body = _layout(table).empty_table().drop_columns(["date", "symbol"])
                parquet_small.prepare(body.schema, STAT_COLUMNS)

    # ----------------------------------------------------------------- adding rows

    def add(self, decoded: Decoded) -> None:
        """Buffer a decoder result (market rows and rejects)."""
        for table, cols in decoded.tables.items():
            self._add_market(table, cols)
        if decoded.rejects:
            recv, seq, reason, raw = (list(c) for c in zip(*decoded.rejects, strict=True))
            t = pa.table(
                {"recv_ts": timestamps(recv), "seq": seq, "reason": reason, "raw": raw},
                schema=SCHEMAS["rejects"],
            )
            dates = [self.rejects_date or kst_date(r) for r in recv]
            self._buffer("rejects", t.append_column("date", pa.array(dates, pa.string())))
        self._enforce_limits()

    def add_tables(self, tables: dict[str, pa.Table]) -> None:
        """Buffer rows already built as Arrow tables (:mod:`recorder.kiwoom.decode_arrow`, a backfill).

        Each table must have exactly the fields of ``SCHEMAS[table]`` followed by a ``date``
        string column (the KST date the row is filed under): the layout :meth:`_add_market`
        builds from a decoder result. Empty tables are skipped.

        Raises:
            StoreError: for an unknown table or a table in another layout.
        """
        for table, t in tables.items():
            if table not in SCHEMAS or not t.schema.equals(_layout(table)):
                raise StoreError(f"{table}: not a table of the store in the schema + date layout")
            if len(t):
                self._buffer(table, t)
        self._enforce_limits()

    def add_gaps(self, gaps: Iterable[Gap]) -> None:
        rows = list(gaps)
        if not rows:
            return
        t = pa.table(
            {
                "start_ts": timestamps([g.start_ns for g in rows]),
                "end_ts": timestamps([g.end_ns for g in rows]),
                "kind": [g.kind for g in rows],
                "detail": [g.detail for g in rows],
                "symbols": [list(g.symbols) for g in rows],
                "seq": [g.seq for g in rows],
            },
            schema=SCHEMAS["gaps"],
        )
        self._buffer("gaps", t.append_column("date", pa.array([kst_date(g.start_ns) for g in rows])))
        self._enforce_limits()

    def _add_market(self, table: str, cols: TableColumns) -> None:
        schema = SCHEMAS[table]
        try:
            arrays = [
                timestamps(cols.columns[f.name])
                if f.type == TIMESTAMP
                else pa.array(cols.columns[f.name], type=f.type)
                for f in schema
            ]
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:  # decoder guarantees types
            raise StoreError(f"{table}: decoded values do not fit the schema: {exc}") from exc
        arrays.append(pa.array(cols.columns["date"], pa.string()))
        self._buffer(table, pa.Table.from_arrays(arrays, schema=schema.append(pa.field("date", pa.string()))))

    def _buffer(self, table: str, t: pa.Table) -> None:
        buf = self._buffers.get(table)
        if buf is None:
            buf = self._buffers[table] = _Buffer(created=self.clock())
        first = pc.min(t["seq"]).as_py() >> SEQ_SHIFT
        buf.first_fno = first if buf.first_fno < 0 else min(buf.first_fno, first)
        buf.chunks.append(t)
        buf.chunk_bytes += t.nbytes
        buf.rows += len(t)
        if buf.rows >= self.max_rows:
            self._flush(table)
        elif buf.chunk_bytes >= self.run_bytes:
            buf.runs.append(_sorted_run(table, buf.chunks))
            buf.chunks, buf.chunk_bytes = [], 0

    # ----------------------------------------------------------------- flushing

    def _enforce_limits(self) -> None:
        while self._buffers and sum(b.nbytes for b in self._buffers.values()) > self.max_bytes:
            self._flush(max(self._buffers, key=lambda k: self._buffers[k].nbytes))

    def due(self) -> bool:
        """Has a table buffered rows for longer than ``max_age_s``?"""
        now = self.clock()
        return any(now - b.created >= self.max_age_s for b in self._buffers.values())

    def flush_due(self) -> int:
        """Flush tables whose oldest buffered row is older than ``max_age_s``; returns how many."""
        now = self.clock()
        due = [k for k, b in self._buffers.items() if now - b.created >= self.max_age_s]
        self._flush(*due)
        return len(due)

    def flush_all(self) -> None:
        self._flush(*self._buffers)

    def close(self) -> None:
        """Flush everything. Safe to call twice."""
        self.flush_all()

    @property
    def pending_first_fno(self) -> int | None:
        """The oldest journal frame with rows still only in memory, or None."""
        if not self._buffers:
            return None
        return min(b.first_fno for b in self._buffers.values())

    @property
    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    def _flush(self, *tables: str) -> None:
        """Write the rows of ``tables``: one file per partition, rows sorted by (time, seq).

        With pyarrow's writer, partitions are written on a pool of threads (Arrow's take and
        the Parquet writer release the GIL), each from its slices of the table's sorted runs,
        so a flush holds at most one sorted copy of a partition per thread beyond the buffered
        rows. Files from :mod:`~recorder.store.parquet_small` come encoded a group at a time
        and are written on this thread: a few system calls each, which on other threads would
        wait for the GIL after every call while this one encodes (measured: the same wall
        time, 0.5 s more CPU at 2,000 symbols). All the files of one flush appear together
        (:class:`~recorder.store.fs.DurableBatch`).
        """
        if not tables:
            return
        counts: list[tuple[str, tuple[int, int]]] = []
        writes: list[tuple[str, Future[tuple[int, int]]]] = []
        batch = DurableBatch(self.root)
        try:
            with ThreadPoolExecutor(_WRITERS, thread_name_prefix="sink-flush") as pool:
                for table in tables:
                    buf = self._buffers.pop(table)
                    runs = buf.runs
                    if buf.chunks:
                        runs.append(_sorted_run(table, buf.chunks))
                    del buf
                    if self._small and table in MARKET_TABLES:
                        for key, data, first, last, n in _small_files(table, runs, self.group_rows):
                            counts.append((table, self._write_file(key, data, first, last, n, batch)))
                    else:
                        for key, spans in _partition_spans(runs):
                            writes.append((table, pool.submit(self._write_partition, key, spans, batch)))
                    del runs
                # on an error, leaving the pool still waits for the rest
                counts += [(table, write.result()) for table, write in writes]
            batch.commit()
        except OSError as exc:
            raise StoreError(f"cannot write part files under {self.root}: {exc}") from exc
        finally:
            batch.abort()  # a no-op after a commit
        for table, (written, skipped) in counts:
            self.files_written += bool(written)
            self.rows_written[table] += written
            self.rows_skipped += skipped

    def _write_partition(self, key: PartKey, spans: list[_Span], batch: DurableBatch) -> tuple[int, int]:
        """Write one partition's rows (less those on disk when resuming): (rows written, skipped)."""
        # Sliced here, not when the work is queued: a slice of a 166-column run is 166 Arrow
        # objects, and slicing a thousand partitions up front cost 200 MB of resident memory.
        part = _merge(key[0], [run.body.slice(a, b - a) for run, a, b in spans])
        skipped = 0
        if self.resume:
            part, skipped = self._skip_written(key, part)
            if len(part) == 0:
                return 0, skipped
        mm = pc.min_max(part["seq"]).as_py()
        final = partition_dir(self.root, *key) / part_name(
            self.writer, mm["min"] >> SEQ_SHIFT, mm["max"] >> SEQ_SHIFT
        )
        self._write(part, final, batch)
        return len(part), skipped

    def _write_file(
        self, key: PartKey, data: bytes, first: int, last: int, n: int, batch: DurableBatch
    ) -> tuple[int, int]:
        """Put one part file's bytes (:mod:`recorder.store.parquet_small`) into ``batch``."""
        final = partition_dir(self.root, *key) / part_name(self.writer, first, last)
        try:
            batch.write(final, data)
        except OSError as exc:
            raise StoreError(f"cannot write {final}: {exc}") from exc
        return n, 0

    def _skip_written(self, key: tuple[str, str, str | None], t: pa.Table) -> tuple[pa.Table, int]:
        done = self._done.get(key)
        if done is None:
            done = self._done[key] = self._last_fno_on_disk(key)
        if done < 0:
            return t, 0
        kept = t.filter(pc.greater_equal(t["seq"], (done + 1) << SEQ_SHIFT))
        return kept, len(t) - len(kept)

    def _last_fno_on_disk(self, key: tuple[str, str, str | None]) -> int:
        try:
            names = os.listdir(partition_dir(self.root, *key))
        except FileNotFoundError:
            return -1
        last = -1
        for name in names:
            got = parse_part_name(name)
            if got is not None and got[0] == self.writer:
                last = max(last, got[2])
        return last


def _sorted_run(table: str, chunks: list[pa.Table]) -> _Run:
    """Buffered chunks as one :class:`_Run`: sorted by (partition, time, seq)."""
    parts = ["date", "symbol"] if table in MARKET_TABLES else ["date"]
    keys = [(name, "ascending") for name in (*parts, SORT_TIME[table], "seq")]
    t = pa.concat_tables(chunks)
    order = pc.sort_indices(t.select([k for k, _ in keys]), sort_keys=keys)
    sorted_parts = t.select(parts).take(order)
    changed = [pc.not_equal(c[1:], c[:-1]) for c in sorted_parts.columns]
    bounds = pc.indices_nonzero(functools.reduce(pc.or_, changed)).to_pylist()
    starts = [0, *(i + 1 for i in bounds)]
    names = sorted_parts.take(starts).to_pylist()
    body = t.drop_columns(parts).take(order).combine_chunks()
    where = {
        (table, name["date"], name.get("symbol")): (a, b)
        for (a, b), name in zip(itertools.pairwise([*starts, len(order)]), names, strict=True)
    }
    return _Run(body, where)


_Span = tuple[_Run, int, int]  # rows [a, b) of a run


def _partition_spans(runs: list[_Run]) -> Iterator[tuple[PartKey, list[_Span]]]:
    """Each partition of ``runs`` (in key order) with where its rows are, one span per run holding any."""
    keys = sorted({k for run in runs for k in run.where}, key=lambda k: (k[1], k[2] or ""))
    for key in keys:
        yield key, [(run, *run.where[key]) for run in runs if key in run.where]


def _small_files(
    table: str, runs: list[_Run], group_rows: int
) -> Iterator[tuple[PartKey, bytes, int, int, int]]:
    """Each partition's part file, encoded by :func:`recorder.store.parquet_small.write_files`:
    (key, file bytes, first fno, last fno, rows), in key order, a group of partitions at a time."""
    from recorder.store import parquet_small

    keys = sorted({k for run in runs for k in run.where}, key=lambda k: (k[1], k[2] or ""))
    order = None
    if len(runs) == 1:
        body, where = runs[0].body, runs[0].where
        spans = [where[k] for k in keys]
    else:
        body, order, spans = _merged(table, runs, keys)
    # Each group is compressed on another thread while the next is encoded and the one
    # before assembled: zstd releases the GIL, and both cores stay busy.
    with ThreadPoolExecutor(1, thread_name_prefix="sink-zstd") as zstd:
        pending: list[tuple[int, int, parquet_small.Encoded, Future[Any], np.ndarray, list[int]]] = []
        i = 0
        while i < len(keys):
            j, lo = i + 1, spans[i][0]
            while j < len(keys) and spans[j][1] - lo <= group_rows:
                j += 1
            hi = spans[j - 1][1]
            group = body.slice(lo, hi - lo) if order is None else body.take(order.slice(lo, hi - lo))
            starts = [a - lo for a, _ in spans[i:j]] + [hi - lo]
            encoded = parquet_small.encode(group, starts, stats=STAT_COLUMNS)
            pending.append(
                (
                    i,
                    j,
                    encoded,
                    zstd.submit(parquet_small.compress, encoded),
                    group.column("seq").to_numpy(),
                    starts,
                )
            )
            del group, encoded
            if len(pending) > 1:
                yield from _assembled(keys, *pending.pop(0))
            i = j
        for job in pending:
            yield from _assembled(keys, *job)


def _assembled(
    keys: list[PartKey],
    i: int,
    j: int,
    encoded: Any,
    packed: Future[Any],
    seq: np.ndarray,
    starts: list[int],
) -> Iterator[tuple[PartKey, bytes, int, int, int]]:
    """The files of partitions ``keys[i:j]``, encoded as one group (see :func:`_small_files`)."""
    from recorder.store import parquet_small

    files = parquet_small.assemble(encoded, packed.result())
    first = np.minimum.reduceat(seq, starts[:-1]) >> SEQ_SHIFT
    last = np.maximum.reduceat(seq, starts[:-1]) >> SEQ_SHIFT
    for k in range(j - i):
        yield keys[i + k], files[k], int(first[k]), int(last[k]), starts[k + 1] - starts[k]


def _merged(
    table: str, runs: list[_Run], keys: list[PartKey]
) -> tuple[pa.Table, pa.Array, list[tuple[int, int]]]:
    """Several runs in one order: partitions in ``keys`` order, each sorted by (time, seq).

    Returns the runs' rows back to back, the order to take them in, and each partition's
    span in that order."""
    pid = {k: i for i, k in enumerate(keys)}
    ids = []
    for run in runs:
        order = sorted(run.where.items(), key=lambda kv: kv[1][0])
        ids.append(np.repeat([pid[k] for k, _ in order], [b - a for _, (a, b) in order]))
    body = pa.concat_tables([run.body for run in runs])
    sort = pa.table(
        {"pid": np.concatenate(ids), "t": body.column(SORT_TIME[table]), "seq": body.column("seq")}
    )
    order = pc.sort_indices(sort, sort_keys=[("pid", "ascending"), ("t", "ascending"), ("seq", "ascending")])
    counts = np.bincount(np.concatenate(ids), minlength=len(keys))
    ends = np.cumsum(counts)
    spans = list(zip((ends - counts).tolist(), ends.tolist(), strict=True))
    return body, order, spans


def _merge(table: str, slices: list[pa.Table]) -> pa.Table:
    """One partition's rows from its slices of several runs, sorted by (time, seq)."""
    if len(slices) == 1:
        return slices[0]
    t = pa.concat_tables(slices)
    keys = [(SORT_TIME[table], "ascending"), ("seq", "ascending")]
    return t.take(pc.sort_indices(t.select([k for k, _ in keys]), sort_keys=keys))


def _layout(table: str) -> pa.Schema:
    """``SCHEMAS[table]`` plus the ``date`` partition column: what buffers hold."""
    return SCHEMAS[table].append(pa.field("date", pa.string()))


def write_part(
    t: pa.Table, final: Path, batch: DurableBatch | None = None, *, compression: str = "zstd"
) -> None:
    """Write ``t`` to ``final``: into ``batch`` (visible when it commits), or on its own
    with :func:`recorder.store.fs.atomic_write` (visible and durable when this returns).

    Raises:
        StoreError: on any filesystem or Arrow error, or if ``final`` already exists.
    """
    try:
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if batch is None:
            with atomic_write(final) as f:
                _write_parquet(t, f, compression)
        else:
            with batch.create(final) as f:
                _write_parquet(t, f, compression)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot write {final}: {exc}") from exc


def _write_parquet(t: pa.Table, f: Any, compression: str = "zstd") -> None:
    pq.write_table(t, f, compression=compression, **_write_options(t.schema))


def _write_options(schema: pa.Schema) -> dict[str, Any]:
    """Dictionary-encode only strings, keep statistics only where queries prune on them.

    Numeric columns gain nothing from dictionaries, and per-column statistics for ~160
    columns cost more (write time and file size) than they give.
    """
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    stats = [n for n in STAT_COLUMNS if n in schema.names]
    return {"use_dictionary": strings, "write_statistics": stats}


def read_table(root: Path, table: str, **filters: Any) -> pa.Table:
    """Read a whole table back (tests and small tools; queries use DuckDB)."""
    import pyarrow.dataset as ds

    from recorder.kiwoom.schema import partitioning

    path = root / table
    if not path.exists():
        return SCHEMAS[table].empty_table()
    dataset = ds.dataset(
        path,
        format="parquet",
        partitioning=partitioning(table),
        exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )
    return dataset.to_table(**filters)
