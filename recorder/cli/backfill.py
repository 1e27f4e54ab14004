"""``recorder backfill``: heal a recorded day's trade gaps from Kiwoom's REST tick chart."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from recorder.cli.common import EXISTING_DATA_DIR, check_date, handle_errors, keys_option
from recorder.errors import RecorderError


@click.command()
@click.option("--date", "date", required=True, help="The KST trading date to heal (YYYY-MM-DD).")
@click.option("--symbols", help="Only these items, comma-separated (005930 is every venue, 005930_NX NXT).")
@EXISTING_DATA_DIR
@keys_option(
    "A TOML keys file of [[key]] tables (mode 0600): items are shared out over the keys, "
    "each at Kiwoom's 5 requests a second. Default: KIWOOM_APPKEY / KIWOOM_SECRETKEY."
)
@click.option("--env", "env_name", default="prod", show_default=True, type=click.Choice(["prod", "mock"]))
@click.option("--rest-url", help="REST base URL of a Kiwoom-compatible server (or KIWOOM_REST_URL).")
@handle_errors
def backfill(
    date: str,
    symbols: str | None,
    data_dir: Path,
    keys_file: Path | None,
    env_name: str,
    rest_url: str | None,
) -> None:
    """Fetch the trades missing in the day's gaps from the tick chart (ka10079) and store them
    with source = 'rest', only where they provably add up to the missing volume.

    Each hole between two recorded trades is healed when both sit in the chart at their
    cumulative volumes; otherwise it is left unhealed with the shares still missing. The
    outcomes are in the backfill table and the gaps view. Order books cannot be backfilled.
    Running it again adds nothing. Exit 1 if some items could not be examined (try again).

    \b
    recorder backfill --date 2026-07-20 --keys keys.toml
    """
    import asyncio

    from recorder.capture.backfill import rest_url_for, run_backfill
    from recorder.client.credentials import load_credentials, load_keys_file
    from recorder.kiwoom.items import parse_items

    check_date(date)
    items = parse_items(symbols) if symbols else []
    keys = (
        load_keys_file(keys_file) if keys_file is not None else [load_credentials(dotenv_path=Path(".env"))]
    )
    url = rest_url_for(env_name, rest_url)
    res = asyncio.run(run_backfill(data_dir, date, url, keys, items=items, progress=_progress()))
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(res.summary())
    if res.failed:
        raise RecorderError(f"{len(res.failed)} items could not be examined; run the backfill again")


def _progress() -> Any:
    if not sys.stderr.isatty():
        return None

    def show(res: Any) -> None:
        click.echo(
            f"\rbackfill {res.date}: items {res.items_done}/{res.items}, holes healed "
            f"{res.holes_aligned}/{res.holes}, requests {res.requests}, pages {res.pages}, "
            f"rate-limited {res.rate_limited}",
            err=True,
            nl=False,
        )

    return show
