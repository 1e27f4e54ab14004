"""``recorder rebuild``: the Parquet tables of journaled writers, decoded again from their journals.

The journal is the source of truth and Parquet is derived from it (docs/architecture.md,
invariant 4): a writer's part files are removed, then every record of its journal goes
through the same :class:`~recorder.store.pipeline.Pipeline` as a capture. Ingested data (no
journal) is left alone. A crash midway leaves the writer's files partly written; the next
rebuild starts over. On an ``s3://`` store the journal is local (``journal_dir``) and the
writer's objects are swapped under an intent object (:mod:`recorder.store.s3rebuild`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recorder.errors import ConfigError, StoreError
from recorder.store.inventory import scan
from recorder.store.journal import JournalWriter, list_writers, read_records
from recorder.store.layout import JOURNAL_DIR, journal_root
from recorder.store.objstore import Location, S3Store, local_dir_for, open_store
from recorder.store.pipeline import Pipeline, PipelineStats
from recorder.store.retention import rebuildable_from
from recorder.store.s3rebuild import Hook
from recorder.store.sink import Sink


@dataclass(slots=True)
class RebuildResult:
    writers: list[str]
    removed: int
    stats: PipelineStats
    files: int


def rebuild(
    data_dir: Location,
    writers: list[str] | None = None,
    *,
    journal_dir: Path | None = None,
    hook: Hook | None = None,
) -> RebuildResult:
    """Regenerate the Parquet tables of journaled writers (default: every one) from their journals.

    ``data_dir`` is a local folder or an ``s3://`` store, whose journals are in ``journal_dir``
    (default: :func:`~recorder.store.objstore.default_local_dir`). ``hook``: see
    :mod:`recorder.store.s3rebuild` (tests only).

    Raises:
        ConfigError: the store has no journal, or no journal of a writer asked for, or a
            writer's journal was pruned (nothing is changed then).
        JournalError: a journal is locked by a running capture, or cannot be read.
        StoreError: a part file or an object cannot be removed or written.
    """
    local = local_dir_for(data_dir, journal_dir)
    assert local is not None
    jdir = local / JOURNAL_DIR
    known = list_writers(jdir)
    writers = writers if writers is not None else known
    if not writers:
        raise ConfigError(f"no journal under {jdir}; nothing to rebuild")
    if missing := [w for w in writers if w not in known]:
        have = f"writers with a journal: {', '.join(known)}" if known else "it holds none"
        raise ConfigError(f"no journal of writer {missing[0]} under {jdir} ({have}); nothing done")
    if isinstance(data_dir, S3Store):
        _check_whole(local, writers)
        open_store(data_dir, local)  # interrupted compactions and rebuilds, files left staged
        return _rebuild_s3(data_dir, local, writers, hook)
    removed = files = 0
    total = PipelineStats()
    _check_whole(local, writers)
    for writer in writers:
        root = journal_root(data_dir, writer)
        with JournalWriter(root).open():  # holds the writer's lock: no capture is running
            removed += _remove_parts(data_dir, writer)
            sink = Sink(data_dir, writer)
            pipe = Pipeline(sink)
            pipe.feed_records(read_records(root))
            pipe.drain()
            sink.close()
        files += sink.files_written
        _add(total, pipe.stats)
    return RebuildResult(writers, removed, total, files)


def _rebuild_s3(store: S3Store, local: Path, writers: list[str], hook: Hook | None) -> RebuildResult:
    from recorder.store.s3rebuild import rebuild_writer

    removed = files = 0
    total = PipelineStats()
    for writer in writers:
        gone, written, stats = rebuild_writer(store, local, writer, hook)
        removed += gone
        files += written
        _add(total, stats)
    return RebuildResult(writers, removed, total, files)


def _check_whole(local: Path, writers: list[str]) -> None:
    for writer in writers:
        if first := rebuildable_from(local, writer):
            raise ConfigError(
                f"the journal of writer {writer} was pruned before frame {first}: rebuilding would drop "
                "the rows of earlier frames, which only the Parquet files hold now; nothing done"
            )


def _add(total: PipelineStats, stats: PipelineStats) -> None:
    for name in total.__slots__:  # type: ignore[attr-defined]
        setattr(total, name, getattr(total, name) + getattr(stats, name))


def _remove_parts(data_dir: Path, writer: str) -> int:
    n = 0
    for p in scan(data_dir).parts:
        if p.writer != writer:
            continue
        try:
            p.path.unlink()
        except OSError as exc:
            raise StoreError(f"cannot remove {p.path}: {exc}") from exc
        n += 1
    return n
