"""``recorder ingest``'s block reader: whatever the lines and wherever the blocks split them,
the store holds exactly what the reference decoder makes of the lines, numbered by line."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import queries
from recorder.cli.main import main
from recorder.kiwoom.decode_arrow import parse_block
from recorder.kiwoom.time import KST, trading_day
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.ingest import _ndjson_blocks, _numbered, ingest_ndjson
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink
from tests.helpers import stored_rows

DATE = "2026-07-20"
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def market_frames(n: int, seed: int = 3) -> list[bytes]:
    """``n`` REAL frames of the synthetic market (0B and 0D, KRX and NXT, 1-3 entries each)."""
    market = SyntheticMarket(SyntheticMarket.universe(4, seed), seed=seed, venues=("KRX", "NXT"))
    rng = random.Random(seed)
    now = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * 1_000_000_000
    frames: list[bytes] = []
    while len(frames) < n:
        now += 200_000_000
        frames.extend(frame for frame, _ in real_frames(market.step(now), rng, 3))
    return frames[:n]


FRAMES = market_frames(60)
BAD_VALUE = orjson.loads(FRAMES[0])
BAD_VALUE["data"][0]["values"]["20" if BAD_VALUE["data"][0]["type"] == "0B" else "21"] = "12:00"

# Lines that are not plainly one frame: a block holding one is decoded line by line.
NOT_PLAIN = [
    b"",  # blank: skipped, but counted as a line
    b"   \t",
    FRAMES[1] + b"\r",  # CRLF
    b"  " + FRAMES[2],  # indented
    b"not json",
    b"{",
    FRAMES[3].replace(b'"REAL"', b'"RE\xffAL"'),  # invalid UTF-8
    b'{"trnm":"REAL","data":[]}{"trnm":"REAL","data":[]}',  # two objects on one line
]
# Plain lines that the reference rejects (the Arrow decoder hands them over).
REJECTED = [
    b'{"trnm":"PING"}',  # a control frame has no business in a file of market data
    b'{"trnm":"REAL","data":[{"type":"0w","item":"005930","values":{}}]}',
    orjson.dumps(BAD_VALUE),
]
ODD_LINES = NOT_PLAIN + REJECTED


def reference_store(lines: list[bytes], root: Path) -> None:
    """The store the reference decoder alone makes of ``lines`` (frame number = line number)."""
    sink = Sink(root, "ref")
    pipe = Pipeline(sink, trading_day=trading_day(DATE), arrow_min=1 << 60)
    numbers, kept = _numbered(lines, 0)
    pipe.feed_real_frames(kept, [0] * len(kept), numbers)
    pipe.drain()
    sink.close()


def contents(root: Path) -> dict[str, list[tuple]]:
    """Every table, in seq order, without receive times (ingest stamps the time it ran)."""
    out = {table: stored_rows(root, table) for table in ("trades", "orderbook")}
    for table, cols in (("rejects", "seq, reason, raw"), ("gaps", "seq, kind, detail")):
        found = (
            queries.sql(root, f"SELECT {cols} FROM {table} ORDER BY ALL") if (root / table).is_dir() else None
        )
        out[table] = [tuple(r.values()) for r in found.to_pylist()] if found is not None else []
    return out


@SETTINGS
@given(
    picks=st.lists(st.integers(0, len(FRAMES) + len(ODD_LINES) - 1), min_size=1, max_size=40),
    block_bytes=st.integers(16, 6000),
    final_newline=st.booleans(),
)
def test_ingest_matches_the_reference_decoder_line_for_line(
    picks: list[int], block_bytes: int, final_newline: bool
) -> None:
    lines = [(FRAMES + ODD_LINES)[i] for i in picks]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "frames.ndjson"
        path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
        got = ingest_ndjson(path, work / "ingest", date=DATE, block_bytes=block_bytes)
        reference_store(path.read_bytes().split(b"\n")[: len(lines)], work / "ref")
        assert contents(work / "ingest") == contents(work / "ref")
        assert got.lines == sum(1 for line in lines if line.strip())


def test_a_large_clean_file_is_parsed_in_blocks_and_numbered_by_line(tmp_path: Path) -> None:
    frames = market_frames(3000)
    frames[1234] = b"garbage"
    path = tmp_path / "frames.ndjson"
    path.write_bytes(b"\n".join(frames) + b"\n")
    got = ingest_ndjson(path, tmp_path / "ingest", date=DATE, block_bytes=64 << 10)
    reference_store(frames, tmp_path / "ref")
    assert contents(tmp_path / "ingest") == contents(tmp_path / "ref")
    assert got.lines == 3000 and got.stats.rejects == 1
    reject = queries.sql(tmp_path / "ingest", "SELECT seq >> 16 AS line, raw FROM rejects").to_pylist()
    assert reject == [{"line": 1235, "raw": "garbage"}]


def test_parse_block_takes_only_plain_blocks() -> None:
    plain = b"\n".join(FRAMES[:10]) + b"\n"
    table, n = parse_block(plain)
    assert n == 10 and table is not None and table.num_rows == 10
    for odd in ODD_LINES:
        block = b"\n".join([FRAMES[0], odd, FRAMES[1]]) + b"\n"
        table, n = parse_block(block)
        assert n == 3 and (table is None) == (odd in NOT_PLAIN), odd
    assert parse_block(plain[:-1]) == (None, 9)  # the last line lacks its newline


@given(
    data=st.lists(st.sampled_from([b"\n", b"x", b"{}", b"\xff" * 5]), max_size=200).map(b"".join),
    block_bytes=st.integers(1, 64),
    first_bytes=st.none() | st.integers(1, 64),
)
@settings(max_examples=200, deadline=None)
def test_blocks_cover_the_file_in_whole_lines(data: bytes, block_bytes: int, first_bytes: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f"
        path.write_bytes(data)
        blocks = [bytes(b) for b in _ndjson_blocks(path, block_bytes, first_bytes=first_bytes)]
    expected = data if not data or data.endswith(b"\n") else data + b"\n"
    assert b"".join(blocks) == expected
    for i, b in enumerate(blocks):
        limit = first_bytes if i == 0 and first_bytes else block_bytes
        assert b.endswith(b"\n")
        assert len(b) <= limit or b.count(b"\n") == 1  # longer only to hold one long line


@pytest.mark.parametrize("content", [b"", b"\n\n", FRAMES[0]])
def test_files_without_blocks_or_newlines(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "f.ndjson"
    path.write_bytes(content)
    got = ingest_ndjson(path, tmp_path / "store", date=DATE)
    assert got.lines == (1 if content.strip() else 0)
    assert got.stats.rows == (len(orjson.loads(FRAMES[0])["data"]) if content.strip() else 0)


@pytest.mark.parametrize("date_arg", ["2021-03-04", "20210304"])
def test_ingest_date_files_rows_and_rejects_under_that_date(tmp_path: Path, date_arg: str) -> None:
    """The frames' day is the one given, not the day of the ingest: their rejects too."""
    path = tmp_path / "frames.ndjson"
    path.write_bytes(b"\n".join([*FRAMES[:6], b"not json", orjson.dumps(BAD_VALUE)]) + b"\n")
    store = tmp_path / "store"
    r = CliRunner().invoke(main, ["ingest", str(path), "--data-dir", str(store), "--date", date_arg])
    assert r.exit_code == 0, r.output
    got = queries.sql(
        store,
        "SELECT 'trades' AS t, date, count(*) AS n FROM trades GROUP BY ALL UNION ALL "
        "SELECT 'orderbook', date, count(*) FROM orderbook GROUP BY ALL UNION ALL "
        "SELECT 'rejects', date, count(*) FROM rejects GROUP BY ALL ORDER BY ALL",
    ).to_pylist()
    day = dt.date(2021, 3, 4)
    assert {(g["t"], g["date"]) for g in got} == {("orderbook", day), ("rejects", day), ("trades", day)}
    assert [g["n"] for g in got if g["t"] == "rejects"] == [2]
    assert sorted(p.name for p in (store / "rejects").iterdir()) == ["date=2021-03-04"]


def test_ingest_refuses_a_date_that_is_not_one(tmp_path: Path) -> None:
    path = tmp_path / "frames.ndjson"
    path.write_bytes(FRAMES[0] + b"\n")
    r = CliRunner().invoke(
        main, ["ingest", str(path), "--data-dir", str(tmp_path / "s"), "--date", "2021-13-01"]
    )
    assert r.exit_code == 2 and "'2021-13-01' is not a date" in r.output
    assert not (tmp_path / "s").exists()


def test_batch_commands_run_arrow_on_jemalloc_and_without_pandas() -> None:
    """ingest and rebuild run on jemalloc (or the system allocator): under mimalloc, Arrow's
    default, the kernel spent 1-1.5 s more zeroing fresh pages in an ingest of 150k entries.
    pyarrow does not import pandas for them, yet still can when asked for a DataFrame."""
    code = (
        "import sys; import pyarrow as pa; from recorder.store.pipeline import setup_batch_process as s; "
        "before = pa.default_memory_pool().backend_name; said = s(); "
        "pa.table({'a': [1, 2]}).column('a').to_pylist(); print(before, said, "
        "pa.default_memory_pool().backend_name, 'pandas' in sys.modules, "
        "type(pa.table({'a': [1]}).to_pandas()).__name__)"
    )
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    before, said, after, pandas_loaded, frame = out.stdout.split()
    assert said == after != before and after in {"jemalloc", "system"}
    assert pandas_loaded == "False"  # building tables did not import it
    assert frame == "DataFrame"
