"""The store's scan and ``recorder ls``: files sorted by what they are, and an ls that imports
neither the decoder nor DuckDB."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from recorder.kiwoom.decode import Decoder
from recorder.store.inventory import scan
from recorder.store.journal import JournalWriter, write_checkpoint
from recorder.store.layout import journal_root, temp_path
from recorder.store.sink import Sink

DATA = Path(__file__).parents[1] / "data"
FRAMES = [orjson.loads(line)["frame"] for line in (DATA / "kiwoom-frames.jsonl").read_text().splitlines()]
RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST


def small_store(root: Path) -> None:
    """Part files of one writer (three trades, an NXT book, a reject) and its journal."""
    dec = Decoder()
    with JournalWriter(journal_root(root, "w1")) as j:
        for frame in (FRAMES[2], FRAMES[3]):  # 7.5 and 7.6
            raw = orjson.dumps(frame)
            dec.add(raw, RECV, j.append_frame(RECV, raw.decode()))
    write_checkpoint(journal_root(root, "w1"), 1)
    sink = Sink(root, "w1")
    sink.add(dec.finish())
    sink.close()


def test_scan_sorts_parts_temps_and_strays(tmp_path: Path) -> None:
    small_store(tmp_path)
    day = tmp_path / "trades" / "date=2026-07-20"
    pq.write_table(pa.table({"x": [1]}), day / "symbol=005930" / "copied.parquet")
    temp_path(day / "symbol=005930" / "part-w2-000000000000-000000000001.parquet").write_bytes(b"")
    (day / "notes.txt").write_text("a stray")
    (day / "misplaced.parquet").write_bytes(b"")  # no symbol folder: not where a query reads
    found = scan(tmp_path)
    rel = {p.path.relative_to(tmp_path).as_posix(): p for p in found.parts}
    assert len(rel) == 6
    copied = rel["trades/date=2026-07-20/symbol=005930/copied.parquet"]
    assert (copied.writer, copied.first_fno, copied.last_fno) == (None, -1, -1)
    named = rel["trades/date=2026-07-20/symbol=005930/part-w1-000000000001-000000000001.parquet"]
    assert (named.table, named.date, named.symbol, named.writer, named.first_fno) == (
        "trades",
        "2026-07-20",
        "005930",
        "w1",
        1,
    )
    assert named.size == named.path.stat().st_size and named.where == "trades date=2026-07-20 symbol=005930"
    assert [p.name for p in found.temps] == [".part-w2-000000000000-000000000001.parquet.tmp"]
    assert sorted(p.name for p in found.strays) == ["misplaced.parquet", "notes.txt"]
    assert scan(tmp_path / "nowhere").parts == []


_LS = """
import sys
from recorder.cli.main import main

try:
    main(["ls", "--data-dir", sys.argv[1], "--format", "json"], standalone_mode=False)
finally:
    with open(sys.argv[2], "w") as f:
        f.write("\\n".join(sorted(sys.modules)))
"""

# What ls has no use for: the decoder (and the Arrow JSON parser and thread pools it brings),
# the decoding pipeline, DuckDB.
HEAVY = (
    "recorder.kiwoom.decode_arrow",
    "recorder.kiwoom.decode",
    "recorder.store.pipeline",
    "pyarrow.json",
    "duckdb",
)


def test_ls_imports_neither_the_decoder_nor_duckdb(tmp_path: Path) -> None:
    store = tmp_path / "data"
    small_store(store)
    modules = tmp_path / "modules.txt"
    out = subprocess.run(
        [sys.executable, "-c", _LS, str(store), str(modules)], capture_output=True, text=True, check=True
    )
    doc = orjson.loads(out.stdout)
    assert {t["table"]: t["rows"] for t in doc["tables"]} == {
        "trades": 3,
        "orderbook": 1,
        "gaps": 0,
        "rejects": 1,
        "backfill": 0,
    }
    assert [(j["writer"], j["segments"], j["checkpoint"]) for j in doc["journals"]] == [("w1", 1, 1)]
    loaded = set(modules.read_text().split())
    assert "recorder.store.inventory" in loaded  # the test runs the real ls
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
