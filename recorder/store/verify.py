"""``recorder verify``: is every part file readable, well-formed and exactly what the journal says?

:func:`verify` reads every part file whole, checks its schema against
:data:`recorder.kiwoom.schema.SCHEMAS` (less the hive columns) and its (time, ``seq``) order, checks
that no writer has part files with overlapping frame ranges in one partition (duplicate rows),
decodes each writer's journal again with the real :class:`~recorder.store.pipeline.Pipeline` into a
scratch store and compares it with the store table by table as multisets of whole rows
(DuckDB ``EXCEPT ALL``; the journal is the truth, no column is left out; while a capture holds
the writer's journal lock, both sides stop at the journal checkpoint), reports temp files
older than a write can take as warnings and cumulative-volume continuity as information.
Status: ``clean`` (exit 0), ``problems`` (1), ``unreadable`` (2): the store, a journal or a
part file cannot be read at all. A truncated or garbage part file is ``unreadable``, not a
mere problem: every query over its table fails on it, DuckDB's included.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import JournalError, RecorderError, StoreError
from recorder.kiwoom.decode import SEQ_SHIFT
from recorder.kiwoom.fields import TABLES
from recorder.kiwoom.schema import SCHEMAS, file_schema
from recorder.store.compact import compaction_lock, replay_intents
from recorder.store.fs import lock_held
from recorder.store.inventory import Part, Scan, scan
from recorder.store.journal import list_writers, read_checkpoint, read_records
from recorder.store.layout import (
    INTENT_DIR,
    JOURNAL_DIR,
    LOCK,
    SORT_TIME,
    hive_types,
    journal_root,
    part_glob,
    partition_keys,
    partition_label,
)
from recorder.store.pipeline import Pipeline
from recorder.store.retention import rebuildable_from
from recorder.store.sink import Sink

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

log = logging.getLogger(__name__)

_SHOWN = 20  # continuity lines listed one by one


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Continuity:
    """Trades of one (date, symbol, venue) whose cum_volume is not the previous + volume."""

    date: str
    symbol: str
    venue: str
    trades: int
    breaks: int


@dataclass(slots=True)
class VerifyReport:
    """The outcome of :func:`verify`. ``status``: clean, problems or unreadable."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)
    continuity: list[Continuity] = field(default_factory=list)
    unreadable: bool = False
    files: int = 0
    rows: int = 0

    @property
    def status(self) -> str:
        return "unreadable" if self.unreadable else "problems" if self.problems else "clean"

    @property
    def exit_code(self) -> int:
        return {"clean": 0, "problems": 1, "unreadable": 2}[self.status]


def verify(
    data_dir: Path | S3Store,
    *,
    scratch_dir: Path | None = None,
    tmp_age_s: float = 600.0,
    now: float | None = None,
    journal_dir: Path | None = None,
) -> VerifyReport:
    """Check the whole store; see the module docstring for what is checked.

    An ``s3://`` store (:class:`~recorder.store.objstore.S3Store`) is checked from a copy of
    its objects in ``scratch_dir``, against the journals of its local store ``journal_dir``
    (see :func:`recorder.store.objstore.verify_remote`).

    Replays interrupted compactions first (the one change it makes). Temp files younger than
    ``tmp_age_s`` (by ``now``, epoch seconds) may belong to a write in progress and are not
    reported. ``scratch_dir``: where journals are decoded (default: the system temp dir).

    Raises:
        ConfigError: a compaction is running (verify afterwards).
    """
    if not isinstance(data_dir, Path):
        from recorder.store.objstore import verify_remote

        return verify_remote(data_dir, journal_dir=journal_dir, scratch_dir=scratch_dir, tmp_age_s=tmp_age_s)
    rep = VerifyReport()
    if not data_dir.is_dir():
        rep.unreadable = True
        rep.problems.append(f"{data_dir}: not a directory; no store to verify")
        return rep
    # The folder is created by the first compaction: none can run without it.
    busy = f"a compaction is running on {data_dir}; verify when it has finished"
    compacted = (data_dir / INTENT_DIR).is_dir()
    with compaction_lock(data_dir, busy) if compacted else contextlib.nullcontext():
        try:
            rep.warnings.extend(replay_intents(data_dir))
            found = scan(data_dir)
        except RecorderError as exc:
            rep.unreadable = True
            rep.problems.append(str(exc))
            return rep
        _verify(data_dir, found, rep, scratch_dir, tmp_age_s, time.time() if now is None else now)
    return rep


def _verify(
    data_dir: Path, found: Scan, rep: VerifyReport, scratch_dir: Path | None, tmp_age_s: float, now: float
) -> None:
    for t in found.temps:
        with contextlib.suppress(FileNotFoundError):  # a write in progress may just have renamed it
            if (age := now - t.stat().st_mtime) >= tmp_age_s:
                rep.warnings.append(
                    f"{_rel(data_dir, t)}: leftover temporary file, {age:.0f} s old "
                    "(a write that never completed; it holds no visible data and can be deleted)"
                )
    for s in found.strays:
        rep.warnings.append(f"{_rel(data_dir, s)}: not a part file of the store layout; ignored")
    readable = []
    for p in found.parts:
        rel = _rel(data_dir, p.path)
        problems, rows = _check_file(p, rel)
        rep.problems.extend(problems)
        rep.files += 1
        if rows is None:
            rep.unreadable = True
            continue
        rep.rows += rows
        readable.append(p)
        if p.writer is None:
            rep.warnings.append(f"{rel}: not named part-<writer>-<first>-<last>.parquet; compaction skips it")
    rep.problems.extend(_overlaps(found.parts))
    with contextlib.closing(duckdb.connect()) as con:
        for w in _writers_to_compare(data_dir, found.parts, rep):
            _compare_journal(con, data_dir, w, found.parts, readable, scratch_dir, rep)
        _continuity(con, [p for p in readable if p.table == "trades"], rep)


def _check_file(p: Part, rel: str) -> tuple[list[str], int | None]:
    """(problems, rows); rows is None when the file cannot be read at all."""
    try:
        with pq.ParquetFile(p.path) as pf:
            schema, rows = pf.schema_arrow, pf.metadata.num_rows
            _decode_all(pf)
            problems = _schema_problems(p.table, schema, rel)
            tcol = SORT_TIME[p.table]
            if not problems and rows > 1:
                t = pf.read(columns=[tcol, "seq"])
                ts, seq = pc.cast(t[tcol], pa.int64()).combine_chunks(), t["seq"].combine_chunks()
                back = pc.or_(
                    pc.less(ts[1:], ts[:-1]), pc.and_(pc.equal(ts[1:], ts[:-1]), pc.less(seq[1:], seq[:-1]))
                )
                if n := pc.sum(back).as_py():
                    at = pc.index(back, True).as_py() + 1
                    problems.append(f"{rel}: {n} rows out of ({tcol}, seq) order, first at row {at}")
    except (*_READ_ERRORS, StoreError) as exc:
        return [f"{rel}: cannot read: {exc}"], None
    return problems, rows


_READ_ERRORS = (OSError, ValueError, pa.ArrowException)


def _decode_all(pf: pq.ParquetFile) -> None:
    """Decode every page in bounded memory; on failure, name the column that fails."""
    try:
        for _ in pf.iter_batches(batch_size=1 << 16):
            pass
    except _READ_ERRORS as exc:
        for col in pf.schema_arrow.names:
            try:
                for _ in pf.iter_batches(batch_size=1 << 16, columns=[col]):
                    pass
            except _READ_ERRORS as col_exc:
                raise StoreError(f"column {col!r}: {col_exc}") from col_exc
        raise StoreError(str(exc)) from exc


def _schema_problems(table: str, schema: pa.Schema, rel: str) -> list[str]:
    want = file_schema(table)
    got = {f.name: f.type for f in schema}
    out = [f"{rel}: column {f.name!r} is missing" for f in want if f.name not in got]
    out += [f"{rel}: unexpected column {n!r}" for n in got if n not in want.names]
    out += [
        f"{rel}: column {f.name!r} is {got[f.name]}, expected {f.type}"
        for f in want
        if f.name in got and got[f.name] != f.type
    ]
    return out


def _overlaps(parts: list[Part]) -> list[str]:
    """A writer's ranges in one partition never overlap, unless rows are duplicated."""
    groups: dict[tuple[str, str, str, str], list[Part]] = defaultdict(list)
    for p in parts:
        if p.writer is not None:
            groups[(p.table, p.date, p.symbol or "", p.writer)].append(p)
    out = []
    for (*_, w), ps in sorted(groups.items()):
        ps.sort(key=lambda p: (p.first_fno, p.last_fno))
        for a, b in itertools.pairwise(ps):
            if b.first_fno <= a.last_fno:
                out.append(
                    f"{a.where}: part files of writer {w} cover overlapping frames "
                    f"({a.path.name}, {b.path.name}): their rows are probably duplicated"
                )
    return out


def _writers_to_compare(data_dir: Path, parts: list[Part], rep: VerifyReport) -> list[str]:
    try:
        writers = list_writers(data_dir / JOURNAL_DIR)
    except RecorderError as exc:
        rep.unreadable = True
        rep.problems.append(str(exc))
        return []
    for w in sorted({p.writer for p in parts if p.writer} - set(writers)):
        rep.info.append(f"writer {w}: no journal (ingested data); rows not compared with a journal")
    return writers


def _compare_journal(
    con: duckdb.DuckDBPyConnection,
    data_dir: Path,
    writer: str,
    parts: list[Part],
    readable: list[Part],
    scratch_dir: Path | None,
    rep: VerifyReport,
) -> None:
    """Decode ``writer``'s journal into a scratch store and diff it with the store, per table.

    While a capture holds the journal lock, only frames up to the journal checkpoint are
    compared (later ones may still be in the capture's buffers), on both sides.
    """
    root = journal_root(data_dir, writer)
    live = lock_held(root / LOCK)
    try:
        checkpoint = read_checkpoint(root)
        bound = checkpoint if live else None
        with tempfile.TemporaryDirectory(prefix="recorder-verify-", dir=scratch_dir) as tmp:
            sink = Sink(Path(tmp), writer)
            pipe = Pipeline(sink)
            records = read_records(root)
            if bound is not None:
                records = itertools.takewhile(lambda r: r.fno <= bound, records)
            pipe.feed_records(records)
            pipe.drain()
            sink.close()
            ok = {p.path for p in readable}
            first = rebuildable_from(data_dir, writer)
            if first:
                rep.info.append(
                    f"writer {writer}: journal pruned before frame {first}; rows of earlier frames "
                    "are not compared and cannot be rebuilt (gaps not compared)"
                )
            for table in TABLES:
                if first and table == "gaps":
                    continue  # a journal read from mid-stream decodes its gaps differently
                mine = [p for p in parts if p.writer == writer and p.table == table]
                if any(p.path not in ok for p in mine):
                    rep.warnings.append(f"{table} of writer {writer}: unreadable files; not compared")
                    continue
                theirs = sorted(Path(tmp).glob(part_glob(table)))
                limit = None if bound is None else (bound + 1) << SEQ_SHIFT
                try:
                    diffs = _diff(con, table, [p.path for p in mine], theirs, limit, first << SEQ_SHIFT)
                except duckdb.Error as exc:
                    rep.problems.append(f"{table} of writer {writer}: cannot compare with the journal: {exc}")
                    continue
                for what, date, symbol, n in diffs:
                    where = partition_label(table, date, symbol)
                    msg = "missing from the store" if what == "missing" else "not in the journal"
                    late = what == "missing" and not live and pipe.last_fno > checkpoint
                    hint = " (a capture was interrupted; its next start recovers frames after the checkpoint)"
                    rep.problems.append(f"{where} (writer {writer}): {n} rows {msg}{hint if late else ''}")
    except JournalError as exc:
        rep.unreadable = True
        rep.problems.append(f"journal of writer {writer}: {exc}")
        return
    except StoreError as exc:  # the scratch store, or a writer id the sink refuses
        rep.problems.append(f"journal of writer {writer}: cannot decode it for the comparison: {exc}")
        return
    upto = f"up to the checkpoint, frame {checkpoint} (a capture is running)" if live else "whole"
    rep.info.append(f"writer {writer}: journal ({upto}) decoded and compared, frames up to {pipe.last_fno}")


def _source(con: duckdb.DuckDBPyConnection, table: str, files: list[Path], name: str) -> str:
    """A FROM clause over ``files`` with the hive columns, or over an empty table of the schema."""
    if not files:
        con.register(name, SCHEMAS[table].empty_table().append_column("date", pa.array([], pa.string())))
        return name
    listing = ", ".join("'" + f.as_posix().replace("'", "''") + "'" for f in files)
    hive = hive_types(table, "VARCHAR")
    return f"read_parquet([{listing}], hive_partitioning = true, hive_types = {hive}, union_by_name = true)"


def _diff(
    con: duckdb.DuckDBPyConnection,
    table: str,
    store: list[Path],
    journal: list[Path],
    limit: int | None,
    start: int = 0,
) -> list[tuple[str, str, str | None, int]]:
    """Rows per partition in one multiset and not the other: ("missing"|"extra", date, symbol, n),
    over rows with ``start <= seq < limit``."""
    cols = ", ".join(f'"{c}"' for c in (*SCHEMAS[table].names, "date"))
    bounds = [f"seq >= {int(start)}"] if start else []
    bounds += [] if limit is None else [f"seq < {int(limit)}"]
    where = f" WHERE {' AND '.join(bounds)}" if bounds else ""
    s = f"SELECT {cols} FROM {_source(con, table, store, '_store_side')}{where}"
    j = f"SELECT {cols} FROM {_source(con, table, journal, '_journal_side')}{where}"
    sym = "symbol" if "symbol" in partition_keys(table) else "NULL::VARCHAR"
    q = (
        f"SELECT 'missing', date, {sym}, count(*) FROM ({j} EXCEPT ALL {s}) GROUP BY ALL UNION ALL "
        f"SELECT 'extra', date, {sym}, count(*) FROM ({s} EXCEPT ALL {j}) GROUP BY ALL ORDER BY ALL"
    )
    return con.sql(q).fetchall()


def _continuity(con: duckdb.DuckDBPyConnection, files: list[Part], rep: VerifyReport) -> None:
    if not files:
        return
    q = f"""
        SELECT date, symbol, venue, count(*),
               count(*) FILTER (WHERE prev IS NOT NULL AND cum_volume <> prev + volume)
        FROM (SELECT date, symbol, venue, cum_volume, volume,
                     lag(cum_volume) OVER (PARTITION BY date, symbol, venue ORDER BY ts, seq) AS prev
              FROM {_source(con, "trades", [p.path for p in files], "_trades")})
        GROUP BY ALL ORDER BY ALL"""
    try:
        rep.continuity = [Continuity(*row) for row in con.sql(q).fetchall()]
    except duckdb.Error as exc:
        rep.warnings.append(f"cumulative-volume continuity not computed: {exc}")
        return
    broken = [c for c in rep.continuity if c.breaks]
    rep.info.append(
        f"continuity: {sum(c.breaks for c in broken)} cum_volume breaks in {len(broken)} of "
        f"{len(rep.continuity)} (date, symbol, venue) streams, {sum(c.trades for c in rep.continuity)} trades"
    )
    for c in broken[:_SHOWN]:
        rep.info.append(f"continuity: {c.date} {c.symbol} {c.venue}: breaks {c.breaks}, trades {c.trades}")
    if len(broken) > _SHOWN:
        rep.info.append(f"continuity: … and {len(broken) - _SHOWN} more streams with breaks")


def _rel(data_dir: Path, p: Path) -> str:
    return p.relative_to(data_dir).as_posix()
