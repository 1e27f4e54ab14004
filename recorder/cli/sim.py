"""``recorder sim``: the embedded Kiwoom-compatible venue with a synthetic market."""

from __future__ import annotations

import click

from recorder.cli.common import REQUIRE_CREDENTIALS, handle_errors, venue_credentials


@click.command()
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
