"""The journal after Parquet: compressing sealed segments, listing them, pruning old ones.

A segment is *sealed* when the writer has moved on to a later one (or closed cleanly) and every
record in it is in Parquet (its last fno is at or below the writer's checkpoint). A sealed
segment is compressed into ``seg-<first fno>.jnl.zst``: one zstd frame of exactly its bytes
(``zstd -d`` gives the original back; :data:`JOURNAL_ZSTD_LEVEL`), written under a temporary
name, fsynced, renamed, and only then is the plain segment removed. A crash in between leaves
both forms; readers take the plain one (:func:`recorder.store.journal.list_segments`) and the
next compression pass removes it. Recovery, ``rebuild`` and ``verify`` read compressed segments
as they read plain ones.

Pruning removes whole segments older than a number of days, never one holding a record that
is not in Parquet, and never a writer's last segment (it carries the frame numbering on across
restarts, which exactly-once resume depends on). Frames pruned from the journal can no longer
be rebuilt: :func:`rebuildable_from` says from which frame a writer's journal is whole. With
an archive (``--journal-archive s3://…``, :mod:`recorder.store.archive`) each segment is
uploaded, compressed, before it is removed; one whose upload fails is kept.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recorder.errors import JournalError, RecorderError
from recorder.kiwoom.time import kst_date
from recorder.store.fs import fsync_dir, fsync_path, private_opener
from recorder.store.journal import _CLEAN, ZST, _Cursor, list_segments, list_writers, read_checkpoint
from recorder.store.layout import JOURNAL_DIR, journal_root, temp_path

log = logging.getLogger(__name__)

_COPY = 4 << 20


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One journal segment as ``recorder journal ls`` shows it."""

    writer: str
    first_fno: int
    last_fno: int | None  # None: the writer's last segment, not read to its end
    path: Path
    bytes: int  # on disk
    compressed: bool
    first_date: str | None  # KST date of its first record (None: no record)
    in_parquet: bool  # every record of it is at or below the checkpoint

    @property
    def sealed(self) -> bool:
        return self.last_fno is not None and self.in_parquet


#: zstd level of sealed segments. Measured on the synthetic 200-symbol stretch
#: (docs/deployment.md): level 16 (btultra) stores the journal in 0.053x of its raw bytes at
#: ~0.4 CPU-seconds per raw MB; level 12 in 0.066x at 0.03 s/MB; Arrow's stream (level 1) in
#: 0.15x. Only level 16 and above bring the journal under the size of the day's Parquet.
JOURNAL_ZSTD_LEVEL = 16
#: The level of a backlog: when more than :data:`BACKLOG_SEGMENTS` sealed segments wait, all
#: but the newest of them are compressed at this level, so the pass keeps up with a fast feed.
JOURNAL_FAST_LEVEL = 9
#: At a shutdown (``include_last``) a segment larger than this goes at :data:`JOURNAL_FAST_LEVEL`
#: too: level 16 costs ~0.3 CPU-seconds per MB, a full 256 MiB segment over a minute, and a
#: service manager stopping the capture waits for it (systemd gives 90 s by default).
SHUTDOWN_FULL_LEVEL_BYTES = 64 << 20
BACKLOG_SEGMENTS = 2


class Cancelled(Exception):
    """A compression was called off (``cancel`` was set); the plain segment is kept."""


def compress_segment(
    path: Path, *, level: int = JOURNAL_ZSTD_LEVEL, threads: int = 0, cancel: threading.Event | None = None
) -> Path:
    """Compress one plain segment into ``<path>.zst`` and remove the plain one; returns the new path.

    The file is one standard zstd frame (``zstd -d`` gives the segment back) with a window of
    at most 8 MiB, which any zstd decoder, Arrow's included, reads without options. ``threads``
    > 0 compresses on that many threads, -1 on every core (still one frame, a little larger).
    ``cancel`` is looked at between 4 MiB chunks: a shutdown need not wait for a slow level.

    Raises:
        JournalError: reading, writing or removing failed (the plain segment is then kept).
        Cancelled: ``cancel`` was set (the plain segment is kept).
    """
    import zstandard

    final = path.with_name(path.name + ZST)
    tmp = temp_path(final)
    try:
        tmp.unlink(missing_ok=True)
        with open(tmp, "xb", opener=private_opener) as raw, open(path, "rb") as src:
            size = os.fstat(src.fileno()).st_size
            if threads:  # 4 MiB jobs: 65 MB of buffers on two workers instead of 97 (level 9)
                params = zstandard.ZstdCompressionParameters.from_level(
                    level, source_size=size, threads=threads, job_size=_COPY
                )
                cctx = zstandard.ZstdCompressor(compression_params=params)
            else:
                cctx = zstandard.ZstdCompressor(level=level)
            with cctx.stream_writer(raw, size=size, write_size=_COPY, closefd=False) as out:
                while chunk := src.read(_COPY):
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(path)
                    out.write(chunk)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_dir(path.parent)
        os.unlink(path)
        fsync_dir(path.parent)
    except Cancelled:
        tmp.unlink(missing_ok=True)
        raise
    except (OSError, zstandard.ZstdError) as exc:
        tmp.unlink(missing_ok=True)
        raise JournalError(f"cannot compress journal segment {path}: {exc}") from exc
    return final


def compress_sealed(
    root: Path,
    *,
    include_last: bool = False,
    level: int | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Compress every sealed, still plain segment of one writer directory; returns the new files.

    ``include_last`` also seals the last segment when all of it is in Parquet: for a writer that
    has closed cleanly (it will never append to that segment again; a restart starts a new one).
    A segment left in both forms by a crash loses its plain form here. ``level`` None: each
    segment at :data:`JOURNAL_ZSTD_LEVEL`, except a backlog's older ones (see
    :data:`JOURNAL_FAST_LEVEL`, and at a shutdown those over :data:`SHUTDOWN_FULL_LEVEL_BYTES`).
    With ``include_last`` (a shutdown waits on it) zstd works on every core. ``cancel`` set
    stops the pass within a chunk (what is done stays done; the rest stays plain).
    """
    todo = _sealed_plain(root, include_last)
    done = []
    for i, path in enumerate(todo):
        fast = len(todo) > BACKLOG_SEGMENTS and i < len(todo) - 1
        fast = fast or (include_last and path.stat().st_size > SHUTDOWN_FULL_LEVEL_BYTES)
        chosen = level if level is not None else JOURNAL_FAST_LEVEL if fast else JOURNAL_ZSTD_LEVEL
        try:
            threads = -1 if include_last else 0
            done.append(compress_segment(path, level=chosen, threads=threads, cancel=cancel))
        except Cancelled:
            log.info("journal %s: compression of %s called off (kept plain for now)", root, path.name)
            break
    if done:
        log.info("journal %s: compressed %d sealed segments", root, len(done))
    return done


def _sealed_plain(root: Path, include_last: bool) -> list[Path]:
    """The plain segments of ``root`` that are sealed, oldest first (removing the plain form of
    one a crash left compressed too)."""
    checkpoint = read_checkpoint(root)
    segments = list_segments(root)
    todo = []
    for i, (first, path) in enumerate(segments):
        zst = path.with_name(path.name + ZST)
        if not path.name.endswith(ZST) and zst.exists():
            path.unlink()  # a crash came after the compressed copy was complete
            fsync_dir(root)
            continue
        if path.name.endswith(ZST):
            continue
        last: int | None
        if i + 1 < len(segments):
            last = segments[i + 1][0] - 1
        elif include_last:
            last = _last_fno(first, path)
        else:
            break
        if last is None or last > checkpoint:
            break
        todo.append(path)
    return todo


def _last_fno(first: int, path: Path) -> int | None:
    """The last fno of a segment read to its end, or None if it ends torn (left as it is)."""
    cur = _Cursor(first, path)
    try:
        status = cur.read([], 1 << 62, 1 << 63)
    finally:
        cur.close()
    return cur.seq - 1 if status == _CLEAN and cur.seq > first else None


def segments(data_dir: Path) -> list[SegmentInfo]:
    """Every segment of every writer's journal in the store, in (writer, fno) order."""
    out = []
    for writer in list_writers(data_dir / JOURNAL_DIR):
        root = journal_root(data_dir, writer)
        checkpoint = read_checkpoint(root)
        segs = list_segments(root)
        for i, (first, path) in enumerate(segs):
            last = segs[i + 1][0] - 1 if i + 1 < len(segs) else None
            out.append(
                SegmentInfo(
                    writer=writer,
                    first_fno=first,
                    last_fno=last,
                    path=path,
                    bytes=path.stat().st_size,
                    compressed=path.name.endswith(ZST),
                    first_date=_first_date(first, path),
                    in_parquet=last is not None and last <= checkpoint,
                )
            )
    return out


def _first_date(first: int, path: Path) -> str | None:
    cur = _Cursor(first, path)
    try:
        got: list[Any] = []
        cur.read(got, 1, 0)
    finally:
        cur.close()
    return kst_date(got[0].recv_ts_ns) if got else None


class PruneError(JournalError):
    """Some segments were kept because their archive failed; ``removed`` were pruned."""

    def __init__(self, message: str, removed: list[SegmentInfo]) -> None:
        super().__init__(message)
        self.removed = removed


#: Archives a segment before it is pruned; returns the file holding it now (the archiver may
#: have compressed it). Raises RecorderError if the segment must be kept.
Archiver = Callable[[SegmentInfo], Path]


def prune(
    data_dir: Path,
    keep_days: int,
    *,
    writers: Iterable[str] | None = None,
    now_ns: int | None = None,
    archive: Archiver | None = None,
) -> list[SegmentInfo]:
    """Remove the segments whose every record is older than ``keep_days`` days (KST dates before
    today minus ``keep_days``), in Parquet, and not a writer's last; returns what was removed.

    A segment's records end where the next segment's begin, so its age is the next one's first
    date. With ``archive``, each segment is archived first; one whose archive fails is kept,
    with every later segment of its writer (the journal stays whole from a date), the other
    writers are pruned, and then :class:`PruneError` says what was kept.

    Raises:
        JournalError: a file cannot be removed.
        PruneError: an archive failed (after every other segment was pruned).
    """
    if keep_days < 0:
        raise ValueError("keep_days must be >= 0")
    today = dt.date.fromisoformat(kst_date(now_ns if now_ns is not None else time.time_ns()))
    cutoff = (today - dt.timedelta(days=keep_days)).isoformat()
    removed: list[SegmentInfo] = []
    failed: list[str] = []
    only = set(writers) if writers is not None else None
    for writer, segs in _by_writer(segments(data_dir)):
        if only is not None and writer not in only:
            continue
        for seg, nxt in itertools.pairwise(segs):
            # every record of seg is older than nxt's first record
            if not seg.in_parquet or nxt.first_date is None or nxt.first_date >= cutoff:
                break
            path = seg.path
            if archive is not None:
                try:
                    path = archive(seg)
                except RecorderError as exc:
                    failed.append(f"{exc}; writer {writer}'s segments from {seg.path.name} on are kept")
                    log.error("%s", failed[-1])
                    break
            try:
                path.unlink()
            except OSError as exc:
                raise JournalError(f"cannot remove journal segment {path}: {exc}") from exc
            removed.append(seg)
        if removed:
            fsync_dir(journal_root(data_dir, writer))
    if failed:
        raise PruneError("; ".join(failed), removed)
    return removed


def _by_writer(infos: Iterable[SegmentInfo]) -> list[tuple[str, list[SegmentInfo]]]:
    out: dict[str, list[SegmentInfo]] = {}
    for s in infos:
        out.setdefault(s.writer, []).append(s)
    return list(out.items())


def rebuildable_from(data_dir: Path, writer: str) -> int:
    """The first frame number a writer's journal still holds (0 when nothing was pruned)."""
    segs = list_segments(journal_root(data_dir, writer))
    return segs[0][0] if segs else 0
