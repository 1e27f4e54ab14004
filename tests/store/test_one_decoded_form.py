"""One decoded form: the same journal gives the same tables whatever the decoding batch size.

A journal of market frames (with trades whose cumulative volumes the continuity check
follows), frames strict JSON refuses (``NaN`` and ``Infinity`` in FIDs the recorder never
reads, numbers past the double range, deep nesting), duplicate keys, partial rejects, other
frames and session events is decoded twice through :class:`recorder.store.pipeline.Pipeline`:
in live-size batches by the reference decoder, and in rebuild-size batches by the Arrow
decoder. Every table read back from Parquet is the same, every column included.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.compute as pc
import pytest

from recorder.kiwoom.decode_arrow import decode_frames
from recorder.kiwoom.time import KST
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.journal import EVENT, JournalWriter, Record, read_records
from recorder.store.pipeline import Pipeline, PipelineStats
from recorder.store.sink import Sink, read_table

START = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * 1_000_000_000
TABLES = ("trades", "orderbook", "rejects", "gaps")
# Frame texts orjson refuses and Arrow's parser accepts, put where the recorder never reads.
STORY = "900001_NX"  # an item the synthetic market does not trade
REFUSED = (b"NaN", b"-Infinity", b"Infinity", b"-NaN", b"1" * 400, b"[" * 1100 + b"]" * 1100)


def _with(frame: bytes, where: str, junk: bytes) -> bytes:
    """``frame`` with ``junk`` as the value of an unread key in its values, entry or envelope."""
    if where == "values":
        return frame.replace(b'"values":{', b'"values":{"9999":' + junk + b",", 1)
    marker = b'"type":' if where == "entry" else b'"trnm":'
    return frame.replace(marker, b'"x":' + junk + b"," + marker, 1)


def _trade(item: str, cum: int, vol: int, hhmmss: str, extra: bytes = b"") -> bytes:
    values = {"20": hhmmss, "10": "+70000", "15": f"+{vol}", "13": str(cum), "14": "1"}
    text = orjson.dumps(
        {"data": [{"values": values, "type": "0B", "name": "주식체결", "item": item}], "trnm": "REAL"}
    )
    return text.replace(b'"14":"1"', b'"14":"1"' + extra, 1)


def build_journal(root: Path, seed: int) -> dict[str, Any]:
    """Write the journal; returns what the test knows must come out of it."""
    rng = random.Random(seed)
    market = SyntheticMarket(
        SyntheticMarket.universe(6, seed), seed=seed, venues=("KRX", "NXT"), trade_rate=3.0, book_rate=3.6
    )
    frames: list[bytes] = []
    now = START
    while len(frames) < 900:
        now += 100_000_000
        frames.extend(f for f, _ in real_frames(market.step(now), rng))
    odd: list[tuple[str | bytes, str]] = []
    for i in rng.sample(range(len(frames)), 30):  # copies of real frames, damaged
        where = rng.choice(["values", "entry", "frame"])
        odd.append((_with(frames[i], where, rng.choice(REFUSED)).decode(), "refused"))
    for i in rng.sample(range(len(frames)), 20):  # orjson takes these: rows (or rejects) as usual
        junk = rng.choice([b'"NaN"', b'"x"', b"1e5", b"1" * 300, b"[" * 1000 + b"]" * 1000, b"null"])
        odd.append((_with(frames[i], rng.choice(["values", "entry", "frame"]), junk).decode(), "taken"))
    for i in rng.sample(range(len(frames)), 10):  # duplicate keys: orjson keeps the last one
        dup = frames[i].replace(b'"trnm":"REAL"', b'"trnm":"PING","trnm":"REAL"')
        dup = dup.replace(b'"13":"', b'"13":"1","13":"', 1)
        odd.append((dup.decode(), "taken"))
    odd += [
        ('{"trnm":"PING"}', "control"),
        ('{"trnm":"LOGIN","return_code":0,"return_msg":""}', "control"),
        ("{broken", "refused"),
        ('{"trnm":"CNSRLST","data":[]}', "rejected"),
        (b"\x00\xff binary", "rejected"),
        (frames[5], "taken"),  # a binary frame that is UTF-8 JSON
        (_trade("005930", 500, 5, "090001", b',"14":"9".5').decode(), "refused"),  # broken JSON
        (
            orjson.dumps({"data": [{"type": "0w", "item": "005930", "values": {}}], "trnm": "REAL"}).decode(),
            "rejected",
        ),
    ]
    stream: list[tuple[str | bytes, str] | dict[str, Any]] = [(f.decode(), "market") for f in frames]
    for item in odd:
        stream.insert(rng.randrange(len(stream) + 1), item)
    # The measured case: continuity-relevant trades around one that carries NaN in an unread
    # FID. Strict JSON refuses it, so a continuity gap must follow in both decodings.
    nan_trade = _trade(STORY, 1020, 20, "093001", b',"9999":NaN')
    story = [
        _trade(STORY, 1000, 1000, "093000"),
        nan_trade,
        _trade(STORY, 1030, 10, "093002"),
        _trade(STORY, 1030, 10, "093003", b',"9998":Infinity'),  # an extra copy, refused too
        _trade(STORY, 1040, 10, "093004"),
    ]
    at = len(stream) // 2
    stream[at:at] = [(f.decode(), "market") for f in story]
    stream.insert(
        len(stream) // 3, {"kind": "disconnect", "start_ns": now - 10**9, "end_ns": now, "detail": "1006"}
    )
    stream.insert(len(stream) // 3 + 1, {"kind": "connected"})
    stream.insert(0, {"kind": "connected"})
    with JournalWriter(root) as journal:
        t = START
        for item in stream:
            t += 1_000_000
            if isinstance(item, dict):
                journal.append_event(t, item)
            else:
                journal.append_frame(t, item[0])
        journal.flush()
    return {"refused": sum(kind == "refused" for _, kind in odd) + 2, "nan_trade": nan_trade}


def decode(records: list[Record], out: Path, *, batch: int, arrow_min: int) -> PipelineStats:
    sink = Sink(out, "w")
    pipe = Pipeline(sink, batch=batch, arrow_min=arrow_min)
    pipe.feed_records(records)
    pipe.drain()
    sink.close()
    return pipe.stats


def canonical(value: Any) -> Any:
    """A value to compare: floats by their exact bits (so 0.0 and -0.0 differ)."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else value.hex()
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def tables(store: Path) -> dict[str, list[list[Any]]]:
    """Every table of a store as read back from Parquet: rows of all columns, in a fixed order."""
    out = {}
    for name in TABLES:
        t = read_table(store, name)
        t = t.select(sorted(t.column_names))
        rows = [[canonical(v) for v in row.values()] for row in t.to_pylist()]
        out[name] = sorted(rows, key=repr)
    return out


@dataclass
class Live:
    """The journal, what the test knows of it, and its tables as live capture stores them."""

    records: list[Record]
    facts: dict[str, Any]
    stats: PipelineStats
    store: Path
    tables: dict[str, list[list[Any]]]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Live:
    root = tmp_path_factory.mktemp("one-form")
    facts = build_journal(root / "journal", seed=20260720)
    records = list(read_records(root / "journal"))
    stats = decode(records, root / "live", batch=7, arrow_min=1 << 40)  # the reference decoder only
    return Live(records, facts, stats, root / "live", tables(root / "live"))


@pytest.mark.parametrize(("batch", "arrow_min"), [(10_000, 200), (300, 1)])
def test_live_and_rebuild_batches_store_the_same_tables(
    live: Live, tmp_path: Path, batch: int, arrow_min: int
) -> None:
    stats = decode(live.records, tmp_path, batch=batch, arrow_min=arrow_min)
    assert stats == live.stats
    rebuilt = tables(tmp_path)
    for name in TABLES:
        assert len(rebuilt[name]) == len(live.tables[name]), name
        assert rebuilt[name] == live.tables[name], name


def test_the_journal_holds_what_the_comparison_needs(live: Live) -> None:
    assert live.stats.trades > 500 and live.stats.orderbook > 500
    rejects = read_table(live.store, "rejects")
    refused = rejects.filter(pc.starts_with(rejects.column("reason"), "invalid JSON"))
    assert refused.num_rows == live.facts["refused"]
    assert live.facts["nan_trade"].decode() in refused.column("raw").to_pylist()
    # The trade carrying NaN is missing: continuity breaks once, whatever the batch size.
    gaps = read_table(live.store, "gaps").to_pylist()
    assert [g["detail"] for g in gaps if g["symbols"] == [STORY]] == [
        "cum_volume 1030 is not the previous 1000 + this trade's 10: 20 shares of trades missing"
    ]
    assert {g["kind"] for g in gaps} == {"disconnect", "continuity"}


def test_rebuild_size_batches_go_through_arrow(live: Live) -> None:
    """The Arrow decoder decodes nearly every market frame of the journal itself."""
    real = [r for r in live.records if r.kind != EVENT and b'"trnm":"REAL"' in r.payload]
    got = decode_frames([r.payload for r in real], [r.recv_ts_ns for r in real], [r.fno for r in real])
    assert sum(len(t) for t in got.tables.values()) > len(real)  # 1 to 4 entries a frame
    assert live.facts["refused"] - 2 <= len(got.fallback) < 0.1 * len(real)
