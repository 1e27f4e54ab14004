"""Pipeline: which frames become rows, rejects or nothing; events become gaps; checkpoints."""

from __future__ import annotations

from pathlib import Path

import orjson

import queries
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink

DATA = Path(__file__).parents[1] / "data"
FRAMES = [orjson.loads(line)["frame"] for line in (DATA / "kiwoom-frames.jsonl").read_text().splitlines()]
RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST


def test_frames_route_to_rows_rejects_or_nothing(tmp_path: Path) -> None:
    sink = Sink(tmp_path, "w")
    pipe = Pipeline(sink, batch=2)
    feed = [
        '{"trnm":"LOGIN","return_code":0,"return_msg":"","sor_yn":"Y"}',
        '{"trnm":"PING"}',
        '{"trnm":"REG","return_code":0,"return_msg":""}',
        '{"trnm":"SYSTEM","code":"R10001","message":"kick"}',
        orjson.dumps(FRAMES[0]).decode(),  # one trade
        "{broken",
        b"\x00\xff binary",
        '{"trnm":"CNSRLST","data":[]}',
        orjson.dumps(FRAMES[2]),  # two trades and a 0w entry
    ]
    for fno, raw in enumerate(feed):
        pipe.feed_frame(raw, RECV + fno, fno)
    pipe.feed_event(
        {"kind": "disconnect", "start_ns": RECV, "end_ns": RECV + 10**9, "detail": "1006"}, RECV, 9
    )
    pipe.feed_event({"kind": "connected", "detail": "informational"}, RECV, 10)
    assert pipe.checkpoint_fno() == 3  # frames 0-3 made no rows; frame 4 is still buffered
    sink.close()
    assert pipe.checkpoint_fno() == 10
    assert (pipe.stats.control_frames, pipe.stats.real_frames, pipe.stats.gaps) == (4, 2, 1)
    rej = queries.sql(tmp_path, "SELECT seq >> 16 AS fno, reason FROM rejects ORDER BY seq").to_pylist()
    assert [r["fno"] for r in rej] == [5, 6, 7, 8]
    assert "invalid JSON" in rej[0]["reason"] and "not UTF-8" in rej[1]["reason"]
    assert "CNSRLST" in rej[2]["reason"] and "0w" in rej[3]["reason"]
    n = queries.sql(tmp_path, "SELECT count(*) AS n FROM trades").to_pylist()[0]["n"]
    assert n == 3
    gaps = queries.sql(tmp_path, "SELECT kind, detail FROM gaps").to_pylist()
    assert gaps == [{"kind": "disconnect", "detail": "1006"}]


def _trade_frame(symbol: str, cum: int, vol: int, hhmmss: str = "093000") -> bytes:
    values = {"20": hhmmss, "10": "+70000", "15": f"+{vol}", "13": str(cum)}
    return orjson.dumps(
        {"data": [{"values": values, "type": "0B", "name": "주식체결", "item": symbol}], "trnm": "REAL"}
    )


def test_cumulative_volume_breaks_become_continuity_gaps(tmp_path: Path) -> None:
    sink = Sink(tmp_path, "w")
    pipe = Pipeline(sink, batch=3)
    feed = [
        ("005930", 100, 100),
        ("005930", 110, 10),
        ("005930_NX", 7, 7),
        ("005930", 150, 15),  # 25 missing
        ("005930_NX", 9, 2),
        ("005930", 165, 15),
    ]
    for fno, (item, cum, vol) in enumerate(feed):
        pipe.feed_frame(_trade_frame(item, cum, vol), RECV + fno, fno)
    # A new connection: trades made while disconnected are the disconnect gap's business.
    pipe.feed_event({"kind": "connected", "detail": "logged in"}, RECV, 10)
    pipe.feed_frame(_trade_frame("005930", 400, 5), RECV + 11, 11)
    pipe.feed_frame(_trade_frame("005930", 404, 5), RECV + 12, 12)  # went back by 1
    pipe.drain()
    sink.close()
    gaps = queries.sql(
        tmp_path, "SELECT kind, detail, symbols, seq >> 16 AS fno FROM gaps ORDER BY seq"
    ).to_pylist()
    assert [(g["kind"], g["symbols"], g["fno"]) for g in gaps] == [
        ("continuity", ["005930"], 3),
        ("continuity", ["005930"], 12),
    ]
    assert "25 shares of trades missing" in gaps[0]["detail"]
    assert "went back by 1" in gaps[1]["detail"]


def _market_frames(n_steps: int, seed: int) -> list[bytes]:
    from recorder.sim.market import SyntheticMarket

    market = SyntheticMarket(
        SyntheticMarket.universe(6, seed), seed=seed, venues=("KRX", "NXT"), trade_rate=5.0
    )
    frames, now = [], RECV
    for step in range(n_steps):
        now += 200_000_000
        entries = market.step(now)
        if step == n_steps // 2:  # lose one trade: a continuity break both paths must see
            entries = [e for e in entries if e["type"] != "0B"][:1] + [
                e for e in entries if e["type"] == "0B"
            ][1:]
        for i in range(0, len(entries), 3):
            frames.append(orjson.dumps({"data": entries[i : i + 3], "trnm": "REAL"}))
    frames[5] = b"{not json"
    frames[9] = frames[9].replace(b'"0B"', b'"0w"', 1)
    return frames


def test_arrow_and_reference_paths_build_identical_stores(tmp_path: Path) -> None:
    frames = _market_frames(200, seed=3)
    assert len(frames) > 1000
    for name, arrow_min in (("arrow", 1), ("reference", 10**9)):
        sink = Sink(tmp_path / name, "w")
        pipe = Pipeline(sink, batch=700, arrow_min=arrow_min)
        for fno, raw in enumerate(frames):
            pipe.feed_frame(raw, RECV + fno, fno)
        pipe.drain()
        sink.close()
    for table in ("trades", "orderbook", "rejects", "gaps"):
        q = f"SELECT * EXCLUDE (date) FROM {table} ORDER BY seq"
        a, r = queries.sql(tmp_path / "arrow", q), queries.sql(tmp_path / "reference", q)
        assert a.equals(r), table
        assert a.num_rows > 0, table
