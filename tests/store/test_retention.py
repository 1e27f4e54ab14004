"""Journal lifecycle: sealed segments compressed and read back unchanged, pruning that never
loses a frame not in Parquet, and a capture that leaves its journal compressed."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recorder.capture.live import Capture
from recorder.kiwoom.time import NS
from recorder.sim.venue import Venue, VenueConfig
from recorder.store.journal import JournalWriter, list_segments, read_records, write_checkpoint
from recorder.store.layout import journal_root
from recorder.store.rebuild import rebuild
from recorder.store.retention import Cancelled, compress_sealed, compress_segment, prune, segments
from tests.helpers import capture_config, stored_rows

DAY_NS = 86_400 * NS
T0 = 1_784_510_000 * NS  # 2026-07-20, a KST morning


def journal(root: Path, n: int, *, every_day: int = 0) -> list[tuple[int, int, str | bytes]]:
    """``n`` frames in small segments (a few records each); with ``every_day``, the receive
    time moves a day forward every that many frames."""
    with JournalWriter(root, segment_bytes=400) as w:
        for i in range(n):
            t = T0 + (i // every_day) * DAY_NS if every_day else T0 + i
            w.append_frame(t, f'{{"trnm":"REAL","i":{i}}}' if i % 3 else b"\x00binary" + bytes([i % 256]))
    return [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)]


def names(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("seg-"))


def test_sealed_segments_are_compressed_and_read_back_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "_journal" / "w1"
    before = journal(root, 40)
    segs = list_segments(root)
    assert len(segs) >= 5
    checkpoint = segs[3][0] - 1  # the first three segments are wholly in Parquet
    write_checkpoint(root, checkpoint)
    done = compress_sealed(root)
    assert [p.name for p in done] == [p.name + ".zst" for _, p in segs[:3]]
    assert [n.endswith(".zst") for n in names(root)] == [True] * 3 + [False] * (len(segs) - 3)
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)] == before
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root, segs[2][0] + 1)] == [
        x for x in before if x[0] >= segs[2][0] + 1
    ]
    # one zstd frame of exactly the segment's bytes: the zstd tool gives the original back
    out = subprocess.run(["zstd", "-dc", str(done[0])], capture_output=True, check=False)
    if out.returncode == 0:
        assert out.stdout.startswith(b"KJ") and len(out.stdout) > 32

    write_checkpoint(root, before[-1][0])  # everything in Parquet; the writer is closed
    compress_sealed(root, include_last=True)
    assert all(n.endswith(".zst") for n in names(root))
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)] == before
    with JournalWriter(root) as w:  # a restart numbers on from the compressed last segment
        assert w.append_frame(T0, "next") == before[-1][0] + 1


def test_a_segment_not_in_parquet_or_still_written_stays_plain(tmp_path: Path) -> None:
    root = tmp_path / "_journal" / "w1"
    journal(root, 20)
    assert compress_sealed(root) == []  # no checkpoint: nothing is in Parquet
    write_checkpoint(root, 10**9)
    last = list_segments(root)[-1][1]
    compress_sealed(root)  # without include_last, the last segment may still grow
    assert last.exists() and not last.name.endswith(".zst")


def test_a_crash_between_compression_and_removal_leaves_each_record_once(tmp_path: Path) -> None:
    root = tmp_path / "_journal" / "w1"
    before = journal(root, 30)
    first = list_segments(root)[0][1]
    copy = first.read_bytes()
    compress_segment(first)
    first.write_bytes(copy)  # as if the crash came before the plain segment was removed
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)] == before
    write_checkpoint(root, 10**9)
    compress_sealed(root)
    assert not first.exists()
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)] == before


def test_a_called_off_compression_keeps_the_plain_segment(tmp_path: Path) -> None:
    """A shutdown calls off the compressor's pass: nothing half-written stays, nothing is lost."""
    root = tmp_path / "_journal" / "w1"
    before = journal(root, 30)
    write_checkpoint(root, 10**9)
    cancel = threading.Event()
    cancel.set()
    first = list_segments(root)[0][1]
    with pytest.raises(Cancelled):
        compress_segment(first, cancel=cancel)
    assert compress_sealed(root, cancel=cancel) == []
    assert first.exists() and not any(".tmp" in p.name or p.name.endswith(".zst") for p in root.iterdir())
    assert [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root)] == before
    cancel.clear()
    assert len(compress_sealed(root, cancel=cancel)) == len(list_segments(root)) - 1


def test_prune_keeps_what_is_not_in_parquet_and_the_last_segment(tmp_path: Path) -> None:
    data = tmp_path / "store"
    root = journal_root(data, "w1")
    before = journal(root, 60, every_day=6)  # ten days, a few segments a day
    segs = segments(data)
    checkpoint = before[40][0]
    write_checkpoint(root, checkpoint)
    now = T0 + 12 * DAY_NS
    removed = prune(data, 5, now_ns=now)
    assert removed, "old segments in Parquet are removed"
    cutoff_date = "2026-07-27"  # 2026-08-01 (now) minus 5 days
    left = list_segments(root)
    assert all(s.last_fno is not None and s.last_fno <= checkpoint for s in removed)
    kept_first = left[0][0]
    assert all(r[0] >= kept_first for r in [(r.fno,) for r in read_records(root)])
    # every frame not in Parquet, and every frame of the last days, is still there
    assert [x for x in before if x[0] > checkpoint] == [
        (r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root, checkpoint + 1)
    ]
    assert all(s.first_date is not None and s.first_date < cutoff_date for s in removed)
    assert left[-1][1] == segs[-1].path  # the last segment always stays
    later = prune(data, 0, now_ns=now + 100 * DAY_NS)  # everything is old now: still never past it
    assert all(s.last_fno is not None and s.last_fno <= checkpoint for s in later)
    assert [x for x in before if x[0] > checkpoint] == [
        (r.fno, r.recv_ts_ns, r.frame()) for r in read_records(root, checkpoint + 1)
    ]
    assert list_segments(root)[-1][1] == segs[-1].path


def test_a_capture_leaves_its_journal_compressed_and_rebuild_reads_it(tmp_path: Path) -> None:
    """Rebuild from compressed segments gives identical tables."""

    async def main() -> None:
        venue = Venue(VenueConfig(n_symbols=2, tick_interval=0.02, trade_rate=20.0, book_rate=20.0))
        await venue.start()
        try:
            cap = Capture(capture_config(venue, tmp_path, "t1", flush_age_s=0.2))
            task = asyncio.create_task(cap.run())
            await venue.wait_logins(1, timeout=60)
            await venue.wait_sent(200, timeout=60)
            await venue.ping_barrier()
            cap.stop.set()
            await asyncio.wait_for(task, 60)
        finally:
            await venue.stop()

    asyncio.run(main())
    root = journal_root(tmp_path, "t1")
    assert names(root) and all(n.endswith(".zst") for n in names(root))
    tables = {t: stored_rows(tmp_path, t) for t in ("trades", "orderbook")}
    assert tables["trades"] and tables["orderbook"]
    rebuild(tmp_path, ["t1"])
    assert {t: stored_rows(tmp_path, t) for t in tables} == tables


def test_journal_ls_and_prune_commands(tmp_path: Path) -> None:
    data = tmp_path / "store"
    root = journal_root(data, "w1")
    before = journal(root, 30, every_day=10)
    write_checkpoint(root, before[-1][0])
    run = [sys.executable, "-m", "recorder.cli.main", "journal"]
    ls = subprocess.run([*run, "ls", "--data-dir", str(data)], capture_output=True, text=True, check=True)
    assert "w1" in ls.stdout and "2026-07-20" in ls.stdout
    bad = subprocess.run(
        [*run, "prune", "--data-dir", str(data), "--keep", "-1"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    pruned = subprocess.run(
        [*run, "prune", "--data-dir", str(data), "--keep", "0"], capture_output=True, text=True, check=True
    )
    assert "removed" in pruned.stdout
    assert len(list_segments(root)) >= 1


@pytest.mark.parametrize("bad", ["not zstd at all"])
def test_a_damaged_compressed_segment_is_a_clear_journal_error(tmp_path: Path, bad: str) -> None:
    from recorder.errors import JournalError

    root = tmp_path / "_journal" / "w1"
    journal(root, 20)
    write_checkpoint(root, 10**9)
    (first,) = compress_sealed(root)[:1]
    first.write_bytes(bad.encode())
    with pytest.raises(JournalError, match="compressed"):
        list(read_records(root))


def test_after_a_prune_verify_says_what_cannot_be_rebuilt_and_rebuild_refuses(tmp_path: Path) -> None:
    """Real REAL frames over three days in small segments, decoded into the store; the first
    days' segments pruned: verify still finds the store clean and says from where the journal is
    whole; rebuild refuses rather than drop rows only the Parquet files still hold."""
    import orjson

    from recorder.errors import ConfigError
    from recorder.store.verify import verify

    frames = [
        orjson.dumps(orjson.loads(line)["frame"])
        for line in (Path(__file__).parents[1] / "data" / "kiwoom-frames.jsonl").read_text().splitlines()
    ]
    data = tmp_path / "store"
    root = journal_root(data, "w1")
    with JournalWriter(root, segment_bytes=4000) as w:
        for i in range(60):
            w.append_frame(T0 + (i // 20) * DAY_NS + i, frames[i % len(frames)])
    rebuild(data, ["w1"])  # Parquet of every frame
    write_checkpoint(root, 59)
    rows = stored_rows(data, "trades")
    assert len(list_segments(root)) > 3
    removed = prune(data, 1, now_ns=T0 + 2 * DAY_NS)
    assert removed and list_segments(root)[0][0] > 0
    assert stored_rows(data, "trades") == rows  # pruning the journal touches no part file
    rep = verify(data)
    assert rep.status == "clean", rep.problems
    assert any("pruned before frame" in line for line in rep.info)
    with pytest.raises(ConfigError, match="pruned"):
        rebuild(data, ["w1"])
    assert stored_rows(data, "trades") == rows
