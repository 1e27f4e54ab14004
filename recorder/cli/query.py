"""``recorder query``: SQL or a named query over the store, through DuckDB."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from recorder.cli.common import DATA_DIR, OutputFile, handle_errors
from recorder.errors import ConfigError
from recorder.store.layout import store_location

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store


@click.command()
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
@click.option("--out", type=OutputFile(), help="Write here (required for parquet).")
@handle_errors
def query(
    sql_text: str | None,
    named: str | None,
    params: tuple[str, ...],
    data_dir: Path | S3Store,
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
        write_result(queries.run(named, store_location(data_dir, must_exist=True), **values), fmt, out)
    else:
        assert sql_text is not None
        where = store_location(data_dir, must_exist=True)
        write_result(queries.sql(where, sql_text, values or None), fmt, out)
