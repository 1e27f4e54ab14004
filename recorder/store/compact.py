"""``recorder compact``: merging small part files, crash-safely, and the compaction lock and intents.

The part files of each (table, partition, writer) group of two or more become one
``part-<writer>-<first fno of the group>-<last fno>.parquet``, rows sorted by (time, ``seq``).
One output per writer keeps exactly-once resume working: the sink takes a writer's last
frame in a partition from the names, and the highest one never changes.

Crash safety. Readers glob plain files (DuckDB, Spark, pandas), so none can be told to skip
a superseded file, and POSIX has no atomic multi-file swap (exchanging a partition directory
would pull files from under other writers writing into it). So, per group:

1. an intent ``_compaction/intent-<id>.json`` naming the output and each input (name, bytes)
   and the row count is written atomically (temp, fsync, rename, fsync dir);
2. the merged file is written with :func:`recorder.store.encoding.write_compacted` (temp, fsync,
   rename; its own per-column encodings and zstd level);
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

The same steps run on object storage (``s3://bucket/prefix``): they go through a small
:class:`StoreFiles` interface, of which :class:`LocalFiles` is the folder and
:class:`recorder.store.objstore.S3Files` the bucket. There a write is one PUT (an object
appears whole or not at all), an unlink a DELETE, and there are no locks: one compaction per
prefix at a time is the operator's job (docs/s3.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StoreError
from recorder.kiwoom.fields import TABLES
from recorder.store.encoding import is_compacted, write_compacted
from recorder.store.fs import acquire_lock, fsync_dir, write_atomic
from recorder.store.inventory import Part, scan
from recorder.store.layout import (
    INTENT_DIR,
    INTENT_GLOB,
    LOCK,
    SORT_TIME,
    intent_path,
    journal_root,
    parse_part_name,
    part_name,
    temp_path,
)

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

log = logging.getLogger(__name__)

#: Called after each compaction step ("intent-written", "merged-visible", "input-removed",
#: "intent-removed"); tests raise from it to simulate a crash right there.
Hook = Callable[[str], None]


# --------------------------------------------------------------------------- the store's files


class StoreFiles(Protocol):
    """What compaction does to a store's files, on a local folder or an object store.

    Paths are under :attr:`root` (for a bucket, ``Path("bucket/prefix/…")`` names the key).
    Every method raises :class:`~recorder.errors.StoreError` on failure.
    """

    root: Path

    def parts(self) -> list[Part]: ...
    def read(self, path: Path) -> pa.Table: ...
    def exists(self, path: Path) -> bool: ...
    def size(self, path: Path) -> int | None: ...  # None: not there
    def write_part(self, t: pa.Table, path: Path) -> int: ...  # appears whole; returns its bytes
    def remove(self, path: Path) -> None: ...  # raises FileNotFoundError if not there
    def sync_dir(self, folder: Path) -> None: ...
    def footer_rows(self, path: Path) -> int: ...
    def intents(self) -> list[Path]: ...  # sorted; temporary intents left by a crash removed
    def read_bytes(self, path: Path) -> bytes: ...
    def write_bytes(self, path: Path, data: bytes) -> None: ...  # appears whole
    def lock(self, busy: str) -> ContextManager[None]: ...  # ConfigError(busy) if held
    def writer_lock(self, writer: str, busy: str) -> ContextManager[None] | None: ...


class LocalFiles:
    """:class:`StoreFiles` of a local store folder: atomic renames, fsyncs and flocks."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def parts(self) -> list[Part]:
        return scan(self.root).parts

    def read(self, path: Path) -> pa.Table:
        with pq.ParquetFile(path) as pf:
            return pf.read()

    def exists(self, path: Path) -> bool:
        return path.exists()

    def size(self, path: Path) -> int | None:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None

    def write_part(self, t: pa.Table, path: Path) -> int:
        write_compacted(t, path)  # its own encodings and zstd level (recorder.store.encoding)
        return path.stat().st_size

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc}") from exc

    def sync_dir(self, folder: Path) -> None:
        try:
            fsync_dir(folder)
        except OSError as exc:
            raise StoreError(f"cannot sync directory {folder}: {exc}") from exc

    def footer_rows(self, path: Path) -> int:
        try:
            return int(pq.read_metadata(path).num_rows)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc

    def intents(self) -> list[Path]:
        idir = self.root / INTENT_DIR
        for tmp in idir.glob(f".{INTENT_GLOB}.tmp"):  # a crash while writing an intent: never acted on
            _unlink(tmp)
        return sorted(idir.glob(INTENT_GLOB))

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def write_bytes(self, path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc}") from exc

    def lock(self, busy: str) -> ContextManager[None]:
        return _flock(self.root / INTENT_DIR / LOCK, busy)

    def writer_lock(self, writer: str, busy: str) -> ContextManager[None] | None:
        root = journal_root(self.root, writer)
        return _flock(root / LOCK, busy) if root.is_dir() else None


def store_files(data_dir: Path | S3Store) -> StoreFiles:
    """The :class:`StoreFiles` of a local folder or an ``s3://`` store."""
    if isinstance(data_dir, Path):
        return LocalFiles(data_dir)
    from recorder.store.objstore import S3Files

    return S3Files(data_dir)


# --------------------------------------------------------------------------- compaction


@dataclass(slots=True)
class CompactResult:
    groups: int = 0  # (partition, writer) groups merged
    files_before: int = 0
    files_after: int = 0
    rows: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    recoded: int = 0  # single live part files rewritten in the compacted form (``recode``)
    recovered: list[str] = field(default_factory=list)  # interrupted compactions replayed
    skipped: list[str] = field(default_factory=list)
    unreadable: int = 0  # part files that could not be read (named in ``skipped``), left as they are


def compact(
    data_dir: Path | S3Store,
    *,
    dates: Iterable[str] = (),
    tables: Iterable[str] = (),
    writers: Iterable[str] = (),
    hook: Hook | None = None,
    recode: bool = False,
) -> CompactResult:
    """Merge each writer's part files of each partition into one (filters: empty = all).

    With ``recode`` (a capture compacting what it wrote), a partition's only part file is
    rewritten in place in the compacted form too when it is a live one (snappy): a local store
    only, each file replaced atomically (same rows, same name).

    ``data_dir`` is a local folder or an ``s3://`` store (:class:`~recorder.store.objstore.S3Store`).

    Raises:
        ConfigError: no store, an unknown table, another compaction is running, or a
            capture holds the journal lock of a writer to compact (nothing is changed then).
        StoreError: a file could not be read, written or removed.
    """
    dates, tables, writers = set(dates), set(tables), set(writers)
    if isinstance(data_dir, Path) and not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; no store there")
    if unknown := tables - set(TABLES):
        raise ConfigError(f"unknown table {sorted(unknown)[0]!r}; tables are {', '.join(TABLES)}")
    files = store_files(data_dir)
    if isinstance(data_dir, Path):
        (data_dir / INTENT_DIR).mkdir(mode=0o700, exist_ok=True)
    res = CompactResult()
    with (
        files.lock(f"another compact is running on {data_dir}"),
        contextlib.ExitStack() as locks,
    ):
        res.recovered = _replay(files)
        groups: dict[tuple[str, str, str, str], list[Part]] = defaultdict(list)
        for p in files.parts():
            if p.writer and _keep(dates, p.date) and _keep(tables, p.table) and _keep(writers, p.writer):
                groups[(p.table, p.date, p.symbol or "", p.writer)].append(p)
        todo = [sorted(g, key=lambda p: p.first_fno) for _, g in sorted(groups.items()) if len(g) > 1]
        for w in sorted({g[0].writer for g in todo if g[0].writer}):
            busy = (
                f"writer {w} is capturing (its journal {journal_root(files.root, w)} is locked); compact "
                "refuses to run: wait for that capture to end, or leave the writer out (--writer-id)"
            )
            if (lock := files.writer_lock(w, busy)) is not None:
                locks.enter_context(lock)
        _compact_groups(files, todo, res, hook)
        if recode and isinstance(files, LocalFiles):
            singles = [g[0] for _, g in sorted(groups.items()) if len(g) == 1]
            for p in singles:
                _recode(p, res)
    log.info("compacted %d groups: %d files → %d", res.groups, res.files_before, res.files_after)
    return res


def _compact_groups(files: StoreFiles, todo: list[list[Part]], res: CompactResult, hook: Hook | None) -> None:
    """One group after the other, or (an object store, no test hook) several at once: each
    group is its own intent, so any of them may be interrupted independently."""
    workers = 1 if hook is not None else getattr(files, "parallel", 1)
    if workers <= 1 or len(todo) <= 1:
        for g in todo:
            _compact_group(files, g, res, hook)
        return
    from concurrent.futures import ThreadPoolExecutor

    parts = [CompactResult() for _ in todo]
    with ThreadPoolExecutor(min(workers, len(todo)), thread_name_prefix="compact") as pool:
        for f in [pool.submit(_compact_group, files, g, r, None) for g, r in zip(todo, parts, strict=True)]:
            f.result()
    for r in parts:
        res.groups += r.groups
        res.files_before += r.files_before
        res.files_after += r.files_after
        res.rows += r.rows
        res.bytes_before += r.bytes_before
        res.bytes_after += r.bytes_after
        res.skipped.extend(r.skipped)
        res.unreadable += r.unreadable


def _compact_group(files: StoreFiles, group: list[Part], res: CompactResult, hook: Hook | None) -> None:
    head, pdir = group[0], group[0].path.parent
    assert head.writer is not None
    first, last = min(p.first_fno for p in group), max(p.last_fno for p in group)
    out = pdir / part_name(head.writer, first, last)
    if files.exists(out):  # one input covers the others' frames: overlapping ranges, left to verify
        res.skipped.append(f"{head.where} writer {head.writer}: {out.name} exists; run recorder verify")
        return
    tables = []
    for p in group:
        try:
            tables.append(files.read(p.path))
        except (OSError, pa.ArrowException, StoreError) as exc:
            res.skipped.append(f"{head.where} writer {head.writer}: cannot read {p.path.name}: {exc}")
            res.unreadable += 1
            return
    if any(not t.schema.equals(tables[0].schema) for t in tables[1:]):
        res.skipped.append(f"{head.where} writer {head.writer}: files of different schemas")
        return
    merged = pa.concat_tables(tables).sort_by([(SORT_TIME[head.table], "ascending"), ("seq", "ascending")])
    intent = intent_path(files.root, uuid.uuid4().hex)
    files.write_bytes(
        intent,
        orjson.dumps(
            {
                "dir": pdir.relative_to(files.root).as_posix(),
                "writer": head.writer,
                "output": out.name,
                "rows": len(merged),
                "inputs": [{"name": p.path.name, "bytes": p.size} for p in group],
            }
        ),
    )
    _step(hook, "intent-written")
    try:
        size = files.write_part(merged, out)
    except StoreError:
        with contextlib.suppress(FileNotFoundError):
            files.remove(intent)  # the inputs are untouched: nothing to replay
        raise
    _step(hook, "merged-visible")
    for p in group:
        files.remove(p.path)
        _step(hook, "input-removed")
    files.sync_dir(pdir)
    files.remove(intent)
    files.sync_dir(intent.parent)
    _step(hook, "intent-removed")
    res.groups += 1
    res.files_before += len(group)
    res.files_after += 1
    res.rows += len(merged)
    res.bytes_before += sum(p.size for p in group)
    res.bytes_after += size


def _recode(p: Part, res: CompactResult) -> None:
    """Rewrite one live part file in the compacted form (atomically, over itself)."""
    if is_compacted(p.path):
        return
    try:
        with pq.ParquetFile(p.path) as pf:
            t = pf.read()
    except (OSError, pa.ArrowException) as exc:
        res.skipped.append(f"{p.path.name}: cannot read it: {exc}")
        res.unreadable += 1
        return
    write_compacted(t, p.path, replace=True)
    res.recoded += 1
    res.bytes_before += p.size
    res.bytes_after += p.path.stat().st_size


def finish_compactions(data_dir: Path | S3Store) -> list[str]:
    """Replay the intents of interrupted compactions; returns what was done, one line each.

    Safe at any time (a running compaction is left alone, on a local folder); meant for
    ``compact``, ``verify`` and the start of a capture. Raises StoreError if an intent does
    not match the files.
    """
    if isinstance(data_dir, Path) and not any((data_dir / INTENT_DIR).glob(INTENT_GLOB)):
        return []
    files = store_files(data_dir)
    try:
        with files.lock("busy"):
            return _replay(files)
    except ConfigError:
        return ["a compaction is running; files may change while they are read"]


@contextlib.contextmanager
def compaction_lock(data_dir: Path | S3Store, busy: str) -> Iterator[None]:
    """Hold the store's compaction lock (``_compaction/LOCK``; the folder must exist).

    An object store has none: the block runs unlocked (see the module docstring).

    Raises:
        ConfigError: another process holds it; the message is ``busy``.
        StoreError: the lock file cannot be opened.
    """
    with store_files(data_dir).lock(busy):
        yield


def replay_intents(data_dir: Path | S3Store) -> list[str]:
    """Finish interrupted compactions: roll forward the intents whose output is in place,
    roll back the others; returns what was done, one line each.

    Hold :func:`compaction_lock` while calling it.

    Raises:
        StoreError: an intent cannot be read or does not match the files.
    """
    return _replay(store_files(data_dir))


def _replay(files: StoreFiles) -> list[str]:
    done = []
    for ipath in files.intents():
        try:
            it = orjson.loads(files.read_bytes(ipath))
            rel, inputs, rows = Path(it["dir"]), it["inputs"], int(it["rows"])
            names = [it["output"], *(i["name"] for i in inputs)]
        except (OSError, ValueError, KeyError, TypeError, StoreError) as exc:
            raise StoreError(f"compaction intent {ipath} cannot be read: {exc}") from exc
        if rel.is_absolute() or ".." in rel.parts or not all(parse_part_name(n) for n in names):
            raise StoreError(f"compaction intent {ipath} names files outside the store's layout")
        pdir = files.root / rel
        out = pdir / names[0]
        if files.exists(out):
            if (n := files.footer_rows(out)) != rows:
                raise StoreError(f"{out} holds {n} rows where its compaction intent {ipath} says {rows}")
            for i in inputs:
                size = files.size(pdir / i["name"])
                if size is None:
                    continue
                if size != i["bytes"]:
                    raise StoreError(f"{pdir / i['name']} changed after compaction intent {ipath}")
                with contextlib.suppress(FileNotFoundError):
                    files.remove(pdir / i["name"])
            files.sync_dir(pdir)
            what = "finished"
        else:  # the inputs are intact; only write_part's temp file may be left
            if isinstance(files, LocalFiles):
                temp_path(out).unlink(missing_ok=True)
            what = "rolled back"
        with contextlib.suppress(FileNotFoundError):
            files.remove(ipath)
        files.sync_dir(ipath.parent)
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


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        raise StoreError(f"cannot remove {path}: {exc}") from exc
