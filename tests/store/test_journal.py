"""Tests for recorder.store.journal: real files under tmp_path, no sleeps, no patching."""

from __future__ import annotations

import logging
import os
import random
import stat
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from recorder.errors import JournalError
from recorder.store.journal import (
    BINARY,
    EVENT,
    HEADER_SIZE,
    TEXT,
    JournalTail,
    JournalWriter,
    Record,
    list_writers,
    read_checkpoint,
    read_checkpoint_state,
    read_records,
    write_checkpoint,
)

Frame = str | bytes


def segments(root: Path) -> list[Path]:
    return sorted(root.glob("seg-*.jnl"))


def write_all(root: Path, frames: Sequence[Frame], **kw: object) -> list[int]:
    with JournalWriter(root, **kw) as w:  # type: ignore[arg-type]
        return [w.append_frame(1_000 + i, f) for i, f in enumerate(frames)]


def snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def frames_of(records: list[Record]) -> list[Frame]:
    return [r.frame() for r in records]


# ------------------------------------------------------------------------- round trip


def test_round_trip_of_text_binary_and_event_records(tmp_path: Path) -> None:
    root = tmp_path / "_journal" / "w1"
    event = {"kind": "disconnect", "code": 1006, "symbols": ["005930"]}
    with JournalWriter(root).open() as w:
        assert w.last_fno == -1
        assert w.append_frame(10, '{"trnm":"REAL","data":[]}', session=0) == 0
        assert w.append_frame(-5, b"\x00\xff\xfe", session=3) == 1
        assert w.append_event(30, event, session=65535) == 2
        assert w.append_frame(40, "") == 3
        assert w.last_fno == 3
    got = list(read_records(root))
    assert [(r.fno, r.recv_ts_ns, r.kind, r.session) for r in got] == [
        (0, 10, TEXT, 0),
        (1, -5, BINARY, 3),
        (2, 30, EVENT, 65535),
        (3, 40, TEXT, 0),
    ]
    assert got[0].payload == b'{"trnm":"REAL","data":[]}'
    assert got[0].frame() == '{"trnm":"REAL","data":[]}'
    assert got[1].frame() == b"\x00\xff\xfe"
    assert got[2].event() == event
    assert got[3].frame() == ""
    with pytest.raises(ValueError):
        got[2].frame()
    with pytest.raises(ValueError):
        got[0].event()


_BIG = st.integers(0, 255).map(lambda b: bytes([b]) * (1 << 20)) | st.just("가나" * (1 << 18))
_FRAME = st.text() | st.binary() | _BIG
_FRAMES = st.lists(st.tuples(st.integers(-(2**63), 2**63 - 1), _FRAME), max_size=20)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frames=_FRAMES, segment_bytes=st.sampled_from([1, 200, 1 << 16, 256 << 20]))
@example(frames=[(0, "\ud800 lone surrogate"), (1, b"\x80\xc3(")], segment_bytes=1)
@example(frames=[(1, b"\x00" * (1 << 20)), (2, "가" * (1 << 19)), (3, b"")], segment_bytes=200)
def test_any_frames_round_trip(frames: list[tuple[int, Frame]], segment_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "w"
        with JournalWriter(root, segment_bytes=segment_bytes) as w:
            for ts, raw in frames:
                w.append_frame(ts, raw)
        got = list(read_records(root))
    assert [(r.recv_ts_ns, r.frame()) for r in got] == frames
    assert [r.fno for r in got] == list(range(len(frames)))
    assert all(type(r.frame()) is type(raw) for r, (_, raw) in zip(got, frames, strict=True))


def test_files_and_directories_are_private(tmp_path: Path) -> None:
    root = tmp_path / "store" / "_journal" / "w1"
    write_all(root, ["a"])
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(root.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(segments(root)[0].stat().st_mode) == 0o600


def test_append_before_open_is_refused(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="not open"):
        JournalWriter(tmp_path).append_frame(1, "x")


# ------------------------------------------------------------------------- restarts


def test_reopen_continues_numbering_in_a_new_segment(tmp_path: Path) -> None:
    assert write_all(tmp_path, ["a", "b", "c"]) == [0, 1, 2]
    before = snapshot(segments(tmp_path))
    assert write_all(tmp_path, ["d", "e"]) == [3, 4]
    assert write_all(tmp_path, [b"f"]) == [5]
    assert [p.name for p in segments(tmp_path)] == [
        "seg-000000000000.jnl",
        "seg-000000000003.jnl",
        "seg-000000000005.jnl",
    ]
    assert snapshot(list(before)) == before
    assert frames_of(list(read_records(tmp_path))) == ["a", "b", "c", "d", "e", b"f"]


def test_empty_run_leaves_no_segment_behind(tmp_path: Path) -> None:
    write_all(tmp_path, ["a"])
    JournalWriter(tmp_path).open().close()  # creates seg-1, writes nothing
    with JournalWriter(tmp_path) as w:  # finds seg-1 empty: removes it, reuses the name
        assert w.torn_tail is None
        assert w.append_frame(1, "b") == 1
    assert [p.name for p in segments(tmp_path)] == ["seg-000000000000.jnl", "seg-000000000001.jnl"]
    assert frames_of(list(read_records(tmp_path))) == ["a", "b"]


@pytest.mark.parametrize("damage", ["cut", "garbage"])
def test_torn_tail_is_reported_and_ignored(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    frames = [f"frame-{i}" * 10 for i in range(5)]
    write_all(tmp_path, frames)
    (seg,) = segments(tmp_path)
    size = seg.stat().st_size
    last_start = size - (HEADER_SIZE + len(frames[-1]))
    if damage == "cut":  # kill -9 in the middle of the last record
        os.truncate(seg, last_start + 20)
        kept, offset, ignored = frames[:-1], last_start, 20
    else:  # a crash left junk after the last complete record
        with open(seg, "ab") as f:
            f.write(b"\x4b\x4a\x01junk")
        kept, offset, ignored = frames, size, 7
    damaged = snapshot([seg])
    with JournalWriter(tmp_path) as w:
        assert w.torn_tail is not None
        assert (w.torn_tail.segment, w.torn_tail.offset) == (seg, offset)
        assert w.torn_tail.bytes_ignored == ignored
        assert w.torn_tail.moved_to is None
        assert w.append_frame(1, "after") == len(kept)
    assert snapshot([seg]) == damaged  # nothing repaired in place
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recorder.store.journal"):
        got = list(read_records(tmp_path))
    assert frames_of(got) == [*kept, "after"]
    assert [r.fno for r in got] == list(range(len(kept) + 1))
    assert f"offset {offset}" in caplog.text


def test_segment_without_a_complete_record_is_moved_aside(tmp_path: Path) -> None:
    write_all(tmp_path, ["a", "b"])
    write_all(tmp_path, ["c" * 100])
    second = tmp_path / "seg-000000000002.jnl"
    os.truncate(second, 50)
    with JournalWriter(tmp_path) as w:
        assert w.torn_tail is not None
        assert w.torn_tail.moved_to == tmp_path / "seg-000000000002.jnl.torn"
        assert w.torn_tail.bytes_ignored == 50
        assert w.last_fno == 1
        assert w.append_frame(1, "d") == 2
    assert (tmp_path / "seg-000000000002.jnl.torn").stat().st_size == 50
    assert frames_of(list(read_records(tmp_path))) == ["a", "b", "d"]


def test_corrupt_crc_stops_that_segment_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [f"{i:04d}" * 8 for i in range(12)]  # 32-byte payloads, 64-byte records
    write_all(tmp_path, frames, segment_bytes=4 * 64)
    first = segments(tmp_path)[0]
    data = bytearray(first.read_bytes())
    data[64 + HEADER_SIZE + 3] ^= 0x01  # payload of record 1
    first.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="recorder.store.journal"):
        got = list(read_records(tmp_path))
    assert [r.fno for r in got] == [0, *range(4, 12)]
    assert "crc mismatch in record 1" in caplog.text
    assert "starts at fno 4 where 1 was expected" in caplog.text


# ------------------------------------------------------------------------- segments


def test_segments_roll_at_segment_bytes(tmp_path: Path) -> None:
    frames: list[Frame] = [*["x" * 100] * 7, b"y" * 1000, "z"]
    write_all(tmp_path, frames, segment_bytes=300)
    segs = segments(tmp_path)
    firsts = [int(p.name[4:16]) for p in segs]
    assert firsts == [0, 2, 4, 6, 7, 8]  # two 132-byte records fit in 300; the big one alone
    assert all(p.stat().st_size <= 300 for p in segs if p.name != "seg-000000000007.jnl")
    assert frames_of(list(read_records(tmp_path))) == frames


def test_start_fno_skips_earlier_segments(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [str(i) for i in range(10)]
    write_all(tmp_path, frames, segment_bytes=3 * (HEADER_SIZE + 1))
    for start in range(12):
        assert frames_of(list(read_records(tmp_path, start))) == frames[start:]
    # Segments before the start are not even opened: ruin the first two, no warning.
    for seg in segments(tmp_path)[:2]:
        seg.write_bytes(b"\xff" * seg.stat().st_size)
    with caplog.at_level(logging.WARNING, logger="recorder.store.journal"):
        assert frames_of(list(read_records(tmp_path, 7))) == frames[7:]
    assert caplog.text == ""
    assert list(read_records(tmp_path / "missing")) == []


# ------------------------------------------------------------------------- tail


def test_tail_follows_appends_flushes_and_rollover(tmp_path: Path) -> None:
    delivered: list[Record] = []
    sent: list[Frame] = []
    with JournalWriter(tmp_path, segment_bytes=500).open() as w, JournalTail(tmp_path, 0) as tail:
        assert tail.read_available() == []
        for batch in range(30):
            for i in range(batch % 7):
                raw: Frame = f"b{batch}-{i}" * (batch % 5) if i % 2 else bytes([batch, i])
                w.append_frame(batch, raw)
                sent.append(raw)
            # Unflushed records stay invisible, except those a rollover already flushed.
            delivered += tail.read_available()
            assert frames_of(delivered) == sent[: len(delivered)]
            w.flush()
            got = tail.read_available(max_records=4)
            while got:
                delivered += got
                got = tail.read_available(max_records=4)
            assert frames_of(delivered) == sent
    assert len(segments(tmp_path)) > 5
    assert [r.fno for r in delivered] == list(range(len(sent)))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), start=st.integers(0, 25))
def test_tail_sees_partly_written_records_exactly_once(seed: int, start: int) -> None:
    """Replay a finished journal into a new directory a few bytes at a time, as a slow
    writer would, and poll the tail between every write."""
    rnd = random.Random(seed)
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "src", Path(d) / "dst"
        dst.mkdir()
        frames: list[Frame] = [rnd.randbytes(rnd.randrange(0, 90)) for _ in range(25)]
        write_all(src, frames, segment_bytes=256)
        delivered: list[Record] = []
        with JournalTail(dst, start) as tail:
            for seg in segments(src):
                data = seg.read_bytes()
                with open(dst / seg.name, "xb", buffering=0) as f:
                    pos = 0
                    while pos < len(data):
                        n = rnd.choice([1, 2, 7, HEADER_SIZE // 2, 40, 300])
                        f.write(data[pos : pos + n])
                        pos += n
                        delivered += tail.read_available(max_records=rnd.choice([1, 3, 100]))
            while more := tail.read_available():
                delivered += more
    assert [r.fno for r in delivered] == list(range(start, 25))
    assert frames_of(delivered) == frames[start:]


def test_tail_in_another_thread_gets_every_record_once(tmp_path: Path) -> None:
    n = 20_000
    got: list[Record] = []
    stop = threading.Event()
    errors: list[Exception] = []

    def follow() -> None:
        try:
            with JournalTail(tmp_path, 0) as tail:
                while len(got) < n and not stop.is_set():
                    got.extend(tail.read_available(500))
        except Exception as exc:  # handed to the main thread's assertion
            errors.append(exc)

    with JournalWriter(tmp_path, segment_bytes=64 << 10) as w:
        follower = threading.Thread(target=follow)
        follower.start()
        for i in range(n):
            w.append_frame(i, str(i) * (i % 50))
            if i % 37 == 0:
                w.flush()
        w.flush()
        follower.join(timeout=60)
        stop.set()
    assert errors == []
    assert [r.fno for r in got] == list(range(n))
    assert all(r.frame() == str(r.fno) * (r.fno % 50) for r in got)
    assert len(segments(tmp_path)) > 10


def test_tail_delivers_across_restart_with_torn_tail(tmp_path: Path) -> None:
    write_all(tmp_path, ["a", "b", "c"])
    (seg,) = segments(tmp_path)
    os.truncate(seg, seg.stat().st_size - 1)
    delivered: list[Record] = []
    with JournalWriter(tmp_path) as w, JournalTail(tmp_path, 0) as tail:
        delivered += tail.read_available()  # a, b; the torn "c" waits for a successor
        w.append_frame(5, "d")
        w.flush()
        delivered += tail.read_available()
        delivered += tail.read_available()
    assert [(r.fno, r.frame()) for r in delivered] == [(0, "a"), (1, "b"), (2, "d")]


def test_tail_raises_on_corruption_in_the_live_segment(tmp_path: Path) -> None:
    with JournalWriter(tmp_path) as w, JournalTail(tmp_path, 0) as tail:
        w.append_frame(1, "abc")
        assert tail.read_available() == []  # not flushed yet
        w.flush()
        (seg,) = segments(tmp_path)
        with open(seg, "ab") as f:  # something other than our writer scribbled here
            f.write(b"\x00" * HEADER_SIZE)
        assert frames_of(tail.read_available()) == ["abc"]
        with pytest.raises(JournalError, match="corrupt"):
            tail.read_available()


# ------------------------------------------------------------------------- lock, fsync, errors


def test_second_writer_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    with JournalWriter(tmp_path) as first:
        first.append_frame(1, "a")
        with pytest.raises(JournalError, match="--writer-id"):
            JournalWriter(tmp_path).open()
        first.append_frame(2, "b")
    with JournalWriter(tmp_path) as again:  # released on close
        assert again.last_fno == 1
    assert frames_of(list(read_records(tmp_path))) == ["a", "b"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_appends_fsync_every_interval_by_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    w = JournalWriter(tmp_path, fsync_interval_s=1.0, clock=clock).open()
    counts = []
    for t in [0.1, 0.5, 0.99, 1.0, 1.5, 1.99, 2.0, 2.0, 10.0]:
        clock.now = t
        w.append_frame(int(t * 1e9), "x")
        counts.append(w.syncs)
    assert counts == [0, 0, 0, 1, 1, 1, 2, 2, 3]
    w.flush()
    assert w.syncs == 3
    w.close()
    assert w.syncs == 4
    w.close()
    assert w.syncs == 4


def _dev_full(path: Path) -> BinaryIO:
    return open("/dev/full", "wb", buffering=0)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_stops_the_writer_loudly(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path, opener=_dev_full).open()
    assert w.append_frame(1, "buffered") == 0  # appends only buffer
    with pytest.raises(JournalError, match="No space left") as info:
        w.flush()
    assert "seg-000000000000.jnl" in str(info.value)
    with pytest.raises(JournalError, match="No space left"):
        w.append_frame(2, "refused")
    with pytest.raises(JournalError):
        w.flush()
    assert w.last_fno == 0
    w.close()  # releases the lock without raising again
    JournalWriter(tmp_path).open().close()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_inside_a_large_append(tmp_path: Path) -> None:
    with JournalWriter(tmp_path, opener=_dev_full) as w:
        with pytest.raises(JournalError, match="No space left"):
            w.append_frame(1, b"x" * (2 << 20))
        with pytest.raises(JournalError, match="stopped after an earlier error"):
            w.append_event(2, {"kind": "disconnect"})


# ------------------------------------------------------------------------- checkpoint, writers


def test_checkpoint_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    assert read_checkpoint(tmp_path) == -1
    write_checkpoint(tmp_path, 41)
    assert read_checkpoint(tmp_path) == 41
    inode = (tmp_path / "CHECKPOINT").stat().st_ino
    write_checkpoint(tmp_path, 1_000_000_000_000)
    assert read_checkpoint(tmp_path) == 1_000_000_000_000
    assert (tmp_path / "CHECKPOINT").stat().st_ino != inode  # replaced, not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CHECKPOINT"]
    (tmp_path / "CHECKPOINT").write_bytes(b"garbage")
    with pytest.raises(JournalError, match="damaged"):
        read_checkpoint(tmp_path)
    with pytest.raises(JournalError, match="cannot write journal checkpoint"):
        write_checkpoint(tmp_path / "missing", 1)


def test_list_writers(tmp_path: Path) -> None:
    journal = tmp_path / "_journal"
    assert list_writers(journal) == []
    write_all(journal / "host-b", ["x"])
    write_all(journal / "host-a", ["y"])
    (journal / "stray-file").write_bytes(b"")
    assert list_writers(journal) == ["host-a", "host-b"]


def test_checkpoint_carries_the_reader_state(tmp_path: Path) -> None:
    state = {"trading_day": 20654, "continuity": [["005930", "KRX", 1200, 5]]}
    write_checkpoint(tmp_path, 41, state)
    assert read_checkpoint_state(tmp_path) == (41, state)
    assert read_checkpoint(tmp_path) == 41
    write_checkpoint(tmp_path, 42)
    assert read_checkpoint_state(tmp_path) == (42, None)
