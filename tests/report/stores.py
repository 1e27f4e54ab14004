"""A small recorded day with something of everything the report shows: trades and order
books on two venues, a disconnect, continuity breaks and rejects."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from recorder.kiwoom.time import KST, NS, trading_day
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink

STEP_NS = NS  # one market step a second


def build_day(root: Path, day: str, *, symbols: int = 6, minutes: int = 8, seed: int = 3) -> None:
    """``minutes`` of synthetic market from 09:00 KST of ``day``, through the capture's pipeline.

    Between minutes 3 and 4 the connection drops for 40 s: the market goes on, nothing is
    fed, and a ``disconnect`` event is journaled when it comes back (so the cumulative
    volumes jump: continuity breaks). Three frames are rejected: two that are not JSON,
    one binary frame that is not UTF-8.
    """
    market = SyntheticMarket(
        SyntheticMarket.universe(symbols, seed), seed=seed, venues=("KRX", "NXT"), trade_rate=2.0
    )
    t0 = int(dt.datetime.fromisoformat(f"{day}T09:00:00").replace(tzinfo=KST).timestamp()) * NS
    sink = Sink(root, "w1", max_rows=1_000_000)
    pipe = Pipeline(sink, trading_day=trading_day(day), batch=50)
    rng = random.Random(seed)
    hole = range(200, 240)
    fno = 0
    for i in range(minutes * 60):
        now = t0 + i * STEP_NS
        frames = list(real_frames(market.step(now), rng))
        if i in hole:
            continue
        if i == hole.stop:
            pipe.feed_event(
                {
                    "kind": "disconnect",
                    "start_ns": t0 + hole.start * STEP_NS,
                    "end_ns": now,
                    "detail": "connection closed",
                },
                now,
                fno,
            )
            fno += 1
        for k, (frame, _) in enumerate(frames):
            pipe.feed_frame(frame, now + 5_000_000 + k * 1000, fno)
            fno += 1
        if i in (30, 90):
            pipe.feed_frame("not json {", now + 7_000_000, fno)
            fno += 1
        if i == 120:
            pipe.feed_frame(b"\xff\xfe\x00", now + 7_000_000, fno)
            fno += 1
    pipe.drain()
    sink.close()
