"""Pipeline: which frames become rows, rejects or nothing; events become gaps; checkpoints."""

from __future__ import annotations

from pathlib import Path

import orjson

import queries
from recorder.pipeline import Pipeline
from recorder.sink import Sink

DATA = Path(__file__).parent / "data"
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
