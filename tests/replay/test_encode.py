"""The bulk encoder against the reference, byte for byte: NDJSON lines and the served entries.

The reference is today's per-row path: :func:`recorder.replay.rows.iter_rows` merges the
rows, :func:`recorder.kiwoom.frames.encode_entry` / ``encode_frame`` write them and
:func:`recorder.replay.feed.iter_frames` groups them into frames. Stores are generated
(seeded) with ties across files and writers, nulls, every venue and edge values that the
SQL must hand to the reference encoder (rates Python writes with an exponent, NaN, text
that JSON escapes), and read on both paths of the scan: one pass and streamed.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import random
import struct
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recorder.errors import StoreError
from recorder.kiwoom.decode import MAX_ENTRIES, SEQ_SHIFT
from recorder.kiwoom.fields import MARKET_TABLES
from recorder.kiwoom.frames import encode_entry
from recorder.kiwoom.time import KST, NS
from recorder.replay import Pacer, iter_rows, select
from recorder.replay.encode import _PLAIN_FLOAT, frame_bounds, text_bytes
from recorder.replay.feed import (
    RecordedFeed,
    inventory,
    iter_frame_lines,
    iter_frames,
    scan_inventory,
    write_ndjson,
)
from recorder.replay.read import partitions
from recorder.replay.scan import Scan
from recorder.sim.market import real_frames
from recorder.store.layout import part_name
from tests.replay.stores import build_store, random_rows, write_rows

DAY = "2026-07-20"
T0_US = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * 1_000_000
CODES = ("005930", "000660", "373220", "035420", "A00010", "000270", "068270", "105560")


def reference_ndjson(root: Path, day: str = DAY, **kw: Any) -> bytes:
    return b"".join(frame.encode() + b"\n" for _, frame, _ in iter_frames(iter_rows(root, day, **kw)))


def scan_ndjson(root: Path, day: str = DAY, symbols: Any = None, **scan: Any) -> bytes:
    with Scan(select(root, day, symbols=symbols), **scan) as s:
        return b"".join(bytes(text_bytes(lines)) for lines, _, _ in iter_frame_lines(s, piece=5))


def served(root: Path, day: str = DAY, symbols: Any = None) -> list[bytes]:
    """The frames the venue writes from what the served replay hands it (1-4 entries each)."""
    with RecordedFeed(root, day, symbols=symbols, prefetch=False, max_step=1 << 30) as feed:
        feed.on_subscribed(feed.inventory.pairs, 0)
        entries = []
        while batch := feed.step(1):
            entries += batch
    return [frame for frame, _ in real_frames(entries, random.Random(4))]


def reference_entries(root: Path, day: str = DAY, symbols: Any = None) -> list[bytes]:
    entries = [encode_entry(r.table, r.row) for r in iter_rows(root, day, symbols=symbols)]
    return [frame for frame, _ in real_frames(entries, random.Random(4))]


def build_random_store(root: Path, seed: int, n_symbols: int, files: int, rows: int) -> None:
    """Part files of random rows: per table and symbol up to ``files`` files of two writers,
    whose exchange times, receive times and journal frames overlap."""
    rng = random.Random(seed)
    for table in MARKET_TABLES:
        for code in CODES[:n_symbols]:
            for k in range(rng.randint(1, files)):
                writer = ("w1", "w2")[k % 2]
                fno = rng.randint(0, 3)
                data = random_rows(
                    rng, table, rng.randint(1, rows), T0_US + rng.randint(0, 3) * NS // 1000, fno
                )
                write_rows(root, table, DAY, code, data, part_name(writer, fno + k, fno + k + 2))


# --------------------------------------------------------------------------- byte for byte


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_symbols=st.integers(1, len(CODES)),
    files=st.integers(1, 4),
    rows=st.integers(1, 12),
    items=st.sampled_from([None, ["005930_NX", "000660"], ["005930", "373220_AL", "000660_NX"]]),
)
def test_ndjson_and_served_entries_match_the_reference_on_any_store(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n_symbols: int, files: int, rows: int, items: Any
) -> None:
    root = tmp_path_factory.mktemp("random")
    build_random_store(root, seed, n_symbols, files, rows)
    want = reference_ndjson(root, symbols=items)
    out = io.BytesIO()
    write_ndjson(out, select(root, DAY, symbols=items))
    assert out.getvalue() == want
    # The streamed path: catalog, groups of a few rows, files longer than 3 rows through runs.
    assert scan_ndjson(root, symbols=items, whole_rows=0, batch_rows=3, group_rows=7) == want
    if want:
        assert served(root, symbols=items) == reference_entries(root, symbols=items)


def test_a_captured_store_replays_byte_for_byte(tmp_path: Path) -> None:
    """A store written through the capture's pipeline (two writers, several files each)."""
    build_store(tmp_path, DAY, writer="w1", seed=1, steps=40, symbols=5, max_rows=150)
    build_store(tmp_path, DAY, writer="w2", seed=2, steps=25, symbols=5, max_rows=100)
    want = reference_ndjson(tmp_path)
    assert want.count(b"\n") > 100
    for scan in ({}, {"whole_rows": 0}, {"whole_rows": 0, "batch_rows": 40, "group_rows": 100}):
        assert scan_ndjson(tmp_path, **scan) == want, scan
    assert served(tmp_path) == reference_entries(tmp_path)


def test_rates_the_sql_writes_are_python_reprs() -> None:
    """Every double the SQL writes itself (what it does not, goes to the reference)."""
    rng = random.Random(5)
    values = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(40_000)]
    values += [round(rng.uniform(-1e6, 1e6), rng.randint(0, 9)) for _ in range(40_000)]
    values += [0.0, -0.0, 1e-4, 1e16, 9999999999999998.0, 0.30000000000000004, 1e15 + 0.3, math.nan]
    con = duckdb.connect()
    x = pa.table({"x": pa.array(values, pa.float64())})  # noqa: F841  (scanned by name)
    got = con.sql(f"SELECT CAST(x AS VARCHAR), {_PLAIN_FLOAT.format(c='x')} FROM x").fetchall()
    written = 0
    for v, (text, plain) in zip(values, got, strict=True):
        assert plain == ("e" not in repr(v) and math.isfinite(v)), v
        if plain:
            assert text == repr(v), v
            written += 1
    assert written > 40_000


def test_paced_ndjson_waits_before_each_frame_as_the_reference(tmp_path: Path) -> None:
    """Frames that straddle the pieces the text is built in still go out whole, when due."""
    build_store(tmp_path, DAY, steps=40, symbols=3)

    class Clock:
        now = 0.0

        def sleep(self, d: float) -> None:
            sleeps.append(d)
            self.now += d

    sleeps: list[float] = []
    c = Clock()
    out = io.BytesIO()
    write_ndjson(out, select(tmp_path, DAY), speed=2, clock=lambda: c.now, sleep=c.sleep, piece=3)
    got = list(sleeps)
    sleeps.clear()
    c.now = 0.0
    pacer, want = Pacer(2, lambda: c.now), []
    for recv, frame, _ in iter_frames(iter_rows(tmp_path, DAY)):
        delay = pacer.wait(recv)
        if delay:
            c.sleep(delay)
        want.append(frame.encode() + b"\n")
    assert out.getvalue() == b"".join(want)
    assert got == sleeps and len(got) > 10


# --------------------------------------------------------------------------- frames


def _reference_bounds(recv: list[int], seq: list[int]) -> list[int]:
    """Frame starts as :func:`iter_frames` cuts them, and the end."""
    out, size, key = [], 0, None
    for i, k in enumerate(zip(recv, [s >> SEQ_SHIFT for s in seq], strict=True)):
        if i == 0 or k != key or size >= MAX_ENTRIES - 1:
            out.append(i)
            size = 0
        key = k
        size += 1
    return [*out, len(recv)]


def test_frames_are_cut_as_the_reference_cuts_them() -> None:
    rng = np.random.default_rng(3)
    recv = np.repeat(rng.integers(0, 5, 400), rng.integers(1, 6, 400))
    seq = (rng.integers(0, 3, len(recv)) << SEQ_SHIFT) + rng.integers(0, 10, len(recv))
    seq = np.concatenate([seq, np.full(MAX_ENTRIES * 2 + 7, 9 << SEQ_SHIFT)])  # one huge frame
    recv = np.concatenate([recv, np.full(MAX_ENTRIES * 2 + 7, 99)])
    assert frame_bounds(recv, seq).tolist() == _reference_bounds(recv.tolist(), seq.tolist())
    assert frame_bounds(np.array([], np.int64), np.array([], np.int64)).tolist() == [0]


# --------------------------------------------------------------------------- paths and contracts


def test_large_selections_stream_in_windows(tmp_path: Path) -> None:
    build_store(tmp_path, DAY, steps=200, symbols=3, max_rows=150)  # 20 s, 27 files
    sel = select(tmp_path, DAY)
    with Scan(sel) as small:
        assert not small.streamed
        total = sum(len(w) for w in small.windows())
    with Scan(sel, whole_rows=100, group_rows=50) as big:
        assert big.streamed
        windows = [len(w) for w in big.windows()]
    # Read a few files at a time: no window holds more than a fraction of the day.
    assert sum(windows) == total > 1000 and len(windows) > 5 and max(windows) < total // 4


@pytest.mark.parametrize("scan", [{}, {"whole_rows": 0, "batch_rows": 5}, {"whole_rows": 0}])
def test_a_part_file_out_of_order_is_refused(tmp_path: Path, scan: dict[str, Any]) -> None:
    build_store(tmp_path, DAY, steps=30)
    part = next((tmp_path / "trades").rglob("*.parquet"))
    t = pq.read_table(part)
    pq.write_table(t.take(list(reversed(range(len(t))))), part)  # breaks the sort contract
    with pytest.raises(StoreError, match="not sorted by ts"):
        scan_ndjson(tmp_path, **scan)


def test_files_of_an_older_schema_replay_with_their_missing_columns_null(tmp_path: Path) -> None:
    build_store(tmp_path, DAY, steps=20, symbols=2, max_rows=60)
    part = sorted((tmp_path / "orderbook").rglob("*.parquet"))[-1]
    pq.write_table(pq.read_table(part).drop_columns(["ask_ratio", "nxt_mid_px"]), part)
    want = reference_ndjson(tmp_path)
    assert scan_ndjson(tmp_path) == want
    assert scan_ndjson(tmp_path, whole_rows=0, batch_rows=5) == want


def test_the_served_inventory_is_the_footer_scans(tmp_path: Path) -> None:
    """What the served replay announces (items, previous closes) from the scan's catalog, on
    both paths, is what reading the footers and venue columns gives."""
    build_store(tmp_path, DAY, steps=30, symbols=3)
    build_store(tmp_path, DAY, writer="w2", seed=4, steps=10, symbols=2)
    for items in (None, ["005930_NX", "000660"]):
        sel = select(tmp_path, DAY, symbols=items)
        want = inventory(sel)
        assert want.pairs and want.prev_close
        for whole in (None, 0):
            with Scan(sel, entries=False, inventory=True, whole_rows=whole) as scan:
                assert scan_inventory(scan) == want


def test_a_selection_larger_than_its_sample_said_streams_after_all(tmp_path: Path) -> None:
    """The one pass stops reading past twice its budget and the selection streams instead:
    the files the sample missed hold many compressible rows."""
    from recorder.replay.scan import _estimate_rows, _File

    rng = random.Random(9)
    for i in range(64):
        n, nulls = (400, 1.0) if i % 2 else (1, 0.0)  # the sample reads every second footer
        rows = random_rows(rng, "trades", n, T0_US + i * 1_000_000, i, nulls=nulls)
        rows["ts"] = sorted(rows["ts"])
        write_rows(tmp_path, "trades", DAY, CODES[0], rows, part_name("w1", 10 * i, 10 * i + 9))
    sel = select(tmp_path, DAY)
    files = [_File(f, p) for p in partitions(sel) for f in p.files]
    estimate, actual = _estimate_rows(files), 32 * 400 + 32
    budget = int(estimate) + 1
    assert actual > 2 * budget
    with Scan(sel, whole_rows=budget) as scan:
        assert scan.streamed
    assert scan_ndjson(tmp_path, whole_rows=budget) == reference_ndjson(tmp_path)
