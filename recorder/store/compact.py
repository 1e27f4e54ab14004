"""Store maintenance: inventory (``recorder ls``) and small-file merging (``compact``).

:func:`inventory` reads Parquet footers only. Integrity checking (``recorder verify``) lives
in :mod:`recorder.store.verify` and shares the scanning and locking helpers here.

Compaction. The part files of each (table, partition, writer) group of two or more become one
``part-<writer>-<first fno of the group>-<last fno>.parquet``, rows sorted by (time, ``seq``).
One output per writer keeps exactly-once resume working: the sink takes a writer's last
frame in a partition from the names, and the highest one never changes.

Crash safety. Readers glob plain files (DuckDB, Spark, pandas), so none can be told to skip
a superseded file, and POSIX has no atomic multi-file swap (exchanging a partition directory
would pull files from under other writers writing into it). So, per group:

1. an intent ``_compaction/intent-<id>.json`` naming the output and each input (name, bytes)
   and the row count is written atomically (temp, fsync, rename, fsync dir);
2. the merged file is written with :func:`recorder.store.sink.write_part` (temp, fsync, rename);
3. the inputs are unlinked, then their directory is fsynced;
4. the intent is unlinked.

A crash before the rename of 2 leaves the inputs untouched; replaying the intent rolls back
(removes a leftover temp file). A crash after it and before 3 is done leaves inputs and output
visible together: duplicate rows, until :func:`finish_compactions` replays the intent and rolls
forward (unlinks the inputs still there, provided the output holds the intent's row count and
each input still has its recorded size). ``compact`` and ``verify`` replay first; capture
start should too (see :func:`finish_compactions`). ``verify`` also flags overlapping ranges
left without an intent. Resume stays exactly-once in every state.

Locks: ``_compaction/LOCK`` (flock) serialises ``compact`` and ``verify`` (which refuses to
read a store being compacted, as it would see the window above). Compaction also holds the
journal lock (``_journal/<writer>/LOCK``) of each writer it compacts, so it refuses to run
while that writer captures, and that writer's capture cannot start meanwhile. Ingested writers
have no journal, hence no lock: do not compact while ``recorder ingest`` writes. A group is
merged in memory (one writer's files of one partition at a time).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StoreError
from recorder.kiwoom.fields import TABLES
from recorder.store.fs import acquire_lock, fsync_dir, lock_held, write_atomic
from recorder.store.journal import list_writers, read_checkpoint
from recorder.store.layout import (
    INTENT_DIR,
    INTENT_GLOB,
    JOURNAL_DIR,
    LOCK,
    SORT_TIME,
    TMP_RE,
    intent_path,
    journal_root,
    parse_part,
    parse_part_name,
    part_name,
    temp_path,
)
from recorder.store.sink import write_part

log = logging.getLogger(__name__)

_SHOWN = 20  # continuity lines listed one by one

#: Called after each compaction step ("intent-written", "merged-visible", "input-removed",
#: "intent-removed"); tests raise from it to simulate a crash right there.
Hook = Callable[[str], None]


# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True, slots=True)
class _Part:
    """A Parquet file where a query reads one; ``writer`` is None unless sink-named."""

    path: Path
    table: str
    date: str
    symbol: str | None
    size: int
    writer: str | None
    first: int
    last: int

    @property
    def where(self) -> str:
        return f"{self.table} date={self.date}" + (f" symbol={self.symbol}" if self.symbol else "")


@dataclass(slots=True)
class _Scan:
    parts: list[_Part] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)
    strays: list[Path] = field(default_factory=list)


def _scan(data_dir: Path) -> _Scan:
    """Every file under the table directories: part files, temp files, strays.

    Raises:
        StoreError: a directory or file could not be listed or stat'ed.
    """

    def fail(exc: OSError) -> None:
        raise StoreError(f"cannot list {exc.filename}: {exc.strerror}")

    scan = _Scan()
    try:
        for table in TABLES:
            base = data_dir / table
            for dirpath, dirs, files in os.walk(base, onerror=fail) if base.is_dir() else ():
                dirs.sort()
                for name in sorted(files):
                    path = Path(dirpath, name)
                    if TMP_RE.fullmatch(name):
                        scan.temps.append(path)
                    elif (pp := parse_part(path.relative_to(data_dir))) is None:
                        scan.strays.append(path)
                    else:
                        scan.parts.append(
                            _Part(path, pp.table, pp.date, pp.symbol, path.stat().st_size, *pp[3:])
                        )
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    return scan


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    table: str
    date: str
    symbol: str | None
    files: int
    rows: int
    bytes: int


@dataclass(frozen=True, slots=True)
class TableInfo:
    table: str
    files: int
    rows: int
    bytes: int
    dates: list[str]
    symbols: list[str]


@dataclass(frozen=True, slots=True)
class JournalInfo:
    writer: str
    segments: int
    bytes: int
    checkpoint: int  # every frame up to this one reached Parquet (-1: none)


@dataclass(slots=True)
class Inventory:
    """What the store holds. Rows come from Parquet footers; bytes are file sizes."""

    data_dir: str
    tables: list[TableInfo]
    partitions: list[PartitionInfo]
    journals: list[JournalInfo]
    unreadable: list[str]  # part files whose footer cannot be read (their rows count as 0)
    temp_files: int
    pending_compactions: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inventory(data_dir: Path) -> Inventory:
    """Dates, symbols, files, rows and bytes per table and partition; journal size per writer.

    Raises:
        ConfigError: ``data_dir`` is not a directory.
        StoreError, JournalError: a directory cannot be listed.
    """
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; no store there")
    scan = _scan(data_dir)
    acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    unreadable = []
    for p in scan.parts:
        try:
            rows = pq.read_metadata(p.path).num_rows  # the footer only
        except (OSError, pa.ArrowException) as exc:
            rows = 0
            unreadable.append(f"{_rel(data_dir, p.path)}: {exc}")
        a = acc[(p.table, p.date, p.symbol or "")]
        a[0], a[1], a[2] = a[0] + 1, a[1] + rows, a[2] + p.size
    parts = [PartitionInfo(t, d, s or None, *a) for (t, d, s), a in sorted(acc.items())]
    tables = []
    for table in TABLES:
        ps = [p for p in parts if p.table == table]
        tables.append(
            TableInfo(
                table,
                sum(p.files for p in ps),
                sum(p.rows for p in ps),
                sum(p.bytes for p in ps),
                sorted({p.date for p in ps}),
                sorted({p.symbol for p in ps if p.symbol}),
            )
        )
    journals = []
    for w in list_writers(data_dir / JOURNAL_DIR):
        root = journal_root(data_dir, w)
        files = [e for e in os.scandir(root) if e.is_file()]
        segs = sum(1 for e in files if e.name.startswith("seg-") and e.name.endswith(".jnl"))
        journals.append(JournalInfo(w, segs, sum(e.stat().st_size for e in files), read_checkpoint(root)))
    pending = len(list((data_dir / INTENT_DIR).glob(INTENT_GLOB)))
    return Inventory(str(data_dir), tables, parts, journals, unreadable, len(scan.temps), pending)


# --------------------------------------------------------------------------- compaction


@dataclass(slots=True)
class CompactResult:
    groups: int = 0  # (partition, writer) groups merged
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    recovered: list[str] = field(default_factory=list)  # interrupted compactions replayed
    skipped: list[str] = field(default_factory=list)


def compact(
    data_dir: Path,
    *,
    dates: Iterable[str] = (),
    tables: Iterable[str] = (),
    writers: Iterable[str] = (),
    hook: Hook | None = None,
) -> CompactResult:
    """Merge each writer's part files of each partition into one (filters: empty = all).

    Raises:
        ConfigError: no store, an unknown table, another compaction is running, or a
            capture holds the journal lock of a writer to compact (nothing is changed then).
        StoreError: a file could not be read, written or removed.
    """
    dates, tables, writers = set(dates), set(tables), set(writers)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; no store there")
    if unknown := tables - set(TABLES):
        raise ConfigError(f"unknown table {sorted(unknown)[0]!r}; tables are {', '.join(TABLES)}")
    idir = data_dir / INTENT_DIR
    idir.mkdir(mode=0o700, exist_ok=True)
    res = CompactResult()
    with _flock(idir / LOCK, f"another compact is running on {data_dir}"), contextlib.ExitStack() as locks:
        res.recovered = _replay(data_dir)
        groups: dict[tuple[str, str, str, str], list[_Part]] = defaultdict(list)
        for p in _scan(data_dir).parts:
            if p.writer and _keep(dates, p.date) and _keep(tables, p.table) and _keep(writers, p.writer):
                groups[(p.table, p.date, p.symbol or "", p.writer)].append(p)
        todo = [sorted(g, key=lambda p: p.first) for _, g in sorted(groups.items()) if len(g) > 1]
        for w in sorted({g[0].writer for g in todo if g[0].writer}):
            if (root := journal_root(data_dir, w)).is_dir():
                locks.enter_context(
                    _flock(
                        root / LOCK,
                        f"writer {w} is capturing (its journal {root} is locked); compact refuses to "
                        "run: wait for that capture to end, or leave the writer out (--writer-id)",
                    )
                )
        for g in todo:
            _compact_group(data_dir, g, res, hook)
    log.info("compacted %d groups: %d files → %d", res.groups, res.files_before, res.files_after)
    return res


def _compact_group(data_dir: Path, group: list[_Part], res: CompactResult, hook: Hook | None) -> None:
    head, pdir = group[0], group[0].path.parent
    assert head.writer is not None
    out = pdir / part_name(head.writer, min(p.first for p in group), max(p.last for p in group))
    if out.exists():  # one input covers the others' frames: overlapping ranges, left to verify
        res.skipped.append(f"{head.where} writer {head.writer}: {out.name} exists; run recorder verify")
        return
    try:
        tables = []
        for p in group:
            with pq.ParquetFile(p.path) as pf:
                tables.append(pf.read())
    except (OSError, pa.ArrowException) as exc:
        res.skipped.append(f"{head.where} writer {head.writer}: cannot read {p.path.name}: {exc}")
        return
    if any(not t.schema.equals(tables[0].schema) for t in tables[1:]):
        res.skipped.append(f"{head.where} writer {head.writer}: files of different schemas")
        return
    merged = pa.concat_tables(tables).sort_by([(SORT_TIME[head.table], "ascending"), ("seq", "ascending")])
    intent = intent_path(data_dir, uuid.uuid4().hex)
    _write_json(
        intent,
        {
            "dir": pdir.relative_to(data_dir).as_posix(),
            "writer": head.writer,
            "output": out.name,
            "rows": len(merged),
            "inputs": [{"name": p.path.name, "bytes": p.size} for p in group],
        },
    )
    _step(hook, "intent-written")
    try:
        write_part(merged, out)
    except StoreError:
        intent.unlink(missing_ok=True)  # the inputs are untouched: nothing to replay
        raise
    _step(hook, "merged-visible")
    for p in group:
        _unlink(p.path)
        _step(hook, "input-removed")
    _sync_dir(pdir)
    _unlink(intent)
    _sync_dir(intent.parent)
    _step(hook, "intent-removed")
    res.groups += 1
    res.files_before += len(group)
    res.files_after += 1
    res.rows += len(merged)
    res.bytes_before += sum(p.size for p in group)
    res.bytes_after += out.stat().st_size


def finish_compactions(data_dir: Path) -> list[str]:
    """Replay the intents of interrupted compactions; returns what was done, one line each.

    Safe at any time (a running compaction is left alone); meant for ``compact``, ``verify``
    and the start of a capture. Raises StoreError if an intent does not match the files.
    """
    idir = data_dir / INTENT_DIR
    if not any(idir.glob(INTENT_GLOB)):
        return []
    try:
        with _flock(idir / LOCK, "busy"):
            return _replay(data_dir)
    except ConfigError:
        return ["a compaction is running; files may change while they are read"]


def _replay(data_dir: Path) -> list[str]:
    """Roll forward intents whose output is in place, roll back the others. Hold the lock."""
    idir, done = data_dir / INTENT_DIR, []
    for tmp in idir.glob(f".{INTENT_GLOB}.tmp"):  # a crash while writing an intent: never acted on
        _unlink(tmp)
    for ipath in sorted(idir.glob(INTENT_GLOB)):
        try:
            it = orjson.loads(ipath.read_bytes())
            rel, inputs, rows = Path(it["dir"]), it["inputs"], int(it["rows"])
            names = [it["output"], *(i["name"] for i in inputs)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"compaction intent {ipath} cannot be read: {exc}") from exc
        if rel.is_absolute() or ".." in rel.parts or not all(parse_part_name(n) for n in names):
            raise StoreError(f"compaction intent {ipath} names files outside the store's layout")
        pdir = data_dir / rel
        out = pdir / names[0]
        if out.exists():
            if (n := _footer_rows(out)) != rows:
                raise StoreError(f"{out} holds {n} rows where its compaction intent {ipath} says {rows}")
            for i in inputs:
                with contextlib.suppress(FileNotFoundError):
                    if (pdir / i["name"]).stat().st_size != i["bytes"]:
                        raise StoreError(f"{pdir / i['name']} changed after compaction intent {ipath}")
                    _unlink(pdir / i["name"])
            _sync_dir(pdir)
            what = "finished"
        else:  # the inputs are intact; only write_part's temp file may be left
            temp_path(out).unlink(missing_ok=True)
            what = "rolled back"
        _unlink(ipath)
        _sync_dir(idir)
        done.append(f"{what} an interrupted compaction of {rel.as_posix()} (writer {it['writer']})")
        log.warning("%s", done[-1])
    return done


# --------------------------------------------------------------------------- small helpers


def _keep(wanted: set[str], value: str) -> bool:
    return not wanted or value in wanted


def _step(hook: Hook | None, name: str) -> None:
    if hook is not None:
        hook(name)


@contextlib.contextmanager
def _flock(path: Path, busy: str) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if needed); ConfigError(busy) if taken."""
    try:
        fd = acquire_lock(path)
    except BlockingIOError:
        raise ConfigError(busy) from None
    except OSError as exc:
        raise StoreError(f"cannot open lock file {path}: {exc.strerror}") from exc
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


def _lock_busy(path: Path) -> bool:
    """Whether another process holds ``path`` (a journal LOCK) right now."""
    return lock_held(path)


def _footer_rows(path: Path) -> int:
    try:
        return int(pq.read_metadata(path).num_rows)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc


def _write_json(path: Path, obj: object) -> None:
    """Write ``obj`` as JSON with :func:`recorder.store.fs.write_atomic`; StoreError on failure."""
    try:
        write_atomic(path, orjson.dumps(obj))
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc}") from exc


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc}") from exc


def _sync_dir(d: Path) -> None:
    try:
        fsync_dir(d)
    except OSError as exc:
        raise StoreError(f"cannot sync directory {d}: {exc}") from exc


def _rel(data_dir: Path, p: Path) -> str:
    return p.relative_to(data_dir).as_posix()
