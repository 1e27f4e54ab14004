"""Recorded stores for the replay and CLI tests: through the capture's pipeline, or any rows written
straight into part files (edge values the pipeline would not produce)."""

from __future__ import annotations

import datetime as dt
import math
import random
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from recorder.kiwoom.fields import TABLE_TYPES, Kind
from recorder.kiwoom.schema import file_schema
from recorder.kiwoom.time import KST, NS, trading_day
from recorder.sim.market import SyntheticMarket, real_frames
from recorder.store.layout import partition_dir
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


# --------------------------------------------------------------------------- stores of any rows

_EXOTIC_FLOATS = (0.0, -0.0, 1e-5, 1e-4, 9.999e-5, 1e16, 9999999999999998.0, 1.5e300, 5e-324, -2.5e-7)
_NONFINITE = (math.nan, math.inf, -math.inf)
_TEXTS = ("2", "090000", " 1", "KRX", "NXT", "", " 151230")
_ODD_CHARS = 'a"\\\x00\x1f\x7f é한 \n/'
_I64 = (1 << 63) - 1


def random_value(rng: random.Random, kind: Kind) -> Any:
    """A stored value of ``kind``: mostly typical, sometimes at the edges of what encodes."""
    r = rng.random()
    if kind is Kind.FLOAT:
        if r < 0.1:
            return rng.choice(_EXOTIC_FLOATS + _NONFINITE)
        if r < 0.25:
            return struct.unpack("<d", rng.randbytes(8))[0]  # any double, NaN payloads included
        return round(rng.uniform(-1000, 1000), rng.randint(0, 6))
    if kind is Kind.TEXT:
        if r < 0.15:
            return "".join(rng.choice(_ODD_CHARS) for _ in range(rng.randint(0, 5)))
        return rng.choice(_TEXTS)
    if r < 0.04:
        return rng.choice((_I64, -_I64 - 1, 0))
    return rng.randint(-(10**9), 10**9) if kind is Kind.INT else rng.randint(0, 10**7)


def random_rows(
    rng: random.Random, table: str, n: int, t0_us: int, writer_fno: int, nulls: float = 0.2
) -> dict[str, list[Any]]:
    """``n`` rows of ``table`` (file columns, unsorted): a few distinct exchange seconds, receive
    times and journal frames, so that rows tie across files; every venue; nullable fields null
    with probability ``nulls``."""
    schema = file_schema(table)
    rt = TABLE_TYPES[table]
    kinds = {f.column: f.kind for f in rt.fields}
    out: dict[str, list[Any]] = {name: [] for name in schema.names}
    for _ in range(n):
        ts = t0_us + rng.randint(0, 4) * 1_000_000 + rng.choice((0, 0, 0, 250_000))
        out["ts"].append(ts)
        out["recv_ts"].append(ts + rng.choice((2_000, 2_000, 3_000)))
        out["seq"].append(((writer_fno + rng.randint(0, 2)) << 16) + rng.randint(0, 3))
        out["venue"].append(rng.choice(("KRX", "KRX", "NXT", "SOR")))
        for f in schema:
            if f.name in ("ts", "recv_ts", "seq", "venue"):
                continue
            if f.name == "side":
                out["side"].append(rng.choice(("buy", "sell", None)))
            elif f.name == "source":  # not encoded: Kiwoom does not send it
                out["source"].append(rng.choice(("ws", "rest")))
            elif f.nullable and rng.random() < nulls:
                out[f.name].append(None)
            else:
                kind = kinds[f.name]
                out[f.name].append(random_value(rng, Kind.INT if kind is Kind.SIDE_VOLUME else kind))
    return out


def write_rows(root: Path, table: str, day: str, symbol: str, rows: dict[str, list[Any]], name: str) -> Path:
    """One part file of ``rows`` (file columns), sorted by (ts, seq) as the sink writes them."""
    schema = file_schema(table)
    arrays = [pa.array(rows[f.name], f.type) for f in schema]  # times as epoch µs
    t = pa.Table.from_arrays(arrays, schema=schema).sort_by([("ts", "ascending"), ("seq", "ascending")])
    path = partition_dir(root, table, day, symbol) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, path, compression="zstd")
    return path
