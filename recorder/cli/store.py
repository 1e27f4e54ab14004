"""``recorder ls``, ``verify``, ``compact``, ``ingest`` and ``rebuild``: thin click commands over
:mod:`recorder.store` (inventory, verify, compact, ingest, rebuild)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import (
    DATA_DIR,
    EXISTING_DATA_DIR,
    JOURNAL_DIR,
    check_date,
    handle_errors,
)
from recorder.errors import UnreadableFileError
from recorder.kiwoom.fields import MARKET_TABLES, TABLES

if TYPE_CHECKING:
    from recorder.store.inventory import Inventory
    from recorder.store.objstore import S3Store

# The store modules (DuckDB, the decoder) are imported by the command that needs them, so
# that every other ``recorder`` command starts fast.


@click.command("ls")
@EXISTING_DATA_DIR
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json"]))
@JOURNAL_DIR
@handle_errors
def ls(data_dir: Path | S3Store, fmt: str, journal_dir: Path | None) -> None:
    """Inventory: dates, symbols, files, rows and bytes per table; journal size per writer."""
    import orjson

    from recorder.store.inventory import inventory
    from recorder.store.objstore import local_dir_for

    local_dir_for(data_dir, journal_dir)  # refuses --journal-dir with a local store
    inv = inventory(data_dir, journal_dir=journal_dir)
    if fmt == "json":
        click.echo(orjson.dumps(inv.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(format_inventory(inv))


def format_inventory(inv: Inventory) -> str:
    """The inventory as an aligned text table: one line per table and date, then the journals."""
    head = f"{'TABLE':<10} {'DATE':<10} {'SYMBOLS':>7} {'FILES':>7} {'ROWS':>13} {'BYTES':>15}"
    lines = [head]
    for t in inv.tables:
        market = t.table in MARKET_TABLES  # event tables are partitioned by date only
        for date in t.dates:
            ps = [p for p in inv.partitions if p.table == t.table and p.date == date]
            syms = f"{len({p.symbol for p in ps}):,}" if market else "-"
            lines.append(
                f"{t.table:<10} {date:<10} {syms:>7} {sum(p.files for p in ps):>7,} "
                f"{sum(p.rows for p in ps):>13,} {sum(p.bytes for p in ps):>15,}"
            )
        syms = f"{len(t.symbols):,}" if market else "-"
        lines.append(f"{t.table:<10} {'(all)':<10} {syms:>7} {t.files:>7,} {t.rows:>13,} {t.bytes:>15,}")
    for j in inv.journals:
        lines.append(
            f"journal {j.writer}: {j.segments} segments, {j.bytes:,} bytes, checkpoint frame {j.checkpoint}"
        )
    if inv.temp_files:
        lines.append(f"{inv.temp_files} temporary files (see recorder verify)")
    if inv.pending_compactions:
        lines.append(f"{inv.pending_compactions} interrupted compactions (recorder compact finishes them)")
    lines.extend(f"unreadable: {u}" for u in inv.unreadable)
    return "\n".join(lines)


@click.command()
@DATA_DIR
@click.option(
    "--scratch-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where journals are decoded for the comparison, and an s3:// store's objects copied "
    "(default: the system temp dir).",
)
@JOURNAL_DIR
@handle_errors
def verify(data_dir: Path | S3Store, scratch_dir: Path | None, journal_dir: Path | None) -> None:
    """Check part files, schemas, sort order and rows against the journal.

    Exit status: 0 clean, 1 problems found, 2 the store or a file cannot be read.
    """
    from recorder.store import verify as verify_store
    from recorder.store.objstore import local_dir_for

    local_dir_for(data_dir, journal_dir)
    rep = verify_store.verify(data_dir, scratch_dir=scratch_dir, journal_dir=journal_dir)
    for kind, lines in (("problem", rep.problems), ("warning", rep.warnings), ("info", rep.info)):
        for line in lines:
            click.echo(f"{kind}: {line}")
    summary = {
        "clean": "clean",
        "problems": f"{len(rep.problems)} problems found",
        "unreadable": "cannot read the store or some of its files",
    }[rep.status]
    click.echo(f"{summary} ({rep.files:,} files, {rep.rows:,} rows, {len(rep.warnings)} warnings)")
    sys.exit(rep.exit_code)


@click.command()
@EXISTING_DATA_DIR
@click.option("--date", "dates", multiple=True, help="Only this date (YYYY-MM-DD); repeatable.")
@click.option(
    "--table", "tables", multiple=True, type=click.Choice(TABLES), help="Only this table; repeatable."
)
@click.option("--writer-id", "writers", multiple=True, help="Only this writer's files; repeatable.")
@JOURNAL_DIR
@handle_errors
def compact(
    data_dir: Path | S3Store,
    dates: tuple[str, ...],
    tables: tuple[str, ...],
    writers: tuple[str, ...],
    journal_dir: Path | None,
) -> None:
    """Merge each writer's part files of each partition into one file, crash-safely.

    On s3:// the merged object is written before its inputs are deleted, with an intent
    object under _compaction/; run one compaction per prefix at a time (docs/s3.md).
    """
    from recorder.store.compact import compact as compact_store
    from recorder.store.objstore import open_store

    for d in dates:
        check_date(d)
    open_store(data_dir, journal_dir)  # s3: what a crash left staged goes up first
    r = compact_store(data_dir, dates=dates, tables=tables, writers=writers)
    for line in r.recovered:
        click.echo(line)
    for line in r.skipped:
        click.echo(f"skipped: {line}")
    if not r.groups:
        click.echo("nothing to compact")
    else:
        click.echo(
            f"compacted {r.groups} (partition, writer) groups: {r.files_before:,} files → {r.files_after:,}, "
            f"{r.rows:,} rows, {r.bytes_before:,} → {r.bytes_after:,} bytes"
        )
    if r.unreadable:
        raise UnreadableFileError(
            f"{r.unreadable} part file(s) could not be read and were left as they are; "
            "`recorder verify` lists them, `recorder rebuild` writes them again from the journal"
        )


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option(
    "--date", help="KST trading date of the frames (YYYY-MM-DD), for their rows and rejects; default today."
)
@click.option("--writer-id", help="Part-file writer id (default: derived from the file).")
@JOURNAL_DIR
@handle_errors
def ingest(
    file: Path, data_dir: Path | S3Store, date: str | None, writer_id: str | None, journal_dir: Path | None
) -> None:
    """Decode raw REAL frames (NDJSON, one per line) into the store."""
    from recorder.store.ingest import ingest_ndjson
    from recorder.store.pipeline import setup_batch_process

    setup_batch_process()
    r = ingest_ndjson(file, data_dir, date=date, writer=writer_id, journal_dir=journal_dir)
    s = r.stats
    click.echo(
        f"ingested {r.lines:,} lines: {s.rows:,} rows, {s.rejects:,} rejects, "
        f"{r.files} part files in {r.seconds:.2f}s ({s.rows / max(r.seconds, 1e-9):,.0f} rows/s)"
    )


@click.command()
@DATA_DIR
@click.option("--writer-id", "writers", multiple=True, help="Only these writers (default: every journal).")
@JOURNAL_DIR
@handle_errors
def rebuild(data_dir: Path | S3Store, writers: tuple[str, ...], journal_dir: Path | None) -> None:
    """Regenerate Parquet from the journal (the journal is the source of truth).

    On s3:// the journals are in --journal-dir; each writer's objects are swapped under an
    intent object, so an interrupted rebuild is finished or undone by the next rebuild,
    verify or compact (docs/s3.md).
    """
    from recorder.store.pipeline import setup_batch_process
    from recorder.store.rebuild import rebuild as do_rebuild

    setup_batch_process()
    r = do_rebuild(data_dir, list(writers) or None, journal_dir=journal_dir)
    click.echo(
        f"rebuilt writers {', '.join(r.writers)}: removed {r.removed} part files, "
        f"wrote {r.files}; {r.stats.rows:,} rows, {r.stats.rejects:,} rejects, {r.stats.gaps} gaps"
    )
