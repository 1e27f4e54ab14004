"""The ``recorder`` command: thin click commands over the library.

Each command parses options, calls one library function and prints the result. Errors
the user can act on (:class:`~recorder.errors.RecorderError`) are printed as one line and
exit non-zero; no traceback, and never a secret.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from recorder.cli.common import (
    DATA_DIR,
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_FAILURE,
    REQUIRE_CREDENTIALS,
    check_date,
    handle_errors,
    venue_credentials,
)
from recorder.errors import ConfigError

__all__ = ["EXIT_AUTH", "EXIT_CONFIG", "EXIT_FAILURE", "main"]


@click.group()
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.version_option(package_name="kiwoom-recorder")
def main(log_level: str) -> None:
    """Record Kiwoom real-time trades (0B) and order books (0D) into Parquet."""
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@main.command()
@click.option("--symbols", help="Items, comma-separated: 005930,000660,005930_NX.")
@click.option("--universe", help="kospi | kosdaq | all (ka10099) or a FILE of items.")
@click.option(
    "--nxt/--no-nxt",
    default=None,
    help="With --universe, also record each symbol's NXT stream (<code>_NX) where ka10099 says it "
    "trades on NXT. Default: on with --sim, off otherwise.",
)
@click.option("--types", default="0B,0D", show_default=True, help="Real-time types to register.")
@DATA_DIR
@click.option("--env", "env_name", default="prod", show_default=True, type=click.Choice(["prod", "mock"]))
@click.option("--ws-url", help="WebSocket URL of any Kiwoom-compatible server (or KIWOOM_WS_URL).")
@click.option("--rest-url", help="REST base URL (or KIWOOM_REST_URL).")
@click.option("--duration", help="Stop after 30s, 10m, 2h, ...")
@click.option("--until", "until", help="Stop at HH:MM KST.")
@click.option("--sim", is_flag=True, help="Start the embedded venue on loopback and record from it.")
@click.option("--writer-id", help="Part-file writer id (default: host name; one per process).")
@click.option(
    "--trading-date",
    help="Date the exchange times as this KST day (YYYY-MM-DD), e.g. when "
    "recording a replay of a past day. Default: the day each frame is received.",
)
@click.option("--flush-age", default="5m", show_default=True, help="Write buffered rows at least this often.")
# Hidden options for the soak runs (soak/scenarios.py); not part of the CLI contract.
@click.option(
    "--throttle-writes",
    type=float,
    default=None,
    hidden=True,
    help="Soak testing: sleep this many seconds before each part-file write (a slow consumer).",
)
@click.option(
    "--session-option",
    "session_option",
    multiple=True,
    hidden=True,
    metavar="KEY=NUMBER",
    help="Soak testing: a recorder.client.session.Session setting, e.g. kicked_backoff_s=0.5.",
)
@handle_errors
def capture(
    symbols: str | None,
    universe: str | None,
    nxt: bool | None,
    types: str,
    data_dir: Path,
    env_name: str,
    ws_url: str | None,
    rest_url: str | None,
    duration: str | None,
    until: str | None,
    sim: bool,
    writer_id: str | None,
    trading_date: str | None,
    flush_age: str,
    throttle_writes: float | None,
    session_option: tuple[str, ...],
) -> None:
    """Capture trades and order books until --duration/--until or SIGINT/SIGTERM."""
    import asyncio

    from recorder.capture.runner import CaptureRequest, run_capture
    from recorder.cli import options
    from recorder.kiwoom.items import parse_items

    if trading_date:
        check_date(trading_date)
    if duration and until:
        raise ConfigError("give --duration or --until, not both")
    seconds = options.parse_duration(duration) if duration else None
    if until:
        seconds = options.seconds_until(until, dt.datetime.now(dt.UTC))
    req = CaptureRequest(
        data_dir=data_dir,
        symbols=parse_items(symbols) if symbols else [],
        universe=universe,
        nxt=nxt,
        types=[t.strip() for t in types.split(",") if t.strip()],
        env_name=env_name,
        ws_url=ws_url,
        rest_url=rest_url,
        duration_s=seconds,
        sim=sim,
        writer=writer_id,
        trading_date=trading_date,
        flush_age_s=options.parse_duration(flush_age),
        session_options=_session_options(session_option),
        sink_options={"write": _throttled_write(throttle_writes)} if throttle_writes else {},
    )
    result = asyncio.run(run_capture(req))
    click.echo(result.summary())


def _session_options(pairs: tuple[str, ...]) -> dict[str, float]:
    """``KEY=NUMBER`` pairs of the hidden ``--session-option`` (soak runs) → Session kwargs."""
    out: dict[str, float] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key.strip() or "?"] = int(value) if value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            raise ConfigError(f"--session-option {pair!r}: expected KEY=NUMBER") from None
    return out


def _throttled_write(seconds: float | None) -> Callable[[Any, Path], None]:
    """A part-file writer that sleeps first: the slow consumer of the soak runs."""
    import time

    from recorder.store.sink import write_part

    def write(table: Any, final: Path) -> None:
        time.sleep(seconds or 0.0)
        write_part(table, final)

    return write


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option(
    "--port", default=8910, show_default=True, type=int, help="Port for REST and WebSocket (0 = any)."
)
@click.option(
    "--symbols", "n_symbols", default=20, show_default=True, type=int, help="How many symbols to simulate."
)
@click.option(
    "--rate", default=2.0, show_default=True, type=float, help="Trades per second per symbol and venue."
)
@click.option("--seed", default=0, show_default=True, type=int)
@REQUIRE_CREDENTIALS
@handle_errors
def sim(host: str, port: int, n_symbols: int, rate: float, seed: int, require_credentials: bool) -> None:
    """Serve a synthetic Kiwoom-compatible market (REST + WebSocket) until interrupted."""
    from recorder.sim.venue import VenueConfig, run_forever

    creds = venue_credentials(require_credentials)

    click.echo(
        f"serving a synthetic market on http://{host}:{port} "
        f"(WebSocket ws://{host}:{port}/api/dostk/websocket); Ctrl-C stops",
        err=True,
    )
    run_forever(
        VenueConfig(
            host=host,
            port=port,
            n_symbols=n_symbols,
            trade_rate=rate,
            seed=seed,
            appkey=creds[0],
            secretkey=creds[1],
        )
    )


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@DATA_DIR
@click.option("--date", help="KST trading date of the frames (YYYY-MM-DD); default today.")
@click.option("--writer-id", help="Part-file writer id (default: derived from the file).")
@handle_errors
def ingest(file: Path, data_dir: Path, date: str | None, writer_id: str | None) -> None:
    """Decode raw REAL frames (NDJSON, one per line) into the store."""
    from recorder.store.ingest import ingest_ndjson

    if date:
        check_date(date)
    r = ingest_ndjson(file, data_dir, date=date, writer=writer_id)
    s = r.stats
    click.echo(
        f"ingested {r.lines:,} lines: {s.rows:,} rows, {s.rejects:,} rejects, "
        f"{r.files} part files in {r.seconds:.2f}s ({s.rows / max(r.seconds, 1e-9):,.0f} rows/s)"
    )


@main.command()
@DATA_DIR
@click.option("--writer-id", "writers", multiple=True, help="Only these writers (default: every journal).")
@handle_errors
def rebuild(data_dir: Path, writers: tuple[str, ...]) -> None:
    """Regenerate Parquet from the journal (the journal is the source of truth)."""
    from recorder.store.ingest import rebuild as do_rebuild

    r = do_rebuild(data_dir, list(writers) or None)
    click.echo(
        f"rebuilt writers {', '.join(r.writers)}: removed {r.removed} part files, "
        f"wrote {r.files}; {r.stats.rows:,} rows, {r.stats.rejects:,} rejects, {r.stats.gaps} gaps"
    )


@main.command()
@click.argument("sql_text", metavar="[SQL]", required=False)
@click.option(
    "--named",
    metavar="NAME",
    is_flag=False,
    flag_value="",
    default=None,
    help="Run the named query NAME (bars, spread, imbalance, coverage, vwap) instead of SQL; "
    "alone, list the named queries and their parameters.",
)
@click.option(
    "--param",
    "params",
    metavar="K=V",
    multiple=True,
    help="A parameter, repeatable: --param start=2026-07-20 --param symbol=005930. Bound, never "
    "pasted into the SQL; with SQL, fills its $K placeholders.",
)
@DATA_DIR
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(["table", "csv", "json", "parquet"]),
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write here (required for parquet)."
)
@handle_errors
def query(
    sql_text: str | None,
    named: str | None,
    params: tuple[str, ...],
    data_dir: Path,
    fmt: str,
    out: Path | None,
) -> None:
    """Run SQL or a named query over the store (views: trades, orderbook, gaps, rejects).

    \b
    recorder query "SELECT symbol, count(*) FROM trades GROUP BY 1"
    recorder query --named bars --param start=2026-07-20 --param end=2026-07-20 --param symbol=005930
    recorder query --named          # list the named queries
    """
    import pyarrow as pa

    import queries
    from recorder.cli.output import write_result

    if (sql_text is None) == (named is None):
        raise ConfigError("give SQL or --named NAME (exactly one); `--named` alone lists the named queries")
    values: dict[str, str] = {}
    for p in params:
        key, eq, value = p.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--param {p!r}: expected K=V")
        if key.strip() in values:
            raise ConfigError(f"--param {key.strip()} given twice")
        values[key.strip()] = value
    if named == "":
        if values:
            raise ConfigError("--param needs a query: --named NAME or SQL")
        catalog = queries.named().values()
        listing = {
            "name": [q.name for q in catalog],
            "params": [q.signature for q in catalog],
            "description": [q.description for q in catalog],
        }
        write_result(pa.table(listing), fmt, out)
    elif named is not None:
        write_result(queries.run(named, data_dir, **values), fmt, out)
    else:
        assert sql_text is not None
        write_result(queries.sql(data_dir, sql_text, values or None), fmt, out)


# Commands that live in their own modules register here.
from recorder.cli.replay import replay  # noqa: E402
from recorder.cli.store import compact, ls, verify  # noqa: E402

for _command in (replay, ls, verify, compact):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
