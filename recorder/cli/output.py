"""Printing Arrow tables for people (a table) and for programs (CSV, JSON lines, Parquet)."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa

from recorder.cli.common import write_error
from recorder.errors import ConfigError


def write_result(table: pa.Table, fmt: str, out: Path | None = None) -> None:
    """Write ``table`` to ``out`` (or stdout) as ``table``, ``csv``, ``json`` or ``parquet``.

    Raises:
        ConfigError: parquet without ``out``, or ``out`` cannot be written.
    """
    if fmt == "parquet" and out is None:
        raise ConfigError("--format parquet needs --out FILE")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, out, compression="zstd")
            return
        text = _render(table, fmt)
        if out is None:
            sys.stdout.write(text)
        else:
            out.write_text(text, encoding="utf-8")
    except OSError as exc:
        if out is None:
            raise
        raise write_error(out, exc) from exc


def _render(table: pa.Table, fmt: str) -> str:
    if fmt == "csv":
        import io

        import pyarrow.csv as pacsv

        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        return buf.getvalue().decode()
    if fmt == "json":
        import orjson

        opts = orjson.OPT_APPEND_NEWLINE
        return "".join(orjson.dumps(row, default=str, option=opts).decode() for row in table.to_pylist())
    return _text_table(table)


def _text_table(table: pa.Table) -> str:
    from rich.console import Console
    from rich.table import Table

    t = Table(show_lines=False)
    for name in table.column_names:
        t.add_column(name, overflow="fold")
    for row in table.to_pylist():
        t.add_row(*("" if v is None else str(v) for v in row.values()))
    import io

    console = Console(width=200, file=io.StringIO(), force_terminal=False)
    console.print(t)
    return console.file.getvalue() + f"({table.num_rows} rows)\n"  # type: ignore[attr-defined]
