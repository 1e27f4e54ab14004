"""``recorder journal``: the raw-frame journal's segments, and pruning the old ones."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import DATA_DIR, JOURNAL_DIR, handle_errors
from recorder.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store


def _archive(ctx: click.Context, param: click.Parameter, value: str | None) -> S3Store | None:
    from recorder.cli.common import OptionError
    from recorder.store.archive import parse_archive

    try:
        return parse_archive(value) if value is not None else None
    except ConfigError as exc:
        raise OptionError(str(exc)) from None


#: ``--journal-archive`` of ``journal prune`` and ``capture``.
JOURNAL_ARCHIVE = click.option(
    "--journal-archive",
    "journal_archive",
    metavar="S3_URL",
    callback=_archive,
    help="Upload each segment to be pruned, compressed, to <S3_URL>/<writer>/seg-….jnl.zst first "
    "(checked by size); a segment whose upload fails is kept, and the exit status is 1.",
)


def _local(data_dir: Path | S3Store, journal_dir: Path | None) -> Path:
    """The folder holding the journal: the store itself, or an s3:// store's --journal-dir."""
    from recorder.store.objstore import local_dir_for

    local = local_dir_for(data_dir, journal_dir)
    assert local is not None
    if isinstance(data_dir, Path) and not data_dir.is_dir():
        raise ConfigError(f"no store at {data_dir}: the folder does not exist")
    return local


@click.group()
def journal() -> None:
    """The journal: every raw frame, the source the Parquet tables are rebuilt from.

    Sealed segments (rolled, and all in Parquet) are compressed (zstd) by the capture.
    """


@journal.command("ls")
@DATA_DIR
@JOURNAL_DIR
@handle_errors
def ls(data_dir: Path | S3Store, journal_dir: Path | None) -> None:
    """One line per segment: writer, frames, first date (KST), bytes on disk, compressed or
    plain, and whether all of it is in Parquet (from the journal's checkpoint). An s3://
    store's journal is local: in --journal-dir."""
    from recorder.store.retention import segments

    local = _local(data_dir, journal_dir)
    segs = segments(local)
    if not segs:
        click.echo(f"no journal in {local}")
        return
    click.echo(f"{'writer':<20} {'frames':>27} {'first date':<10} {'bytes':>14} {'form':<10} parquet")
    for s in segs:
        frames = f"{s.first_fno}-{s.last_fno if s.last_fno is not None else '…'}"
        click.echo(
            f"{s.writer:<20} {frames:>27} {s.first_date or '-':<10} {s.bytes:>14,} "
            f"{'zstd' if s.compressed else 'plain':<10} {'yes' if s.in_parquet else 'not all'}"
        )
    total = sum(s.bytes for s in segs)
    click.echo(f"{len(segs)} segments, {total:,} bytes ({sum(s.compressed for s in segs)} compressed)")


@journal.command()
@DATA_DIR
@JOURNAL_DIR
@click.option(
    "--keep",
    "keep_days",
    required=True,
    type=click.IntRange(min=0),
    help="Keep the journal of the last DAYS days (KST); older segments that are all in Parquet go.",
)
@JOURNAL_ARCHIVE
@handle_errors
def prune(
    data_dir: Path | S3Store, journal_dir: Path | None, keep_days: int, journal_archive: S3Store | None
) -> None:
    """Remove journal segments older than --keep days. Never one holding a frame not yet in
    Parquet, never a writer's last segment. Frames removed can no longer be rebuilt (unless
    archived): the line printed says from which date each writer's journal is whole."""
    from recorder.store.archive import archiver
    from recorder.store.retention import PruneError, segments
    from recorder.store.retention import prune as prune_segments

    local = _local(data_dir, journal_dir)
    error: PruneError | None = None
    try:
        removed = prune_segments(
            local, keep_days, archive=archiver(journal_archive) if journal_archive is not None else None
        )
    except PruneError as exc:
        removed, error = exc.removed, exc
    freed = sum(s.bytes for s in removed)
    click.echo(f"removed {len(removed)} segments ({freed:,} bytes)")
    first: dict[str, str | None] = {}
    for s in segments(local):
        first.setdefault(s.writer, s.first_date)
    for writer, date in first.items():
        since = date or "its start"
        before = "earlier dates cannot be rebuilt"
        if journal_archive is not None:
            before = f"earlier segments archived in {journal_archive}/{writer}/"
        click.echo(f"writer {writer}: the journal is whole from {since}; {before}")
    if error is not None:
        raise StoreError(f"journal archive: {error}")
