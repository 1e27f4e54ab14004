"""``recorder capture``: record a live session (or the embedded venue's) into the store."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import DATA_DIR, JOURNAL_DIR, check_date, handle_errors, keys_option
from recorder.cli.journal import JOURNAL_ARCHIVE
from recorder.errors import ConfigError, RecorderError, StoreError

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store


@click.command()
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
@click.option(
    "--ws-url", help="WebSocket URL of a Kiwoom-compatible server; with --rest-url (or KIWOOM_WS_URL)."
)
@click.option("--rest-url", help="REST base URL of that server; with --ws-url (or KIWOOM_REST_URL).")
@click.option("--duration", help="Stop after 30s, 10m, 2h, ...")
@click.option(
    "--until",
    "until",
    help="Stop at HH:MM KST, or 'close': after the day's last session of the venues recorded "
    "(KRX; NXT too with _NX items or --nxt) plus --close-grace.",
)
@click.option(
    "--close-grace", default="5m", show_default=True, help="With --until close, keep recording this long."
)
@click.option(
    "--force",
    is_flag=True,
    help="Record even when the trading calendar says the market is closed today "
    "(by default such a day exits 0 at once, without logging in).",
)
@click.option(
    "--backfill",
    is_flag=True,
    help="When the capture ends, heal the day's trade gaps from the REST tick chart (ka10079) "
    "with the same keys, as recorder backfill does.",
)
@click.option(
    "--compact/--no-compact",
    default=True,
    show_default=True,
    help="When the capture ends, merge this writer's part files of the recorded days into one per "
    "partition (crash-safe, as recorder compact). A stop by SIGINT/SIGTERM skips it (and --backfill): "
    "a signal asks for a quick exit.",
)
@click.option(
    "--journal-keep",
    "journal_keep",
    type=click.IntRange(min=0),
    help="When the capture ends, remove this writer's journal segments older than DAYS days "
    "(never one with a frame not yet in Parquet); see recorder journal prune.",
)
@JOURNAL_ARCHIVE
@click.option("--sim", is_flag=True, help="Start the embedded venue on loopback and record from it.")
@click.option("--writer-id", help="Part-file writer id (default: host name; one per process).")
@click.option(
    "--trading-date",
    help="Date the exchange times as this KST day (YYYY-MM-DD), e.g. when "
    "recording a replay of a past day. Default: the day each frame is received.",
)
@click.option("--flush-age", default="5m", show_default=True, help="Write buffered rows at least this often.")
@keys_option(
    "A TOML keys file of [[key]] tables (appkey, secretkey; mode 0600): one session per app key, "
    "the universe spread over them, at most 200 codes each."
)
@click.option(
    "--shard",
    help="I/N: record only this machine's slice of the universe (each machine its own keys and "
    "--writer-id; together they cover it without overlap).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve Prometheus metrics at /metrics and a health check at /healthz (200 while every "
    "session is logged in and subscribed, 503 otherwise) on this port.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port.")
@click.option(
    "--relay-port",
    type=click.IntRange(0, 65535),
    help="Share the live feed with local Kiwoom clients (a bot, a dashboard): a Kiwoom-compatible "
    "REST token endpoint and WebSocket on this port (0: any free port; the URL is logged). See "
    "docs/relay.md.",
)
@click.option("--relay-host", default="127.0.0.1", show_default=True, help="Address for --relay-port.")
@click.option(
    "--relay-secret",
    "relay_secret",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file (mode 0600) holding a secret: relay clients may get a token with any app key and "
    "this secret key, besides the recorder's own key pairs.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text, or one JSON object per line (ts, level, logger, message).",
)
@click.option(
    "--disk-check",
    type=click.Choice(["refuse", "warn", "off"]),
    default="refuse",
    show_default=True,
    help="Before connecting, estimate the day's disk need (codes x session hours x --disk-rate) and "
    "refuse to start, or only warn, when the journal's or the store's file system has less free.",
)
@click.option(
    "--disk-rate",
    default="2340",
    metavar="BYTES",
    show_default=True,
    help="Bytes one code takes per second of session, journal and Parquet (2340: 4.5 entries/s x "
    "520 bytes). See docs/deployment.md.",
)
@click.option(
    "--disk-floor",
    metavar="SIZE",
    help="While recording, warn (once per crossing) when free space falls under this size, e.g. "
    "20GB. Default: what the universe writes in an hour, at least 1 GiB.",
)
@JOURNAL_DIR
@handle_errors
def capture(
    symbols: str | None,
    universe: str | None,
    nxt: bool | None,
    types: str,
    data_dir: Path | S3Store,
    env_name: str,
    ws_url: str | None,
    rest_url: str | None,
    duration: str | None,
    until: str | None,
    close_grace: str,
    force: bool,
    backfill: bool,
    compact: bool,
    journal_keep: int | None,
    journal_archive: S3Store | None,
    sim: bool,
    writer_id: str | None,
    trading_date: str | None,
    flush_age: str,
    keys_file: Path | None,
    shard: str | None,
    metrics_port: int | None,
    metrics_host: str,
    relay_port: int | None,
    relay_host: str,
    relay_secret: Path | None,
    log_format: str,
    disk_check: str,
    disk_rate: str,
    disk_floor: str | None,
    journal_dir: Path | None,
) -> None:
    """Capture trades and order books until --duration/--until or SIGINT/SIGTERM.

    On a day the trading calendar says is closed (a weekend, a holiday, the year-end closure),
    print why and exit 0 without logging in, unless --force or --sim.
    """
    import asyncio

    from recorder.capture.assign import parse_shard
    from recorder.capture.diskcheck import parse_size
    from recorder.capture.runner import CaptureRequest, isolated_trading_day, run_capture
    from recorder.cli import logs, options
    from recorder.kiwoom.items import parse_items

    logs.set_format(log_format)
    if trading_date:
        check_date(trading_date)
    if duration and until:
        raise ConfigError("give --duration or --until, not both")
    if journal_archive is not None and journal_keep is None:
        raise ConfigError("--journal-archive archives what --journal-keep prunes: give --journal-keep too")
    seconds = options.parse_duration(duration) if duration else None
    until_close = until is not None and until.strip().lower() == "close"
    if until and not until_close:
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
        keys_file=keys_file,
        shard=parse_shard(shard) if shard else (1, 1),
        sim=sim,
        writer=writer_id,
        trading_date=trading_date,
        flush_age_s=options.parse_duration(flush_age),
        until_close=until_close,
        grace_s=options.parse_duration(close_grace),
        force=force,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        relay_port=relay_port,
        relay_host=relay_host,
        relay_secret_file=relay_secret,
        backfill=backfill,
        compact=compact,
        journal_keep_days=journal_keep,
        journal_archive=journal_archive,
        journal_dir=journal_dir,
        disk_check=disk_check,
        disk_rate=parse_size(disk_rate),
        disk_floor=int(parse_size(disk_floor)) if disk_floor else None,
        calendar=isolated_trading_day,
    )
    result = asyncio.run(run_capture(req))
    click.echo(result.summary())
    if result.journal_error:
        raise StoreError(f"journal archive: {result.journal_error}")
    failed = [f for b in result.backfills for f in b.failed]
    if failed:
        raise RecorderError(
            f"backfill: {len(failed)} items could not be examined; run recorder backfill again"
        )
