"""Small recorded stores for the replay and CLI tests, written through the capture's pipeline."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

from recorder.kiwoom.time import KST, NS, trading_day
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink


def build_store(
    root: Path,
    day: str,
    *,
    steps: int = 30,
    symbols: int = 3,
    seed: int = 1,
    writer: str = "w1",
    hole: tuple[int, int] | None = None,
    max_rows: int = 2_000_000,
) -> None:
    """Synthetic frames through the capture's pipeline, 100 ms apart from 09:00 KST of ``day``.

    ``hole=(step, n)``: nothing is recorded for ``n`` steps after ``step`` (a disconnect).
    Frames of a step are received 2 ms after it, 1 µs apart.
    """
    market = SyntheticMarket(
        SyntheticMarket.universe(symbols, 0), seed=seed, venues=("KRX", "NXT"), trade_rate=8.0
    )
    t0 = int(dt.datetime.fromisoformat(f"{day}T09:00:00").replace(tzinfo=KST).timestamp()) * NS
    sink = Sink(root, writer, max_rows=max_rows)
    pipe = Pipeline(sink, trading_day=trading_day(day), batch=50)
    rng = random.Random(seed)
    fno = 0
    for i in range(steps):
        if hole and hole[0] < i <= hole[0] + hole[1]:
            continue
        now = t0 + i * NS // 10
        for k, (frame, _) in enumerate(real_frames(market.step(now), rng)):
            pipe.feed_frame(frame, now + 2_000_000 + k * 1000, fno)
            fno += 1
    pipe.drain()
    sink.close()
