"""Sink: layout, atomic part files, sort order, flush policy, exactly-once resume, loud errors."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import queries
from recorder.errors import StoreError
from recorder.kiwoom.decode import Decoder
from recorder.store.fs import DurableBatch
from recorder.store.sink import Gap, Sink, write_part

DATA = Path(__file__).parents[1] / "data"
FRAMES = [orjson.loads(line)["frame"] for line in (DATA / "kiwoom-frames.jsonl").read_text().splitlines()]
RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def decoded(fnos: range, frame: dict | None = None) -> object:
    dec = Decoder()
    for fno in fnos:
        dec.add(orjson.dumps(frame or FRAMES[2]), RECV + fno, fno)  # 7.5: two trades and a 0w reject
    return dec.finish()


def parts(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_layout_names_and_sorting(tmp_path: Path) -> None:
    sink = Sink(tmp_path, "w1")
    sink.add(decoded(range(5, 0, -1)))  # frames arrive in any order; files are sorted
    sink.add(decoded(range(3), FRAMES[3]))  # 7.6: NXT book and trade
    assert parts(tmp_path) == []  # nothing visible before a flush
    sink.close()
    rel = [p.relative_to(tmp_path).as_posix() for p in parts(tmp_path)]
    assert rel == [
        "orderbook/date=2026-07-20/symbol=005930/part-w1-000000000000-000000000002.parquet",
        "rejects/date=2026-07-20/part-w1-000000000001-000000000005.parquet",
        "trades/date=2026-07-20/symbol=000660/part-w1-000000000001-000000000005.parquet",
        "trades/date=2026-07-20/symbol=005930/part-w1-000000000000-000000000002.parquet",
        "trades/date=2026-07-20/symbol=373220/part-w1-000000000001-000000000005.parquet",
    ]
    f = tmp_path / rel[2]
    meta = pq.ParquetFile(f).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    t = pq.read_table(f)
    assert "symbol" not in t.column_names and "date" not in t.column_names  # hive columns only
    seqs = t["seq"].to_pylist()
    assert seqs == sorted(seqs) and len(seqs) == 5
    assert oct(os.stat(f).st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("run_bytes", [1, None])  # every chunk its own sorted run; one run for all
def test_rows_spread_over_many_runs_come_out_whole_and_sorted(tmp_path: Path, run_bytes: int | None) -> None:
    """A partition's rows from several runs are merged by (ts, seq), each row exactly once:
    frames arrive in shuffled order, so every run holds times the others interleave with."""
    fnos = list(range(1, 61))
    random.Random(7).shuffle(fnos)
    sink = Sink(tmp_path, "w1", run_bytes=run_bytes)
    for i in range(0, len(fnos), 6):
        for fno in fnos[i : i + 6]:
            frame = FRAMES[2 + fno % 2]  # 7.5 (KRX trades) and 7.6 (NXT trade and book)
            sink.add(decoded(range(fno, fno + 1), frame))
    runs = sum(len(b.runs) for b in sink._buffers.values())
    assert runs >= (10 if run_bytes == 1 else 0)
    sink.close()
    for table in ("trades", "orderbook"):
        for f in tmp_path.glob(f"{table}/*/*/*.parquet"):
            t = pq.read_table(f)
            keys = list(zip(t["ts"].to_pylist(), t["seq"].to_pylist(), strict=True))
            assert keys == sorted(keys) and len(set(t["seq"].to_pylist())) == len(t)
    got = queries.sql(tmp_path, "SELECT count(*) AS n, count(DISTINCT seq) AS d FROM trades").to_pylist()
    want = sum(len(decoded(range(f, f + 1), FRAMES[2 + f % 2]).tables["trades"].columns["seq"]) for f in fnos)
    assert got == [{"n": want, "d": want}]


def test_duckdb_reads_symbols_as_text(tmp_path: Path) -> None:
    sink = Sink(tmp_path, "w1")
    sink.add(decoded(range(3)))
    sink.close()
    t = queries.sql(
        tmp_path, "SELECT symbol, count(*) AS n, sum(volume) AS v FROM trades GROUP BY 1 ORDER BY 1"
    )
    assert t.to_pylist() == [{"symbol": "000660", "n": 3, "v": 3}, {"symbol": "373220", "n": 3, "v": 12}]
    r = queries.sql(tmp_path, "SELECT count(*) AS n, any_value(reason) AS why FROM rejects").to_pylist()[0]
    assert r["n"] == 3 and "0w" in r["why"]


def test_flush_by_rows_and_by_age(tmp_path: Path) -> None:
    clock = FakeClock()
    sink = Sink(tmp_path, "w1", max_rows=4, max_age_s=60, clock=clock)
    sink.add(decoded(range(2)))  # 4 trade rows: the trades buffer is full
    assert sink.files_written == 2 and sink.pending_first_fno == 0  # rejects still buffered
    assert sink.flush_due() == 0
    clock.t = 61
    assert sink.flush_due() == 1 and sink.pending_first_fno is None


def test_resume_skips_rows_already_on_disk(tmp_path: Path) -> None:
    first = Sink(tmp_path, "w1")
    first.add(decoded(range(4)))
    first.close()
    again = Sink(tmp_path, "w1", resume=True)
    again.add(decoded(range(6)))  # frames 0-3 again (a crash before the checkpoint), then 4-5
    again.close()
    t = queries.sql(tmp_path, "SELECT seq >> 16 AS fno, count(*) AS n FROM trades GROUP BY 1 ORDER BY 1")
    assert t.to_pylist() == [{"fno": i, "n": 2} for i in range(6)]
    assert again.rows_skipped == 8 + 4  # 8 trade rows and 4 rejects were already there
    other = Sink(tmp_path, "w2", resume=True)  # another writer's parts are not its own
    other.add(decoded(range(1)))
    other.close()
    assert other.rows_skipped == 0


def test_gaps(tmp_path: Path) -> None:
    sink = Sink(tmp_path, "w1")
    sink.add_gaps(
        [
            Gap(RECV, RECV + 5 * 10**9, "disconnect", "close 1000", (), 9 << 16),
            Gap(RECV, None, "reg_rejected", "105115", ("005930",), 10 << 16),
        ]
    )
    sink.close()
    g = queries.sql(
        tmp_path, "SELECT kind, end_ts - start_ts AS d, symbols FROM gaps ORDER BY seq"
    ).to_pylist()
    assert [x["kind"] for x in g] == ["disconnect", "reg_rejected"] and g[1]["symbols"] == ["005930"]


def test_write_errors_are_loud(tmp_path: Path) -> None:
    (tmp_path / "trades").write_text("a file where a directory should be")
    sink = Sink(tmp_path, "w1")
    sink.add(decoded(range(1)))
    with pytest.raises(StoreError, match="cannot write"):
        sink.close()


def test_a_failed_flush_shows_none_of_its_files(tmp_path: Path) -> None:
    """Part files of one flush appear together: when one partition cannot be written, the
    partitions written before it stay invisible (no final names, no temporary files left)."""
    calls: list[str] = []

    def failing_third(t: pa.Table, final: Path, batch: DurableBatch) -> None:
        calls.append(final.name)
        if len(calls) == 3:
            raise StoreError(f"cannot write {final.name}: disk full")
        write_part(t, final, batch)

    sink = Sink(tmp_path, "w1", write=failing_third)
    sink.add(decoded(range(5)))
    sink.add(decoded(range(3), FRAMES[3]))
    with pytest.raises(StoreError, match="disk full"):
        sink.close()
    assert len(calls) >= 3
    assert [p for p in parts(tmp_path)] == []  # neither complete files nor temporaries


def test_never_overwrites_a_part_file(tmp_path: Path) -> None:
    for _ in range(2):
        sink = Sink(tmp_path, "w1")
        sink.add(decoded(range(1)))
        if _ == 0:
            sink.close()
    with pytest.raises(StoreError, match="already exists"):
        sink.close()


def test_writer_ids_are_checked(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Sink(tmp_path, "bad/../id")


@pytest.mark.parametrize("group_rows", [1, 4, 32_768])  # a group per partition, a few, one for all
def test_the_small_file_writer_writes_what_pyarrow_writes(tmp_path: Path, group_rows: int) -> None:
    """Partitions encoded in groups (each compressed while the next is encoded) come out as
    the same files, holding the same rows, as pyarrow's writer makes of the same frames."""
    fnos = list(range(1, 41))
    random.Random(3).shuffle(fnos)
    ours = Sink(tmp_path / "ours", "w1", group_rows=group_rows, run_bytes=1)
    theirs = Sink(tmp_path / "theirs", "w1", write=write_part)
    for fno in fnos:
        for sink in (ours, theirs):
            sink.add(decoded(range(fno, fno + 1), FRAMES[2 + fno % 2]))
    ours.close()
    theirs.close()
    names = [p.relative_to(tmp_path / "ours") for p in parts(tmp_path / "ours")]
    assert names == [p.relative_to(tmp_path / "theirs") for p in parts(tmp_path / "theirs")]
    assert len([n for n in names if n.parts[0] in ("trades", "orderbook")]) == 4
    for name in names:
        got, want = pq.read_table(tmp_path / "ours" / name), pq.read_table(tmp_path / "theirs" / name)
        assert got.schema == want.schema and got.equals(want), name
    assert ours.files_written == theirs.files_written == len(names)
    assert ours.rows_written == theirs.rows_written
