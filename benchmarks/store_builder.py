"""A store of synthetic recorded days for the benchmarks, written the way a capture writes it."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from pathlib import Path

from recorder.kiwoom.time import KST, NS, trading_day
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink


def build_store(
    root: Path, day: str, rows: int, symbols: int, *, venues: Sequence[str] = ("KRX", "NXT"), seed: int = 7
) -> int:
    """Synthetic frames 100 ms apart from 09:00 KST, 1-4 entries each, until ``rows`` entries.

    Goes through the capture's pipeline and flushes every ~50k rows per table, like a
    capture's flush cadence, so partitions hold several part files sorted by ts.
    Returns the number of entries written.
    """
    codes = SyntheticMarket.universe(symbols, seed)
    market = SyntheticMarket(codes, seed=seed, venues=tuple(venues), trade_rate=3.0)
    now = int(dt.datetime.fromisoformat(f"{day}T09:00:00").replace(tzinfo=KST).timestamp()) * NS
    sink = Sink(root, "bench", max_rows=50_000)
    pipe = Pipeline(sink, trading_day=trading_day(day))
    rng = random.Random(seed)
    n = fno = 0
    while n < rows:
        now += NS // 10
        for k, (frame, data) in enumerate(real_frames(market.step(now), rng)):
            pipe.feed_frame(frame, now + 3_000_000 + k * 1000, fno)
            fno += 1
            n += len(data)
    pipe.drain()
    sink.close()
    return n
