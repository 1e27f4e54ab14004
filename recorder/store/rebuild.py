"""``recorder rebuild``: the Parquet tables of journaled writers, decoded again from their journals.

The journal is the source of truth and Parquet is derived from it (docs/architecture.md,
invariant 4): a writer's part files are removed, then every record of its journal goes
through the same :class:`~recorder.store.pipeline.Pipeline` as a capture. Ingested data (no
journal) is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from recorder.errors import ConfigError, StoreError
from recorder.store.inventory import scan
from recorder.store.journal import JournalWriter, list_writers, read_records
from recorder.store.layout import JOURNAL_DIR, journal_root
from recorder.store.pipeline import Pipeline, PipelineStats
from recorder.store.retention import rebuildable_from
from recorder.store.sink import Sink


@dataclass(slots=True)
class RebuildResult:
    writers: list[str]
    removed: int
    stats: PipelineStats
    files: int


def rebuild(data_dir: Path, writers: list[str] | None = None) -> RebuildResult:
    """Regenerate the Parquet tables of journaled writers (default: every one) from their journals.

    Raises:
        ConfigError: the store has no journal.
        JournalError: a journal is locked by a running capture, or cannot be read.
        StoreError: a part file cannot be removed or written.
    """
    jdir = data_dir / JOURNAL_DIR
    writers = writers if writers is not None else list_writers(jdir)
    if not writers:
        raise ConfigError(f"no journal under {jdir}; nothing to rebuild")
    removed = files = 0
    total = PipelineStats()
    for writer in writers:
        if first := rebuildable_from(data_dir, writer):
            raise ConfigError(
                f"the journal of writer {writer} was pruned before frame {first}: rebuilding would drop "
                "the rows of earlier frames, which only the Parquet files hold now; nothing done"
            )
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
        for name in total.__slots__:  # type: ignore[attr-defined]
            setattr(total, name, getattr(total, name) + getattr(pipe.stats, name))
    return RebuildResult(writers, removed, total, files)


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
