"""Replay: iterators, pacing, NDJSON and the served venue, each checked against the store.

End-to-end tests run over real loopback sockets and real files. They synchronise on
events (the venue's condition, the feed's end, a PING round trip), never on sleeps.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import io
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import websockets.asyncio.client
from click.testing import CliRunner

from recorder.capture.live import Capture
from recorder.cli.main import main
from recorder.kiwoom.fields import MARKET_TABLES
from recorder.kiwoom.frames import build_login, build_reg, decode_rows, row_columns
from recorder.kiwoom.time import KST, NS, trading_day
from recorder.replay import ReplayRow, aiter_rows, iter_batches, iter_rows, select
from recorder.replay.feed import RecordedFeed, write_ndjson
from recorder.sim.venue import Venue, VenueConfig
from recorder.store.sink import read_table
from tests.helpers import CREDS, capture_config
from tests.replay.stores import build_store

RECEIVE_SIDE = ("recv_ts", "seq")
DAY1, DAY2 = "2026-07-20", "2026-07-21"


# --------------------------------------------------------------------------- helpers


def _key(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is not None, v if v is not None else 0) for v in t)


def stored(
    root: Path, table: str, drop: tuple[str, ...] = RECEIVE_SIDE, **filters: Any
) -> list[tuple[Any, ...]]:
    """The table's rows in the row layout less ``drop``, times as epoch µs, sorted."""
    t = read_table(root, table, **filters)
    names = [c for c in row_columns(table) if c not in drop]
    cols = [
        t.column(n).cast(pa.int64()).to_pylist() if n in ("ts", "recv_ts") else t.column(n).to_pylist()
        for n in names
    ]
    return sorted(zip(*cols, strict=True), key=_key)


def comparable(
    table: str, rows: Iterable[tuple[Any, ...]], drop: tuple[str, ...] = RECEIVE_SIDE
) -> list[tuple[Any, ...]]:
    """Rows in the row layout (times in ns) → the form of :func:`stored`."""
    keep = [i for i, c in enumerate(row_columns(table)) if c not in drop]
    return sorted(
        (tuple(r[i] // 1000 if i < 2 else r[i] for i in keep) for r in rows),
        key=_key,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Store A: a few seconds captured from the synthetic venue (KRX and NXT streams)."""
    root = tmp_path_factory.mktemp("store_a")

    async def run() -> None:
        cfg = VenueConfig(n_symbols=3, tick_interval=0.02, seed=11, trade_rate=15.0)
        async with Venue(cfg) as venue:
            items = venue.feed.items  # type: ignore[attr-defined]
            assert any(i.endswith("_NX") for i in items)
            cap = Capture(capture_config(venue, root, "a"))
            task = asyncio.create_task(cap.run())
            await venue.wait_sent(400, timeout=30)
            cap.stop.set()
            await asyncio.wait_for(task, 30)

    asyncio.run(run())
    dates = {d for t in MARKET_TABLES for d in read_table(root, t).column("date").unique().to_pylist()}
    if len(dates) != 1:
        pytest.skip(f"the capture spanned KST midnight ({sorted(dates)})")
    return root, dates.pop()


# --------------------------------------------------------------------------- end to end


def test_served_replay_recaptures_identical_tables(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store_a, day = recorded
    store_b = tmp_path / "b"

    async def run() -> tuple[RecordedFeed, Venue]:
        # settle_s is long: the clock must start because the capture registered everything.
        with RecordedFeed(store_a, day, settle_s=30.0) as feed:
            venue = Venue(VenueConfig(tick_interval=0.01, send_queue_max=50), feed=feed)
            await venue.start()
            try:
                cap = Capture(capture_config(venue, store_b, "b", feed.items, trading_date=day))
                task = asyncio.create_task(cap.run())
                await feed.wait_replayed(timeout=60)
                cap.stop.set()
                await asyncio.wait_for(task, 30)
            finally:
                await venue.stop()
        return feed, venue

    feed, venue = asyncio.run(run())
    total = sum(read_table(store_a, t).num_rows for t in MARKET_TABLES)
    assert feed.start_reason == "covered"
    assert feed.entries == total == venue.stats.entries_sent
    # send_queue_max=50 frames is far below the day: only backpressure kept the client connected.
    assert venue.stats.connections == 1 and venue.stats.frames_sent > 100
    for table in MARKET_TABLES:
        want = stored(store_a, table)
        assert len(want) > 50
        assert stored(store_b, table) == want, table


def test_ndjson_replay_ingests_back_to_identical_tables(recorded: tuple[Path, str], tmp_path: Path) -> None:
    store_a, day = recorded
    runner = CliRunner()
    res = runner.invoke(main, ["replay", "--data-dir", str(store_a), "--date", day, "--format", "ndjson"])
    assert res.exit_code == 0, res.output
    lines = res.stdout_bytes.splitlines()
    assert lines and all(orjson.loads(line)["trnm"] == "REAL" for line in lines)
    total = sum(read_table(store_a, t).num_rows for t in MARKET_TABLES)
    assert len(lines) < total  # entries received together share a frame again
    ndjson = tmp_path / "day.ndjson"
    ndjson.write_bytes(res.stdout_bytes)
    store_c = tmp_path / "c"
    res = runner.invoke(main, ["ingest", str(ndjson), "--data-dir", str(store_c), "--date", day])
    assert res.exit_code == 0, res.output
    for table in MARKET_TABLES:
        assert stored(store_c, table) == stored(store_a, table), table
    assert read_table(store_c, "rejects").num_rows == 0


def test_kiwoom_client_receives_exactly_its_registered_items(recorded: tuple[Path, str]) -> None:
    store_a, day = recorded
    wanted = {("005930", "NXT"), ("000660", "KRX")}
    items = ["005930_NX", "000660"]
    received: list[str] = []
    replies: dict[str, dict[str, Any]] = {}

    async def client(rest_url: str, ws_url: str) -> None:
        """Written the usual way: token over REST, LOGIN, REG, echo every PING verbatim."""
        async with httpx.AsyncClient(base_url=rest_url) as http:
            r = await http.post(
                "/oauth2/token",
                json={
                    "grant_type": "client_credentials",
                    "appkey": CREDS.appkey,
                    "secretkey": CREDS.secretkey,
                },
            )
            token = r.json()["token"]
        async with websockets.asyncio.client.connect(ws_url, ping_interval=None) as ws:
            await ws.send(build_login(token))
            replies["LOGIN"] = orjson.loads(await ws.recv())
            await ws.send(build_reg(items, ["0B", "0D"]))
            async for raw in ws:
                body = orjson.loads(raw)
                if body["trnm"] == "PING":
                    await ws.send(raw)  # verbatim
                elif body["trnm"] == "REAL":
                    received.append(raw if isinstance(raw, str) else raw.decode())
                else:
                    replies[body["trnm"]] = body

    async def run() -> tuple[RecordedFeed, Venue]:
        with RecordedFeed(store_a, day, settle_s=0.2) as feed:
            async with Venue(VenueConfig(tick_interval=0.01), feed=feed) as venue:
                task = asyncio.create_task(client(venue.rest_url, venue.ws_url))
                await feed.wait_replayed(timeout=60)  # ends with a PING round trip: all read
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        return feed, venue

    feed, venue = asyncio.run(run())
    assert replies["LOGIN"]["return_code"] == 0 and replies["REG"]["return_code"] == 0
    assert feed.start_reason == "settled" and venue.stats.pings_echoed_not_verbatim == 0
    got: list[tuple[str, tuple[Any, ...]]] = []
    for i, raw in enumerate(received):
        rows, rejects = decode_rows(raw, 0, i, trading_day=trading_day(day))
        assert not rejects
        got.extend(rows)
    assert {(row[3], row[4]) for _, row in got} == wanted
    for table in MARKET_TABLES:
        want = [r for r in stored(store_a, table) if (r[1], r[2]) in wanted]  # (ts, symbol, venue, ...)
        assert len(want) > 10
        assert comparable(table, [row for t, row in got if t == table]) == want, table


# --------------------------------------------------------------------------- iterators


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two dates; two writers with overlapping times per partition; several files per writer."""
    root = tmp_path_factory.mktemp("two_days")
    build_store(root, DAY1, writer="w1", seed=1, max_rows=150)
    build_store(root, DAY1, writer="w2", seed=2, steps=20, max_rows=100)
    build_store(root, DAY2, writer="w1", seed=3)
    return root


def test_iter_rows_is_time_ordered_and_complete(two_days: Path) -> None:
    rows = list(iter_rows(two_days, DAY1, DAY2))
    keys = [r.row[:3] for r in rows]
    assert keys == sorted(keys)
    assert {r.table for r in rows} == {"trades", "orderbook"}
    assert len({r.row[3] for r in rows}) == 3
    # Every stored row exactly once, values intact (ts and recv_ts as epoch ns).
    for table in MARKET_TABLES:
        mine = [r.row for r in rows if r.table == table]
        assert comparable(table, mine, drop=()) == stored(two_days, table, drop=())
    d = rows[0].as_dict()
    assert d["ts"] == rows[0].ts and d["symbol"] == rows[0].row[3] and "venue" in d


def test_filters_by_symbol_item_type_and_date(two_days: Path) -> None:
    nx = list(iter_rows(two_days, DAY1, symbols=["005930_NX"]))
    assert nx and {(r.row[3], r.row[4]) for r in nx} == {("005930", "NXT")}
    both = list(iter_rows(two_days, DAY1, symbols=["000660"]))
    assert {(r.row[3], r.row[4]) for r in both} == {("000660", "KRX"), ("000660", "NXT")}
    mixed = list(iter_rows(two_days, DAY1, symbols=["005930_NX", "000660"], types=["0B"]))
    assert {r.table for r in mixed} == {"trades"}
    assert {(r.row[3], r.row[4]) for r in mixed} == {("005930", "NXT"), ("000660", "KRX"), ("000660", "NXT")}
    n_trades = read_table(two_days, "trades", filter=_day_filter(DAY1)).num_rows
    assert len(list(iter_rows(two_days, DAY1, types=["0B"]))) == n_trades
    day2 = list(iter_rows(two_days, dt.date.fromisoformat(DAY2)))
    assert day2 and {dt.datetime.fromtimestamp(r.ts / NS, KST).date().isoformat() for r in day2} == {DAY2}
    assert list(iter_rows(two_days, "2026-07-22")) == []
    from recorder.errors import ConfigError

    for bad in ({"symbols": ["5930"]}, {"types": ["0C"]}, {"end": "2026-07-19"}):
        with pytest.raises(ConfigError):
            list(iter_rows(two_days, DAY1, **bad))


def test_a_part_file_out_of_order_is_refused(tmp_path: Path) -> None:
    build_store(tmp_path, DAY1, steps=30)  # three distinct exchange seconds
    part = next((tmp_path / "trades").rglob("*.parquet"))
    t = pq.read_table(part)
    pq.write_table(t.take(list(reversed(range(len(t))))), part)  # breaks the sort contract
    from recorder.errors import StoreError

    with pytest.raises(StoreError, match="not sorted by ts"):
        list(iter_rows(tmp_path, DAY1))


def _day_filter(day: str) -> Any:
    import pyarrow.dataset as ds

    return ds.field("date") == day


def test_iter_batches_are_ordered_per_table_and_match_rows(two_days: Path) -> None:
    batches = list(iter_batches(two_days, DAY1, DAY2, batch_rows=64))
    assert all(b.num_rows <= 64 for _, b in batches)
    for table in MARKET_TABLES:
        keys = [
            (ts.value, recv.value, seq)
            for t, b in batches
            if t == table
            for ts, recv, seq in zip(
                b.column("ts"), b.column("recv_ts"), b.column("seq").to_pylist(), strict=True
            )
        ]
        assert keys == sorted(keys) and len(keys) == read_table(two_days, table).num_rows
    # Within a window trades come before orderbook, so a trades batch that follows an
    # orderbook batch belongs to a later window: all its exchange times are later.
    book_high = None
    for t, b in batches:
        lo, hi = (x.value for x in (b.column("ts")[0], b.column("ts")[-1]))
        if t == "orderbook":
            book_high = hi if book_high is None else max(book_high, hi)
        elif book_high is not None:
            assert lo > book_high
    assert sum(b.num_rows for _, b in batches) == len(list(iter_rows(two_days, DAY1, DAY2)))


# --------------------------------------------------------------------------- pacing


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep_sync(self, d: float) -> None:
        self.sleeps.append(d)
        self.now += d

    async def sleep(self, d: float) -> None:
        self.sleep_sync(d)


@pytest.fixture(scope="module")
def holed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One day with a recorded 5-second hole (steps 11-59 missing: 5.0 s between frames)."""
    root = tmp_path_factory.mktemp("holed")
    build_store(root, DAY1, steps=80, hole=(10, 49))
    return root


def test_pacing_follows_receive_times_and_keeps_holes(holed: Path) -> None:
    fake = FakeClock()

    async def collect(speed: float | None) -> list[ReplayRow]:
        return [r async for r in aiter_rows(holed, DAY1, speed=speed, clock=fake.clock, sleep=fake.sleep)]

    rows = asyncio.run(collect(10))
    span = (max(r.recv_ts for r in rows) - rows[0].recv_ts) / NS
    assert 7.0 < span < 9.0
    assert sum(fake.sleeps) == pytest.approx(span / 10, abs=0.002)
    assert max(fake.sleeps) == pytest.approx(0.5, abs=0.002)  # the 5 s hole, at speed 10
    assert sorted(fake.sleeps)[-2] < 0.05  # nothing else is a long silence
    assert rows == list(iter_rows(holed, DAY1))

    fake.sleeps.clear()
    assert asyncio.run(collect(None)) == rows and fake.sleeps == []

    out = io.BytesIO()
    res = write_ndjson(out, select(holed, DAY1), speed=1, clock=fake.clock, sleep=fake.sleep_sync)
    assert res.entries == len(rows) and res.frames == len(out.getvalue().splitlines())
    assert sum(fake.sleeps) == pytest.approx(span, abs=0.002) and max(fake.sleeps) == pytest.approx(
        5.0, abs=0.002
    )


class _FakeVenue:
    def __init__(self, queue_max: int) -> None:
        self.config = VenueConfig(send_queue_max=queue_max)
        self.queued = 0

    def backlog(self) -> int:
        return self.queued


def test_recorded_feed_clock_pacing_and_backpressure(holed: Path) -> None:
    with RecordedFeed(holed, DAY1, speed=10, settle_s=1.0, prefetch=False) as feed:
        fake = _FakeVenue(queue_max=40)
        feed.attach(fake)  # type: ignore[arg-type]
        rows = list(iter_rows(holed, DAY1))
        t = 1_000 * NS
        assert feed.step(t) == []  # nobody registered: the clock has not started
        feed.on_subscribed(frozenset({("005930", "0B")}), t)  # a partial REG: wait to settle
        assert feed.step(t + NS // 2) == [] and feed.started_ns is None
        start = t + NS
        first = feed.step(start)
        assert feed.start_reason == "settled" and len(first) >= 1
        fake.queued = 20  # half of send_queue_max is taken: nothing more goes out
        assert feed.step(start + 10 * NS) == []
        fake.queued = 0
        got = first
        # Speed 10: at 0.09 s the first 0.9 s of the recording are due, at most 20 per step.
        while batch := feed.step(start + 90 * NS // 1000):
            assert len(batch) <= 20
            got += batch
        r0 = rows[0].recv_ts
        due = [r for r in rows if r.recv_ts - r0 <= 9 * NS // 10]
        assert len(got) == len(due)
        # The hole: rows after it are due at (hole end - r0) / 10, not a step earlier.
        after = next(r for r in rows if r.recv_ts - r0 > 5 * NS)
        edge = (after.recv_ts - r0) // 10
        while feed.step(start + edge - 1):
            pass
        assert feed.entries == sum(1 for r in rows if r.recv_ts < after.recv_ts)
        assert feed.step(start + edge)
        while feed.step(start + 100 * NS):
            pass
        assert feed.exhausted and feed.entries == len(rows)
        info = {r["code"]: r for r in feed.symbols_info()}
        assert set(info) == {"005930", "000660", "373220"} and info["005930"]["nxtEnable"] == "Y"
        assert int(info["005930"]["lastPrice"]) > 0


def test_replay_cli_refuses_bad_options(tmp_path: Path, holed: Path) -> None:
    runner = CliRunner()
    for args in (
        ["--speed", "fast"],
        ["--speed", "0"],
        ["--serve", "--out", str(tmp_path / "x")],
        ["--symbols", "12345"],
    ):
        res = runner.invoke(main, ["replay", "--data-dir", str(holed), "--date", DAY1, *args])
        assert res.exit_code == 2, (args, res.output)
    res = runner.invoke(
        main, ["replay", "--data-dir", str(holed), "--date", "2026-01-01", "--serve", "--port", "0"]
    )
    assert res.exit_code == 2 and "nothing recorded" in res.stderr
    out = tmp_path / "x.ndjson"
    res = runner.invoke(
        main, ["replay", "--data-dir", str(holed), "--date", DAY1, "--types", "0B", "--out", str(out)]
    )
    assert res.exit_code == 0 and res.stdout == ""
    entries = collections.Counter(
        e["type"] for line in out.read_bytes().splitlines() for e in orjson.loads(line)["data"]
    )
    assert set(entries) == {"0B"} and entries["0B"] == read_table(holed, "trades").num_rows


def test_recorded_feed_logs_every_entry_it_served(holed: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The end-of-replay log counts the entries of the step that emptied the recording too
    (served in one step here, so a count taken after that step would say 0)."""
    total = sum(1 for _ in iter_rows(holed, DAY1))
    with RecordedFeed(holed, DAY1, max_step=10 * total, prefetch=False) as feed:
        feed.on_subscribed(feed.inventory.pairs, 0)  # a client registered every recorded pair
        with caplog.at_level(logging.INFO, logger="recorder.replay.feed"):
            served = feed.step(NS)
        assert feed.exhausted and len(served) == feed.entries == total
    (done,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replay complete")]
    assert done.startswith(f"replay complete: {total} entries")
