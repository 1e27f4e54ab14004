"""``recorder replay``: a recorded day as REAL frames (NDJSON) or served by the embedded venue."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import (
    EXISTING_DATA_DIR,
    REQUIRE_CREDENTIALS,
    OutputFile,
    handle_errors,
    number_check,
    venue_address,
    venue_credentials,
    write_error,
)
from recorder.errors import ConfigError

if TYPE_CHECKING:
    from recorder.replay.read import Selection
    from recorder.store.objstore import S3Store

log = logging.getLogger(__name__)


def parse_speed(text: str) -> float | None:
    """``max`` → None (no pacing); ``1``, ``10``, ``0.5``, ``10x`` → that factor.

    Raises:
        ConfigError: anything else, or a factor that is not positive.
    """
    t = text.strip().lower()
    if t == "max":
        return None
    try:
        speed = float(t.removesuffix("x"))
    except ValueError:
        raise ConfigError(f"--speed {text!r}: give max or a factor such as 1 or 10") from None
    if not speed > 0 or speed == float("inf"):
        raise ConfigError(f"--speed {text!r} must be a positive factor")
    return speed


@click.command()
@EXISTING_DATA_DIR
@click.option("--date", "date", required=True, help="KST trading date to replay (YYYY-MM-DD).")
@click.option("--end-date", help="Last date, inclusive, to replay several days in a row.")
@click.option(
    "--symbols", help="Codes (005930: every venue) or items (005930_NX: that venue), comma-separated."
)
@click.option("--types", default="0B,0D", show_default=True, help="0B (trades) and/or 0D (orderbook).")
@click.option(
    "--speed", default="max", show_default=True, help="max, or a factor of real time: 1, 10, 0.5 ..."
)
@click.option("--serve", is_flag=True, help="Serve the day from the embedded Kiwoom-compatible venue.")
@venue_address("With --serve: ")
@click.option(
    "--settle",
    default=1.0,
    show_default=True,
    type=float,
    callback=number_check(0),
    help="With --serve: seconds after a client's last REG to start, unless it registered everything.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["ndjson"]),
    help="Without --serve: REAL frames, one per line (the default).",
)
@click.option("--out", type=OutputFile(), help="Write here instead of stdout.")
@REQUIRE_CREDENTIALS
@handle_errors
def replay(
    data_dir: Path | S3Store,
    date: str,
    end_date: str | None,
    symbols: str | None,
    types: str,
    speed: str,
    serve: bool,
    host: str,
    port: int,
    settle: float,
    fmt: str | None,
    out: Path | None,
    require_credentials: bool,
) -> None:
    """Replay recorded trades and order books in time order, as REAL frames.

    NDJSON output is what ``recorder ingest --date`` reads back. With --serve, unmodified
    Kiwoom clients connect (token, LOGIN, REG) and receive the recorded frames; the replay
    starts once a client has registered, and the server keeps running after the last frame
    until interrupted.
    """
    from recorder.kiwoom.items import parse_items
    from recorder.replay.read import select
    from recorder.store.objstore import local_view

    if serve and (fmt or out):
        raise ConfigError("--serve serves the replay; --format/--out write it: choose one")
    pace = parse_speed(speed)
    items = parse_items(symbols) if symbols else None
    type_list = [t for t in types.split(",") if t.strip()]
    creds = venue_credentials(require_credentials) if serve else (None, None)
    # An s3:// store: the selected partitions are copied into a temporary folder first.
    want = select(Path("."), date, end_date, symbols=items, types=type_list)
    codes = sorted(want.symbols) if want.symbols is not None else None
    with local_view(data_dir, tables=want.tables, dates=want.dates, symbols=codes) as local:
        if serve:
            _serve(local, date, end_date, items, type_list, pace, host, port, settle, creds)
            return
        _write(select(local, date, end_date, symbols=items, types=type_list), pace, out, str(data_dir))


def _write(sel: Selection, speed: float | None, out: Path | None, name: str) -> None:
    """NDJSON to ``out`` or stdout; a selection with nothing recorded is an error, not empty output."""
    from recorder.replay.feed import write_ndjson
    from recorder.replay.read import partitions

    nothing = f"nothing recorded in {name} for {', '.join(sel.dates)} and that selection"
    if not partitions(sel):
        raise ConfigError(nothing)
    if out is None:
        res = write_ndjson(sys.stdout.buffer, sel, speed=speed)
    else:
        try:
            with open(out, "wb") as f:
                res = write_ndjson(f, sel, speed=speed)
        except OSError as exc:  # the store's read errors are translated where it is read
            raise write_error(out, exc) from exc
    if res.entries == 0:  # the folders are there, but the venue filter kept nothing
        raise ConfigError(nothing)
    log.info("replayed %d entries in %d frames", res.entries, res.frames)


def _serve(
    data_dir: Path,
    date: str,
    end_date: str | None,
    items: list[str] | None,
    types: list[str],
    speed: float | None,
    host: str,
    port: int,
    settle: float,
    creds: tuple[str | None, str | None],
) -> None:
    from recorder.replay.feed import RecordedFeed
    from recorder.sim.venue import Venue, VenueConfig, run_forever

    with RecordedFeed(
        data_dir, date, end_date, symbols=items, types=types, speed=speed, settle_s=settle
    ) as feed:

        def banner(venue: Venue) -> None:
            click.echo(
                f"replaying {len(feed.items)} items of {date} at speed {speed or 'max'} on "
                f"{venue.rest_url} (WebSocket {venue.ws_url}); starts when a client has "
                "registered; Ctrl-C stops",
                err=True,
            )

        # A finer tick than the synthetic market's: pacing is only as fine as the steps.
        run_forever(
            VenueConfig(host=host, port=port, tick_interval=0.01, appkey=creds[0], secretkey=creds[1]),
            feed=feed,
            on_listening=banner,
        )
