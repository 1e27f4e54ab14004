"""``recorder journal``: the raw-frame journal's segments, and pruning the old ones."""

from __future__ import annotations

from pathlib import Path

import click

from recorder.cli.common import LOCAL_DATA_DIR, handle_errors


@click.group()
def journal() -> None:
    """The journal: every raw frame, the source the Parquet tables are rebuilt from.

    Sealed segments (rolled, and all in Parquet) are compressed (zstd) by the capture.
    """


@journal.command("ls")
@LOCAL_DATA_DIR
@handle_errors
def ls(data_dir: Path) -> None:
    """One line per segment: writer, frames, first date (KST), bytes on disk, compressed or
    plain, and whether all of it is in Parquet."""
    from recorder.store.retention import segments

    segs = segments(data_dir)
    if not segs:
        click.echo(f"no journal in {data_dir}")
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
@LOCAL_DATA_DIR
@click.option(
    "--keep",
    "keep_days",
    required=True,
    type=click.IntRange(min=0),
    help="Keep the journal of the last DAYS days (KST); older segments that are all in Parquet go.",
)
@handle_errors
def prune(data_dir: Path, keep_days: int) -> None:
    """Remove journal segments older than --keep days. Never one holding a frame not yet in
    Parquet, never a writer's last segment. Frames removed can no longer be rebuilt: the line
    printed says from which date each writer's journal is whole."""
    from recorder.store.retention import prune as prune_segments
    from recorder.store.retention import segments

    removed = prune_segments(data_dir, keep_days)
    freed = sum(s.bytes for s in removed)
    click.echo(f"removed {len(removed)} segments ({freed:,} bytes)")
    first: dict[str, str | None] = {}
    for s in segments(data_dir):
        first.setdefault(s.writer, s.first_date)
    for writer, date in first.items():
        since = date or "its start"
        click.echo(f"writer {writer}: the journal is whole from {since}; earlier dates cannot be rebuilt")
