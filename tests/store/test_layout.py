"""The store's layout: names built by the layout parse back, odd paths are refused, the sink's
files match the layout's globs, and no other module spells a partition path itself."""

from __future__ import annotations

import ast
from pathlib import Path, PurePath

import duckdb
import orjson
import pytest

from recorder.kiwoom.decode import Decoder
from recorder.kiwoom.fields import MARKET_TABLES, TABLES
from recorder.store.layout import (
    WRITER_RE,
    PartPath,
    default_writer_id,
    hive_types,
    parse_part,
    part_glob,
    part_name,
    partition_dir,
    partition_keys,
)
from recorder.store.sink import Sink

REPO = Path(__file__).parents[2]
DATA = REPO / "tests" / "data"
FRAMES = [orjson.loads(line)["frame"] for line in (DATA / "kiwoom-frames.jsonl").read_text().splitlines()]
RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST


@pytest.mark.parametrize("table", TABLES)
def test_built_names_parse_back(table: str) -> None:
    symbol = "005930" if table in MARKET_TABLES else None
    d = partition_dir(Path("store"), table, "2026-07-20", symbol)
    path = d / part_name("host-1.a", 7, 123_456_789_012)
    got = parse_part(path.relative_to("store"))
    assert got == PartPath(table, "2026-07-20", symbol, "host-1.a", 7, 123_456_789_012)
    assert got.where == f"{table} date=2026-07-20" + (" symbol=005930" if symbol else "")


def test_a_parquet_file_the_sink_did_not_name_is_still_a_part_file() -> None:
    got = parse_part("trades/date=2026-07-20/symbol=005930/copied-by-hand.parquet")
    assert got == PartPath("trades", "2026-07-20", "005930", None, -1, -1)


@pytest.mark.parametrize(
    "rel",
    [
        "trades/date=2026-07-20/part-w-000000000000-000000000001.parquet",  # no symbol folder
        "gaps/date=2026-07-20/symbol=005930/part-w-000000000000-000000000001.parquet",  # one too many
        "trades/symbol=005930/date=2026-07-20/x.parquet",  # keys in the wrong order
        "trades/date=/symbol=005930/x.parquet",  # empty value
        "trades/date=yesterday/symbol=005930/x.parquet",  # not a date
        "trades/date=2026-07-20/symbol=005930/.part-w-000000000000-000000000001.parquet.tmp",
        "trades/date=2026-07-20/symbol=005930/_metadata.parquet",  # hidden
        "trades/date=2026-07-20/symbol=005930/notes.txt",
        "quotes/date=2026-07-20/symbol=005930/x.parquet",  # not a table
        "_journal/w1/date=2026-07-20/x.parquet",
        "",
    ],
)
def test_paths_outside_the_layout_are_refused(rel: str) -> None:
    assert parse_part(rel) is None


def test_partition_keys() -> None:
    assert partition_keys("trades") == ("date", "symbol") and partition_keys("rejects") == ("date",)
    with pytest.raises(ValueError, match="unknown table"):
        partition_keys("quotes")


def test_the_sinks_files_are_the_ones_the_globs_find(tmp_path: Path) -> None:
    dec = Decoder()
    for fno in range(4):
        dec.add(orjson.dumps(FRAMES[2]), RECV + fno, fno)  # 7.5: trades of three symbols, a reject
        dec.add(orjson.dumps(FRAMES[3]), RECV + fno, 10 + fno)  # 7.6: an NXT book and trade
    sink = Sink(tmp_path, "w1")
    sink.add(dec.finish())
    sink.close()
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    globbed = sorted(p for table in TABLES for p in tmp_path.glob(part_glob(table)))
    assert written == globbed and len(written) == sink.files_written >= 4
    assert all(parse_part(p.relative_to(tmp_path)) for p in written)
    one = tmp_path.glob(part_glob("trades", "2026-07-20", "005930"))
    assert [parse_part(p.relative_to(tmp_path)).symbol for p in one] == ["005930"]  # type: ignore[union-attr]
    con = duckdb.connect()
    for table in ("trades", "orderbook", "rejects"):  # DuckDB reads the globs with the layout's types
        glob = (tmp_path / part_glob(table)).as_posix()
        cols = "any_value(typeof(date)), " + (
            "any_value(typeof(symbol)), min(symbol)" if table in MARKET_TABLES else "1, 1"
        )
        hive = hive_types(table)
        q = f"SELECT {cols} FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {hive})"
        got = con.sql(q).fetchall()
        assert got[0][0] == "DATE"
        if table in MARKET_TABLES:
            assert got[0][1] == "VARCHAR" and got[0][2].startswith("00")  # the leading zeros stay


def test_default_writer_id_is_a_valid_writer_id() -> None:
    assert WRITER_RE.fullmatch(default_writer_id())


def _path_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String pieces (f-string parts included) that spell a Hive partition folder; docstrings aside."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if any(text.startswith(k) or f"/{k}" in text for k in ("date=", "symbol=")):
                out.append((node.lineno, text))
    return out


def test_partition_paths_are_spelled_only_by_the_layout() -> None:
    found = {}
    for path in sorted([*(REPO / "recorder").rglob("*.py"), *(REPO / "queries").rglob("*.py")]):
        if PurePath(path).name == "layout.py" and path.parent.name == "store":
            continue
        if hits := _path_literals(ast.parse(path.read_text(), str(path))):
            found[path.relative_to(REPO).as_posix()] = hits
    assert found == {}, "build and parse partition paths with recorder.store.layout"
