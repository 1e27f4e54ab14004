"""Frames and session events → decoder → sink: the one path every producer of rows uses.

Live capture (following the journal), crash recovery, ``recorder rebuild`` and
``recorder ingest`` all feed a :class:`Pipeline`, so the tables they produce from the same
frames are identical (docs/architecture.md, invariant 4).

What becomes a row:

- REAL frames → ``trades`` / ``orderbook`` rows, or ``rejects`` rows for what does not decode;
- frames that are not valid JSON objects with a ``trnm``, binary frames and frames of a kind
  the recorder never asked for → ``rejects`` rows, whole;
- LOGIN / PING / REG / REMOVE / SYSTEM frames → nothing (the journal keeps them; the
  session already acted on them and journaled any consequence as an event);
- session events (disconnects, refused LOGIN or REG, kicks, restarts) → ``gaps`` rows.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from recorder.kiwoom.decode import SEQ_SHIFT, Decoder, TableColumns, raw_text
from recorder.kiwoom.decode_arrow import decode_block, decode_frames
from recorder.kiwoom.frames import FrameKind, classify
from recorder.kiwoom.time import trading_day
from recorder.store.continuity import ContinuityChecker
from recorder.store.journal import EVENT, TEXT, TRADING_DAY
from recorder.store.sink import Gap, Sink

log = logging.getLogger(__name__)

#: Session event kinds that are holes in the record (everything else is informational).
GAP_KINDS = frozenset(
    {"disconnect", "login_failed", "reg_rejected", "kicked", "restart", "stale", "continuity"}
)

# Events after which cumulative volumes start afresh: a new connection, a restart, a new day.
_RESETS = frozenset({"connected", "restart", TRADING_DAY})

_CONTINUITY_COLUMNS = ("seq", "symbol", "venue", "cum_volume", "volume", "ts")
_CONTINUITY_TYPES = {
    "seq": pa.int64(),
    "symbol": pa.string(),
    "venue": pa.string(),
    "cum_volume": pa.int64(),
    "volume": pa.int64(),
    "ts": pa.int64(),
}

_IGNORED = frozenset({FrameKind.LOGIN, FrameKind.PING, FrameKind.REG, FrameKind.REMOVE, FrameKind.SYSTEM})


@dataclass(slots=True)
class PipelineStats:
    frames: int = 0
    real_frames: int = 0
    control_frames: int = 0
    events: int = 0
    rows: int = 0
    trades: int = 0
    orderbook: int = 0
    rejects: int = 0
    gaps: int = 0


class Pipeline:
    """Decodes frames in batches and hands the rows to a :class:`~recorder.store.sink.Sink`.

    Args:
        sink: where rows go.
        trading_day: pin the KST trading date (days since the epoch) of every ``ts``; None
            takes it from each frame's receive time.
        batch: REAL frames per decoding batch. Batches of at least ``arrow_min`` frames are
            decoded by :mod:`recorder.kiwoom.decode_arrow` (Arrow kernels, both cores), smaller ones
            and the frames Arrow leaves aside by the reference :class:`~recorder.kiwoom.decode.Decoder`;
            the two agree row for row (a property test checks), so the choice is only speed.
    """

    def __init__(
        self, sink: Sink, *, trading_day: int | None = None, batch: int = 10_000, arrow_min: int = 1000
    ) -> None:
        self.sink = sink
        self.decoder = Decoder(trading_day=trading_day)
        self.batch = batch
        self.arrow_min = arrow_min
        self.stats = PipelineStats()
        self.gaps_by_kind: dict[str, int] = {}  # the gap rows of ``stats.gaps``, per kind
        self.continuity = ContinuityChecker()
        self.last_fno = -1
        self._frames: list[bytes] = []
        self._recv: list[int] = []
        self._fnos: list[int] = []
        self._extra_rejects: list[tuple[int, int, str, str]] = []

    def feed_frame(self, raw: str | bytes, recv_ts_ns: int, fno: int) -> None:
        """One frame as read from the socket (text or binary), with its journal number."""
        self.stats.frames += 1
        self.last_fno = fno
        if isinstance(raw, bytes) and not _is_utf8(raw):
            self._reject(recv_ts_ns, fno, "binary frame that is not UTF-8 text", raw_text(raw))
            return
        msg = classify(raw)
        if msg.kind is FrameKind.REAL:
            self.stats.real_frames += 1
            self._frames.append(raw if isinstance(raw, bytes) else raw.encode())
            self._recv.append(recv_ts_ns)
            self._fnos.append(fno)
            if len(self._frames) >= self.batch:
                self.drain()
        elif msg.kind in _IGNORED:
            self.stats.control_frames += 1
        elif msg.kind is FrameKind.INVALID:
            self._reject(recv_ts_ns, fno, msg.error or "invalid frame", raw_text(raw))
        else:
            trnm = str((msg.body or {}).get("trnm"))[:20]
            self._reject(recv_ts_ns, fno, f"unexpected frame trnm {trnm!r}", raw_text(raw))

    def feed_real_frames(self, frames: list[bytes], recv_ts_ns: list[int], fnos: list[int]) -> None:
        """Frames that should all be REAL (NDJSON ingest), in bulk, without classifying each.

        Anything that is not a decodable REAL frame becomes a ``rejects`` row with the reason,
        as in :meth:`feed_frame`, except that a control frame (PING, LOGIN, ...) is rejected
        too rather than ignored: it has no business in a file of market data.
        """
        self.stats.frames += len(frames)
        self.stats.real_frames += len(frames)
        self.last_fno = fnos[-1] if fnos else self.last_fno
        self._frames.extend(frames)
        self._recv.extend(recv_ts_ns)
        self._fnos.extend(fnos)
        if len(self._frames) >= self.batch:
            self.drain()

    def feed_block(self, buf: pa.Buffer | bytes, parsed: pa.Table, first_fno: int, recv_ts_ns: int) -> None:
        """A block of NDJSON REAL frames that :func:`~recorder.kiwoom.decode_arrow.parse_block` parsed.

        Line ``i`` of ``buf`` is frame ``first_fno + i``; the outcome is the same as
        :meth:`feed_real_frames` of its lines, without splitting them out unless some
        need the reference decoder.
        """
        self.drain()  # what is pending comes first, in frame order
        n = parsed.num_rows
        self.stats.frames += n
        self.stats.real_frames += n
        self.last_fno = first_fno + n - 1
        # Ingest's parser threads keep the cores busy: decode on this thread alone.
        got = decode_block(
            parsed, first_fno, recv_ts_ns, trading_day=self.decoder.trading_day, parallel=False
        )
        if got.fallback:
            lines = bytes(buf).split(b"\n")
            for i in got.fallback:
                self.decoder.add(lines[i], recv_ts_ns, first_fno + i)
        self._emit(got.tables)

    def feed_event(self, event: dict[str, Any], recv_ts_ns: int, fno: int) -> None:
        """One journaled session event; gap kinds become ``gaps`` rows."""
        self.stats.events += 1
        self.last_fno = fno
        kind = str(event.get("kind", ""))
        if kind in _RESETS:
            self.drain()
            self.continuity.reset()
        if kind == TRADING_DAY:
            # A capture pinned to a trading date (replay of a recorded day): frames after
            # this event take their date from it, in capture, recovery and rebuild alike.
            self.drain()
            date = event.get("date")
            self.decoder.trading_day = trading_day(str(date)) if date else None
            return
        if kind not in GAP_KINDS:
            return
        if kind == "kicked" and event.get("end_ns") is None:
            return  # the notice at the kick; the gap itself follows when the session resubscribes
        start = int(event.get("start_ns") or recv_ts_ns)
        end = event.get("end_ns")
        gap = Gap(
            start,
            int(end) if end is not None else None,
            kind,
            str(event.get("detail", "")),
            tuple(event.get("symbols") or ()),
            fno << SEQ_SHIFT,
        )
        self.drain()  # keep rows in journal order relative to the gap
        self.sink.add_gaps([gap])
        self.stats.gaps += 1
        self.gaps_by_kind[kind] = self.gaps_by_kind.get(kind, 0) + 1

    def feed_records(self, records: Iterable[Any]) -> None:
        """Journal records (:class:`recorder.store.journal.Record`) in order."""
        for rec in records:
            if rec.kind == EVENT:
                self.feed_event(rec.event(), rec.recv_ts_ns, rec.fno)
            elif rec.kind == TEXT:
                self.feed_frame(rec.payload, rec.recv_ts_ns, rec.fno)  # UTF-8 bytes, as received
            else:
                self.feed_frame(rec.frame(), rec.recv_ts_ns, rec.fno)

    @property
    def pending_frames(self) -> int:
        """REAL frames fed but not decoded yet (they wait for a full batch or :meth:`drain`)."""
        return len(self._frames)

    def drain(self) -> None:
        """Decode what is pending and pass it to the sink."""
        self._emit(self._decode_pending())

    def _emit(self, arrow: dict[str, pa.Table]) -> None:
        """Pass Arrow-decoded rows and whatever the reference decoder holds to the sink."""
        res = self.decoder.finish()
        if self._extra_rejects:
            res.rejects.extend(self._extra_rejects)
            self._extra_rejects = []
        self._check_continuity(arrow.get("trades"), res.tables.get("trades"))
        for table, t in arrow.items():
            self._count(table, t.num_rows)
        for table, cols in res.tables.items():
            self._count(table, cols.n)
        self.stats.rejects += len(res.rejects)
        if arrow:
            self.sink.add_tables(arrow)
        if res.tables or res.rejects:
            self.sink.add(res)

    def _decode_pending(self) -> dict[str, pa.Table]:
        """Arrow-decode a large batch; everything else goes to the reference decoder."""
        frames, recv, fnos = self._frames, self._recv, self._fnos
        self._frames, self._recv, self._fnos = [], [], []
        if len(frames) < self.arrow_min:
            for raw, ts, fno in zip(frames, recv, fnos, strict=True):
                self.decoder.add(raw, ts, fno)
            return {}
        got = decode_frames(frames, recv, fnos, trading_day=self.decoder.trading_day)
        for i in got.fallback:
            self.decoder.add(frames[i], recv[i], fnos[i])
        return got.tables

    def _check_continuity(self, arrow: pa.Table | None, cols: TableColumns | None) -> None:
        """Cumulative-volume continuity over this batch's trades, whichever decoder made them."""
        parts = []
        if arrow is not None and arrow.num_rows:
            # ts is stored as µs; the checker speaks epoch ns like the decoder.
            ts = pc.multiply(arrow.column("ts").cast(pa.int64()), 1000)
            parts.append(arrow.select(_CONTINUITY_COLUMNS[:-1]).append_column("ts", ts))
        if cols is not None and cols.n:
            parts.append(
                pa.table(
                    {
                        name: pa.array(cols.columns[name], _CONTINUITY_TYPES[name])
                        for name in _CONTINUITY_COLUMNS
                    }
                )
            )
        if parts:
            both = pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
            breaks = self.continuity.check(both)
            if breaks:
                self.sink.add_gaps(breaks)
                self.stats.gaps += len(breaks)
                for b in breaks:
                    self.gaps_by_kind[b.kind] = self.gaps_by_kind.get(b.kind, 0) + 1

    def _count(self, table: str, n: int) -> None:
        setattr(self.stats, table, getattr(self.stats, table) + n)
        self.stats.rows += n

    def state(self) -> dict[str, Any]:
        """What a pipeline needs to continue exactly after :attr:`last_fno` (drain first)."""
        return {"trading_day": self.decoder.trading_day, "continuity": self.continuity.state()}

    def restore(self, state: dict[str, Any] | None) -> None:
        """Continue from a :meth:`state` saved in a checkpoint (None: start afresh)."""
        if state:
            self.decoder.trading_day = state.get("trading_day")
            self.continuity.restore(state.get("continuity") or [])

    def checkpoint_fno(self) -> int:
        """Every frame numbered at or below this has all its rows in part files (drains first)."""
        self.drain()
        pending = self.sink.pending_first_fno
        return min(self.last_fno, pending - 1) if pending is not None else self.last_fno

    def _reject(self, recv_ts_ns: int, fno: int, reason: str, raw: str) -> None:
        self._extra_rejects.append((recv_ts_ns, fno << SEQ_SHIFT, reason, raw))
        if len(self._extra_rejects) >= self.batch:
            self.drain()


def setup_batch_process() -> str:
    """Set up a batch command's process (ingest, rebuild) for throughput; returns the name of
    Arrow's memory pool.

    - Arrow's default memory pool becomes jemalloc (or, where pyarrow lacks it, the system
      allocator). These commands' Arrow buffers come and go by the hundred megabytes (JSON
      parsing, sorting, taking), and under mimalloc, Arrow's default, the kernel zeroed fresh
      pages for them all run long: an ingest of 150k entries spent 1.6-2.0 s in the kernel
      against 0.5-1.1 s under jemalloc or the system allocator, and took 0.75-0.9x the wall
      time there (measured at 200 and 2,000 symbols). The live decoder keeps the default:
      its memory bound was measured with it.
    - pyarrow is told that pandas is absent before it first looks: it imports pandas
      (0.2-0.3 s, on the thread that decodes) only to ask whether a list it converts is a
      pandas object, which ours never are. pyarrow still imports pandas if anything asks it
      for a DataFrame.
    """
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc
        pa.set_memory_pool(pa.system_memory_pool())
    if "pandas" not in sys.modules:
        hide = _NoPandas()
        sys.meta_path.insert(0, hide)
        try:
            pa.array([0])  # pyarrow's first look for pandas, which it notes as absent
        finally:
            sys.meta_path.remove(hide)
    return pa.default_memory_pool().backend_name


class _NoPandas(importlib.abc.MetaPathFinder):
    """An import hook under which ``import pandas`` fails as if it were not installed."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname == "pandas" or fullname.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
