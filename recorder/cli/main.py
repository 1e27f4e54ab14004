"""The ``recorder`` command: thin click commands over the library.

Each command parses options, calls one library function and prints the result. Errors
the user can act on (:class:`~recorder.errors.RecorderError`) are printed as one line and
exit non-zero; no traceback, and never a secret.
"""

from __future__ import annotations

import click

from recorder.cli import logs
from recorder.cli.backfill import backfill
from recorder.cli.calendar import calendar
from recorder.cli.capture import capture
from recorder.cli.journal import journal
from recorder.cli.query import query
from recorder.cli.replay import replay
from recorder.cli.report import report
from recorder.cli.sim import sim
from recorder.cli.store import compact, ingest, ls, rebuild, verify

__all__ = ["main"]


@click.group()
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.version_option(package_name="kiwoom-recorder")
def main(log_level: str) -> None:
    """Record Kiwoom real-time trades (0B) and order books (0D) into Parquet.

    \b
    Exit codes: 0 success; 1 store or journal failure; 2 usage (bad option, missing
    folder, damaged file); 3 credentials refused; 4 never connected, nothing captured.
    """
    logs.configure(log_level)


for _command in (
    capture,
    backfill,
    calendar,
    sim,
    ingest,
    rebuild,
    query,
    replay,
    ls,
    verify,
    compact,
    journal,
    report,
):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
