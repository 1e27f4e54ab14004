"""End to end over loopback: the embedded venue misbehaves; the store must still hold exactly
what was sent, with every hole and every bad frame on record."""

from __future__ import annotations

import asyncio
import collections
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

import queries
from recorder.capture.live import Capture
from recorder.sim.venue import Venue, VenueConfig
from recorder.store.journal import EVENT, read_checkpoint, read_records
from recorder.store.layout import journal_root
from soak.harness import SOAK_CAPTURE, WRITER, CaptureProc, WriteGate
from tests.helpers import CREDS, capture_config, decoded_rows, journal_rows, journaled_frames, stored_rows

KEY_COLUMNS = ("symbol", "venue", "ts", "seq")


async def _run(
    tmp: Path, venue_cfg: VenueConfig, script: Callable[[Venue, Capture], Awaitable[None]], **cfg: Any
) -> tuple[Venue, Capture]:
    venue = Venue(venue_cfg)
    await venue.start()
    try:
        items = cfg.pop("items", None)
        capture = Capture(capture_config(venue, tmp, "t1", items, **cfg))
        task = asyncio.create_task(capture.run())
        try:
            await script(venue, capture)
        finally:
            capture.stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        await venue.stop()
    return venue, capture


def check_transport(
    venue: Venue, tmp: Path, dropped: set[int], at_least: dict[int, int]
) -> list[tuple[int, int, str | bytes]]:
    """The journal holds, connection by connection, exactly what the venue wrote, in order:
    everything for connections the venue closed cleanly, a prefix for ones it aborted, and
    at least ``at_least[conn]`` frames for one the capture closed when it stopped (frames
    the venue wrote after the last PING barrier may still have been in flight)."""
    journal = journaled_frames(tmp, "t1")
    got = [raw.encode() if isinstance(raw, str) else raw for _, _, raw in journal]
    pos = 0
    for conn in sorted({f.conn_id for f in venue.frames}):
        sent = [
            f.data.encode() if isinstance(f.data, str) else f.data for f in venue.frames if f.conn_id == conn
        ]
        n = 0
        while n < len(sent) and pos + n < len(got) and got[pos + n] == sent[n]:
            n += 1
        if conn in at_least:
            assert n >= at_least[conn], f"connection {conn}: frames read before the barrier are missing"
        elif conn not in dropped:
            assert n == len(sent), f"connection {conn}: {len(sent) - n} frames sent but never journaled"
        pos += n
    assert pos == len(got), "the journal holds frames the venue never sent"
    return journal


def test_capture_survives_every_fault_and_loses_nothing(tmp_path: Path) -> None:
    bad_frames = [
        "{not json",
        '{"trnm":"REAL","data":"not a list"}',
        orjson.dumps(
            {
                "data": [
                    {
                        "values": {"20": "093000", "10": "abc", "15": "+1", "13": "5"},
                        "type": "0B",
                        "name": "주식체결",
                        "item": "005930",
                    }
                ],
                "trnm": "REAL",
            }
        ).decode(),
        '{"data":[{"values":{"20":"093000"},"type":"0w","name":"x","item":"005930"}],"trnm":"REAL"}',
        b"\xff\x00 binary garbage",
    ]

    at_barrier: dict[int, int] = {}

    async def script(venue: Venue, cap: Capture) -> None:
        await venue.wait_logins(1)
        await venue.wait_sent(30)
        await venue.close_all()  # clean close (1000)
        venue.refuse_next_reg(105115, "등록 한도 초과")  # the next REG is refused
        await venue.wait_logins(2)
        await venue.wait_sent(len(venue.sent) + 20)
        await venue.drop_all()  # abrupt TCP abort
        await venue.wait_logins(3)
        await venue.wait_sent(len(venue.sent) + 20)
        await venue.kick_all()  # R10001: another login with the same app key
        await venue.wait_logins(4)
        for raw in bad_frames:
            await venue.send_raw_all(raw)
        await venue.wait_sent(len(venue.sent) + 30)
        last = max(venue.connections)
        at_barrier[last] = sum(1 for f in venue.frames if f.conn_id == last)
        await venue.ping_barrier()  # everything sent so far was read (and journaled)

    cfg = VenueConfig(
        n_symbols=3,
        ping_interval=0.2,
        heartbeat_miss_limit=1_000_000,  # no close for slow echoes on a loaded machine
        ping_before_login=True,
        tick_interval=0.02,
        seed=3,
        trade_rate=20.0,
        book_rate=10.0,
    )
    venue, _cap = asyncio.run(_run(tmp_path, cfg, script))

    dropped = {c for c in {f.conn_id for f in venue.frames} if c == 3}
    journal = check_transport(venue, tmp_path, dropped, at_barrier)

    # Every entry that reached the recorder is stored exactly once, with the decoded values
    # (the journal numbers frames from 0 in arrival order, so seq matches too).
    for table in ("trades", "orderbook"):
        want = decoded_rows(journal, table)
        assert len(want) > 20
        assert stored_rows(tmp_path, table) == want

    # Independent of our decoder: every trade the venue sent on a clean connection (on the
    # last one, before the barrier), by value.
    sent_trades = collections.Counter(
        (
            e.entry["item"][:6],
            abs(int(e.entry["values"]["10"])),
            abs(int(e.entry["values"]["15"])),
            int(e.entry["values"]["13"]),
        )
        for e in venue.sent
        if e.entry["type"] == "0B"
        and e.conn_id not in dropped
        and e.frame_index < at_barrier.get(e.conn_id, len(venue.frames))
    )
    stored = collections.Counter(
        tuple(r.values())
        for r in queries.sql(tmp_path, "SELECT symbol, price, volume, cum_volume FROM trades").to_pylist()
    )
    assert not sent_trades - stored, "trades sent on clean connections are missing"

    gaps = queries.sql(
        tmp_path, "SELECT kind, detail, symbols, end_ts > start_ts AS closed FROM gaps ORDER BY seq"
    ).to_pylist()
    kinds = collections.Counter(g["kind"] for g in gaps)
    assert kinds["continuity"] == 0, gaps  # reconnects reset the expectation: no false alarms
    assert kinds["disconnect"] >= 2 and kinds["kicked"] == 1 and kinds["reg_rejected"] == 1, gaps
    assert all(g["closed"] for g in gaps if g["kind"] in ("disconnect", "kicked"))

    rejects = queries.sql(tmp_path, "SELECT reason, raw FROM rejects ORDER BY seq").to_pylist()
    assert len(rejects) == len(bad_frames), rejects
    assert "invalid JSON" in rejects[0]["reason"] and "not a REAL frame" in rejects[1]["reason"]
    assert "FID 10 (price) unparseable" in rejects[2]["reason"] and "0w" in rejects[3]["reason"]
    assert "not UTF-8" in rejects[4]["reason"]

    # PINGs are echoed verbatim, SYSTEM frames never. (Not "every PING within 0.2 s": that
    # would be a statement about the machine's load, not the recorder.)
    st = venue.stats
    assert st.pings_echoed > 0 and st.pings_echoed_not_verbatim == 0
    assert st.system_echo_closes == 0 and st.heartbeat_closes == 0


def _kill_mid_flush(gate: WriteGate, root: Path) -> None:
    """Let the capture's part-file writes through one at a time until a flush that began
    after a checkpoint has written one part file and holds the next: then return (the
    caller kills). The store then has checkpointed part files, one part file beyond the
    checkpoint, and journaled frames whose rows are in no part file yet."""
    checkpoint, written_since = -1, 0
    while True:
        gate.held()
        now = read_checkpoint(root)
        if now != checkpoint:  # a flush completed; this held write belongs to the next one
            checkpoint, written_since = now, 0
        if checkpoint >= 0 and written_since:
            return
        gate.release()
        written_since += 1


def test_sigkill_mid_flush_then_restart_stores_journaled_frames_exactly_once(
    tmp_path: Path, venue_thread: Any
) -> None:
    """SIGKILL a real capture process in the middle of a flush, restart the real CLI on the
    same store: every row the journal decodes to is stored exactly once, the rows written
    before the kill included, and the downtime is a restart gap."""
    vt = venue_thread(VenueConfig(n_symbols=2, tick_interval=0.02, seed=5, trade_rate=20.0, book_rate=20.0))
    data, logs, gate = tmp_path / "store", tmp_path / "logs", WriteGate()
    root = journal_root(data, WRITER)
    try:
        doomed = CaptureProc(vt, data, logs, ("--flush-age", "0.2s"), "doomed", SOAK_CAPTURE, gate).start()
        vt.wait_logins(1)
        _kill_mid_flush(gate, root)
        assert doomed.kill() == -signal.SIGKILL
    finally:
        gate.close()
    vt.wait_no_connections()

    checkpoint = read_checkpoint(root)
    before = {table: stored_rows(data, table) for table in ("trades", "orderbook")}
    stored = [r for rows in before.values() for r in rows]
    journaled = [r for table in before for r in journal_rows(data, WRITER, table)]
    assert checkpoint >= 0 and stored, "the kill came after a checkpointed flush"
    assert max(r[2] >> 16 for r in stored) > checkpoint, "a part file beyond the checkpoint"
    assert set(stored) < set(journaled), "journaled frames whose rows were in no part file"

    again = CaptureProc(vt, data, logs, ("--flush-age", "0.2s"), "again").start()  # the real CLI
    vt.wait_logins(2)
    vt.wait_entries(vt.entries_sent() + 40)
    vt.barrier()
    assert again.stop() == 0, again.tail()

    for table, rows_before in before.items():
        rows = stored_rows(data, table)
        assert rows == journal_rows(data, WRITER, table)  # every journaled row exactly once
        assert set(rows_before) <= set(rows)
    restarts = queries.sql(data, "SELECT detail FROM gaps WHERE kind = 'restart'").to_pylist()
    assert restarts == [{"detail": "the recorder was not running (crash or kill); restarted"}]


def test_a_clean_stop_and_restart_leave_a_restart_gap_over_the_hole(tmp_path: Path) -> None:
    """Between a clean stop and the next start nothing is recorded: a gap says so."""

    async def script(venue: Venue, cap: Capture) -> None:
        await venue.wait_sent(20)
        await venue.ping_barrier()  # the capture has read what was sent

    for seed in (7, 8):
        asyncio.run(_run(tmp_path, VenueConfig(n_symbols=2, tick_interval=0.02, seed=seed), script))
    records = list(read_records(journal_root(tmp_path, "t1")))
    stop = next(r for r in records if r.kind == EVENT and r.event()["kind"] == "stopped")
    before = [r.recv_ts_ns for r in records if r.kind != EVENT and r.fno < stop.fno]
    after = [r.recv_ts_ns for r in records if r.kind != EVENT and r.fno > stop.fno]
    assert before and after
    gaps = queries.sql(
        tmp_path,
        "SELECT kind, detail, epoch_ns(start_ts) AS start_ns, epoch_ns(end_ts) AS end_ns FROM gaps",
    ).to_pylist()
    (gap,) = gaps
    assert gap["kind"] == "restart" and "stopped" in gap["detail"]
    # The gap is the hole: from the first run's stop to before the second run's first frame
    # (in µs, the precision of the stored timestamps).
    start_us, end_us = gap["start_ns"] // 1000, gap["end_ns"] // 1000
    assert max(before) // 1000 <= start_us == stop.recv_ts_ns // 1000 < end_us <= min(after) // 1000


def test_wrong_secret_fails_fast_without_leaking(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def script(venue: Venue, cap: Capture) -> None:
        await cap.stop.wait()

    cfg = VenueConfig(appkey=CREDS.appkey, secretkey="the-real-secret")
    from recorder.errors import AuthError

    with pytest.raises(AuthError) as info:
        asyncio.run(_run(tmp_path, cfg, script))
    text = str(info.value) + caplog.text
    assert "refused" in str(info.value) and "nothing captured" in str(info.value)
    assert CREDS.secretkey not in text and CREDS.appkey not in text
    # Nothing was recorded, and the store says so: the whole run is a gap.
    gaps = queries.sql(tmp_path, "SELECT kind, detail FROM gaps").to_pylist()
    assert [g["kind"] for g in gaps] == ["disconnect"] and "refused" in gaps[0]["detail"]


def test_universe_from_ka10099_with_nxt_streams(tmp_path: Path) -> None:
    async def script(venue: Venue, cap: Capture) -> None:
        await venue.wait_sent(60)
        await venue.ping_barrier()  # the capture has read what was sent

    cfg = VenueConfig(n_symbols=4, tick_interval=0.02, trade_rate=20.0, ka10099_page_size=1)  # forces paging
    venue, cap = asyncio.run(_run(tmp_path, cfg, script, items=["005930"], universe="all", nxt=True))
    registered = set(cap.sessions[0]._items)
    expected = {i["code"] for i in venue.feed.symbols_info()}
    expected |= {i["code"] + "_NX" for i in venue.feed.symbols_info() if i["nxtEnable"] == "Y"}
    assert registered == expected and any(i.endswith("_NX") for i in registered)
    venues = {r["venue"] for r in queries.sql(tmp_path, "SELECT DISTINCT venue FROM trades").to_pylist()}
    assert venues == {"KRX", "NXT"}
