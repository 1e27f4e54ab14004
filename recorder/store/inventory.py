"""What the store holds: the scan of its files, and the inventory that ``recorder ls`` prints.

:func:`scan` walks the table folders once and sorts every file into part files (with what
their path says: :func:`recorder.store.layout.parse_part`), temporary files and strays;
compaction, verify, ingest and rebuild work from it. :func:`inventory` adds the row count of
each part file from its Parquet footer (nothing else is read) and the size of each writer's
journal.

Imports neither the decoder nor DuckDB, so ``recorder ls`` starts fast.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.errors import ConfigError, StoreError
from recorder.kiwoom.fields import TABLES
from recorder.store.journal import list_segments, list_writers, read_checkpoint
from recorder.store.layout import (
    INTENT_DIR,
    INTENT_GLOB,
    JOURNAL_DIR,
    TMP_RE,
    PartPath,
    journal_root,
    parse_part,
)

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

# --------------------------------------------------------------------------- scanning


@dataclass(frozen=True, slots=True)
class Part(PartPath):
    """A Parquet file where a query reads one: what its path says, where it is, its size."""

    path: Path
    size: int


@dataclass(slots=True)
class Scan:
    """Every file under the table folders, sorted by what it is, each list in path order."""

    parts: list[Part] = field(default_factory=list)
    temps: list[Path] = field(default_factory=list)  # files being written, or left by a crash
    strays: list[Path] = field(default_factory=list)  # anything else: not read by queries


def scan(data_dir: Path) -> Scan:
    """List every file under the table folders of ``data_dir`` (none if it has none).

    Raises:
        StoreError: a directory or file could not be listed or stat'ed.
    """

    def fail(exc: OSError) -> None:
        raise StoreError(f"cannot list {exc.filename}: {exc.strerror}")

    out = Scan()
    try:
        for table in TABLES:
            base = data_dir / table
            for dirpath, dirs, files in os.walk(base, onerror=fail) if base.is_dir() else ():
                dirs.sort()
                for name in sorted(files):
                    path = Path(dirpath, name)
                    if TMP_RE.fullmatch(name):
                        out.temps.append(path)
                    elif (p := parse_part(path.relative_to(data_dir))) is None:
                        out.strays.append(path)
                    else:
                        size = path.stat().st_size
                        out.parts.append(
                            Part(p.table, p.date, p.symbol, p.writer, p.first_fno, p.last_fno, path, size)
                        )
    except OSError as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    return out


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


def inventory(data_dir: Path | S3Store, *, journal_dir: Path | None = None) -> Inventory:
    """Dates, symbols, files, rows and bytes per table and partition; journal size per writer.

    ``data_dir`` may be an ``s3://`` store (:class:`~recorder.store.objstore.S3Store`): its
    objects are listed and their footers read (ranged GETs, several at a time); the journals
    are those of its local store ``journal_dir`` (default
    :func:`~recorder.store.objstore.default_local_dir`), if it has one.

    Raises:
        ConfigError: ``data_dir`` is not a directory.
        StoreError, JournalError: a directory cannot be listed.
    """
    if not isinstance(data_dir, Path):
        return _remote_inventory(data_dir, journal_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; no store there")
    found = scan(data_dir)
    rows = {p.path: _footer_rows(functools.partial(pq.read_metadata, p.path)) for p in found.parts}
    pending = len(list((data_dir / INTENT_DIR).glob(INTENT_GLOB)))
    return _inventory(str(data_dir), data_dir, found, rows, _journals(data_dir), pending)


def _footer_rows(read: Any) -> int | str:
    try:
        return int(read().num_rows)  # the footer only
    except (OSError, pa.ArrowException) as exc:
        return str(exc)


def _inventory(
    name: str, root: Path, found: Scan, rows: dict[Path, int | str], journals: list[JournalInfo], pending: int
) -> Inventory:
    acc: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    unreadable = []
    for p in found.parts:
        n = rows[p.path]
        if isinstance(n, str):
            unreadable.append(f"{p.path.relative_to(root).as_posix()}: {n}")
            n = 0
        a = acc[(p.table, p.date, p.symbol or "")]
        a[0], a[1], a[2] = a[0] + 1, a[1] + n, a[2] + p.size
    parts = [PartitionInfo(t, d, s or None, *a) for (t, d, s), a in sorted(acc.items())]
    return Inventory(name, _tables(parts), parts, journals, unreadable, len(found.temps), pending)


def _remote_inventory(store: S3Store, journal_dir: Path | None) -> Inventory:
    from concurrent.futures import ThreadPoolExecutor

    from recorder.store import objstore

    found = objstore.scan(store)
    fs = store.fs

    def footer(p: Part) -> int | str:
        return _footer_rows(functools.partial(pq.read_metadata, str(p.path), filesystem=fs))

    with ThreadPoolExecutor(objstore.TRANSFERS, thread_name_prefix="s3-footers") as pool:
        rows = dict(zip([p.path for p in found.parts], pool.map(footer, found.parts), strict=True))
    pending = len(objstore.S3Files(store).intents())
    local = objstore.local_dir_for(store, journal_dir)
    journals = _journals(local) if local is not None and local.is_dir() else []
    return _inventory(store.url, Path(store.root), found, rows, journals, pending)


def _tables(parts: list[PartitionInfo]) -> list[TableInfo]:
    out = []
    for table in TABLES:
        ps = [p for p in parts if p.table == table]
        out.append(
            TableInfo(
                table,
                sum(p.files for p in ps),
                sum(p.rows for p in ps),
                sum(p.bytes for p in ps),
                sorted({p.date for p in ps}),
                sorted({p.symbol for p in ps if p.symbol}),
            )
        )
    return out


def _journals(data_dir: Path) -> list[JournalInfo]:
    out = []
    for w in list_writers(data_dir / JOURNAL_DIR):
        root = journal_root(data_dir, w)
        size = sum(e.stat().st_size for e in os.scandir(root) if e.is_file())
        out.append(JournalInfo(w, len(list_segments(root)), size, read_checkpoint(root)))
    return out
