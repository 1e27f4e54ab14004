"""``recorder sim``: the embedded Kiwoom-compatible venue with a synthetic market."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from recorder.cli.common import (
    REQUIRE_CREDENTIALS,
    handle_errors,
    number_check,
    venue_address,
    venue_credentials,
)

if TYPE_CHECKING:
    from recorder.sim.venue import Venue

#: The most symbols ``recorder sim`` makes up: the whole KRX market is about 2,700.
MAX_SIM_SYMBOLS = 10_000
#: The most trades per second per stream: far above the busiest real symbol, and low enough
#: that one step of the market stays small.
MAX_SIM_RATE = 1_000.0


@click.command()
@venue_address()
@click.option(
    "--symbols",
    "n_symbols",
    default=20,
    show_default=True,
    type=int,
    callback=number_check(1, MAX_SIM_SYMBOLS),
    help="How many symbols to simulate.",
)
@click.option(
    "--rate",
    default=2.0,
    show_default=True,
    type=float,
    callback=number_check(0, MAX_SIM_RATE, above=True),
    help="Trades per second per symbol and venue.",
)
@click.option("--seed", default=0, show_default=True, type=int)
@REQUIRE_CREDENTIALS
@handle_errors
def sim(host: str, port: int, n_symbols: int, rate: float, seed: int, require_credentials: bool) -> None:
    """Serve a synthetic Kiwoom-compatible market (REST + WebSocket) until interrupted."""
    from recorder.sim.venue import VenueConfig, run_forever

    creds = venue_credentials(require_credentials)
    config = VenueConfig(
        host=host,
        port=port,
        n_symbols=n_symbols,
        trade_rate=rate,
        seed=seed,
        appkey=creds[0],
        secretkey=creds[1],
    )
    run_forever(config, on_listening=_banner)


def _banner(venue: Venue) -> None:
    click.echo(
        f"serving a synthetic market on {venue.rest_url} (WebSocket {venue.ws_url}); Ctrl-C stops",
        err=True,
    )
