"""Recorded rows back into REAL frames: NDJSON lines and a feed for the embedded venue.

Both write what :func:`recorder.kiwoom.frames.encode_entry` / :func:`~recorder.kiwoom.frames.encode_frame`
write (the inverse of the decoder, which restores Kiwoom's price-sign conventions), so a
recorder that ingests or captures the output rebuilds the same tables (all columns but
``recv_ts`` and ``seq``: the round-trip invariant). They write it in bulk
(:mod:`recorder.replay.scan`, :mod:`recorder.replay.encode`): DuckDB reads, orders and
encodes whole selections; a test holds the text byte-identical to the per-row encoder's.
The served entries carry their ``values`` as JSON text already (``orjson.Fragment``), which
the venue's ``orjson.dumps`` of a frame writes as is.

:class:`RecordedFeed` implements the venue's ``Feed`` protocol and its optional hooks
(:class:`recorder.sim.venue.FeedHooks`):

- the replay clock starts when the first client has finished registering: at once when a
  connection's REGs cover every recorded (item, type) pair, else ``settle_s`` after its
  last REG (Kiwoom clients send no "done" signal), so a recorder misses nothing;
- entries are due when their recorded ``recv_ts`` is reached at ``speed`` (None: at once),
  so holes in the recording are silences as long as the hole divided by the speed;
- backpressure: a step never queues more than the room left below half of the venue's
  ``send_queue_max`` on the fullest connection, so a replay at full speed cannot overrun a
  client (the venue would drop it); the replay lags instead;
- the files are read and entries encoded in a worker thread, ahead of the clock, so the
  venue's event loop never waits on disk or on encoding a large window;
- when the recording is exhausted the venue keeps serving (PINGs, silence);
  :meth:`RecordedFeed.wait_replayed` returns once every client has read everything.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recorder.errors import ConfigError
from recorder.kiwoom.decode import MAX_ENTRIES, SEQ_SHIFT
from recorder.kiwoom.fields import TABLE_TYPES
from recorder.kiwoom.frames import encode_frame
from recorder.kiwoom.items import VENUE_SUFFIX
from recorder.kiwoom.time import NS
from recorder.replay.encode import frame_bounds, ndjson_lines, text_bytes, text_offsets
from recorder.replay.read import Dateish, Partition, Selection, partitions, reading, select
from recorder.replay.rows import Pacer, ReplayRow
from recorder.replay.scan import Scan
from recorder.sim.symbols import symbol_info

if TYPE_CHECKING:
    from recorder.sim.venue import Venue

__all__ = [
    "Inventory",
    "NdjsonResult",
    "RecordedFeed",
    "inventory",
    "iter_frame_lines",
    "iter_frames",
    "scan_inventory",
    "write_ndjson",
]

log = logging.getLogger(__name__)

_END = object()
_CHUNK = 8192  # entries handed to the venue's side at a time


# --------------------------------------------------------------------------- NDJSON


def iter_frames(rows: Iterable[ReplayRow]) -> Iterator[tuple[int, str, int]]:
    """Rows → ``(recv_ts, REAL frame, entries)``.

    Consecutive rows that arrived in one frame (same ``recv_ts`` and journal frame
    ``seq >> 16``) share a frame again, so the output resembles what was received; a frame
    whose entries the exchange-time order separated comes out as several frames.
    """
    group: list[ReplayRow] = []
    key = (0, 0)
    for r in rows:
        k = (r.row[1], r.row[2] >> SEQ_SHIFT)
        if group and (k != key or len(group) >= MAX_ENTRIES - 1):
            yield key[0], encode_frame(group), len(group)
            group = []
        key = k
        group.append(r)
    if group:
        yield key[0], encode_frame(group), len(group)


@dataclass
class NdjsonResult:
    """What :func:`write_ndjson` wrote."""

    frames: int = 0
    entries: int = 0


def write_ndjson(
    out: IO[bytes],
    sel: Selection,
    *,
    speed: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Any] = time.sleep,
    piece: int = 8192,
) -> NdjsonResult:
    """Write the selection as REAL frames, one per line (``recorder ingest`` reads it back).

    The lines are those of :func:`iter_frames` over :func:`recorder.replay.rows.iter_rows`
    with the reference encoder, byte for byte, encoded in bulk (:mod:`recorder.replay.scan`)
    and written ``piece`` entries at a time. With a ``speed``, each frame is written when it
    is due (:class:`recorder.replay.rows.Pacer`) and the output is flushed before every
    wait, so a reader downstream sees the rhythm.
    """
    pacer = Pacer(speed, clock)
    res = NdjsonResult()
    with Scan(sel) as scan:
        for lines, starts, recv in iter_frame_lines(scan, piece):
            res.frames += len(starts)
            res.entries += len(lines)
            text = text_bytes(lines)
            if speed is None:
                out.write(text)
                continue
            offsets = text_offsets(lines)
            at = 0
            for row, r in zip(starts.tolist(), recv.tolist(), strict=True):
                cut = int(offsets[row] - offsets[0])
                out.write(text[at:cut])  # the frames before this one, all there
                at = cut
                delay = pacer.wait(r * 1000)
                if delay:
                    out.flush()
                    sleep(delay)
            out.write(text[at:])
    out.flush()
    return res


def iter_frame_lines(scan: Scan, piece: int = 8192) -> Iterator[tuple[pa.Array, np.ndarray, np.ndarray]]:
    """The scan's rows as NDJSON, ``piece`` entries at a time: ``(lines, starts, recv)``.

    ``lines`` are entries with their frames' punctuation
    (:func:`~recorder.replay.encode.ndjson_lines`): back to back, the pieces are the NDJSON
    text. ``starts`` are the entries (positions in ``lines``) that begin a frame and ``recv``
    their receive times (µs). Frames group rows as :func:`iter_frames` does
    (:func:`~recorder.replay.encode.frame_bounds`); the last frame of a window waits for the
    next window, which may continue it. Pieces are small so that their memory is reused.
    """
    carry: pa.Table | None = None
    for w in itertools.chain(scan.windows(), [None]):
        t = carry if w is None else w if carry is None else pa.concat_tables([carry, w])
        if t is None or not len(t):
            continue
        recv, seq = (np.concatenate([c.to_numpy() for c in t.column(k).chunks]) for k in ("recv", "seq"))
        bounds = frame_bounds(recv, seq)
        if w is not None:
            cut = int(bounds[-2])
            carry, t, bounds = t.slice(cut), t.slice(0, cut), bounds[:-1]
            if not cut:
                continue
        first = np.zeros(len(t), bool)
        first[bounds[:-1]] = True
        last = np.zeros(len(t), bool)
        last[bounds[1:] - 1] = True
        at = 0
        for chunk in t.column("text").chunks:
            for off in range(0, len(chunk), piece):
                a, b = at + off, at + min(off + piece, len(chunk))
                starts = np.flatnonzero(first[a:b])
                yield ndjson_lines(chunk.slice(off, b - a), first[a:b], last[a:b]), starts, recv[a + starts]
            at += len(chunk)


# --------------------------------------------------------------------------- inventory


@dataclass(frozen=True)
class Inventory:
    """What a selection holds, for ka10099 and for knowing when a client has registered.

    Attributes:
        pairs: every ``(item, type)`` with recorded rows, e.g. ``("005930_NX", "0B")``.
        prev_close: code → previous close (``price - change`` of a trade), when known.
    """

    pairs: frozenset[tuple[str, str]]
    prev_close: dict[str, int]

    @property
    def items(self) -> list[str]:
        """Recorded items, by code then venue (KRX, NXT, SOR)."""
        return sorted({item for item, _ in self.pairs}, key=lambda i: (i[:6], len(i), i))

    def symbols_info(self) -> list[dict[str, Any]]:
        """ka10099 rows (§5.2) for the recorded codes: name and market from
        :mod:`recorder.sim.symbols`, ``nxtEnable`` from the data, ``lastPrice`` the
        recorded previous close when a trade gives it."""
        rows = []
        for code in dict.fromkeys(i[:6] for i in self.items):
            row = symbol_info(code).ka10099_row()
            row["nxtEnable"] = "Y" if any(i == code + "_NX" for i, _ in self.pairs) else "N"
            if code in self.prev_close:
                row["lastPrice"] = f"{self.prev_close[code]:08d}"
            rows.append(row)
        return rows


def _venues(path: Path) -> set[str]:
    with reading(path):
        pf = pq.ParquetFile(path)
        md = pf.metadata
        names = md.schema.names
        if "venue" in names and md.num_row_groups == 1:  # the statistics settle a one-venue file
            st = md.row_group(0).column(names.index("venue")).statistics
            if st is not None and st.has_min_max and st.min == st.max:
                return {st.min}
        col = pf.read(columns=["venue"]).column("venue")
    return {v for v in pc.unique(col).to_pylist() if v is not None}


def inventory(sel: Selection) -> Inventory:
    """Scan the selection's footers and ``venue`` columns (not the data) once."""
    return _inventory(partitions(sel), _venues, _prev_close)


def _inventory(
    parts: Iterable[Partition],
    venues_of: Callable[[Path], Iterable[str]],
    prev_close_of: Callable[[Path], int | None],
) -> Inventory:
    """The recorded pairs (after the venue filter) and each code's first previous close
    (of the first trades file of its first date that gives one)."""
    pairs: set[tuple[str, str]] = set()
    prev: dict[str, int] = {}
    for part in parts:
        code = TABLE_TYPES[part.table].code
        for path in part.files:
            for venue in venues_of(path):
                if part.venues is None or venue in part.venues:
                    pairs.add((part.symbol + VENUE_SUFFIX[venue], code))
        if part.table == "trades" and part.symbol not in prev:
            close = prev_close_of(part.files[0])
            if close is not None:
                prev[part.symbol] = close
    return Inventory(frozenset(pairs), prev)


def scan_inventory(scan: Scan) -> Inventory:
    """:func:`inventory` from a scan's catalog (made with ``inventory=True``): no footer read again."""
    facts = scan.file_facts()
    venues = {path: v for path, v, _ in facts}
    prev = {path: p for path, _, p in facts}
    return _inventory(scan.parts, venues.__getitem__, prev.__getitem__)


def _prev_close(path: Path) -> int | None:
    """The previous close (``price - change``) from the first trade of ``path`` that gives it."""
    with reading(path):
        first = pq.ParquetFile(path)
        if "change" not in first.schema_arrow.names:
            return None
        t = first.read_row_group(0, columns=["price", "change"]).to_pydict()
    for price, change in zip(t["price"], t["change"], strict=True):
        if price is not None and change is not None:
            return price - change  # type: ignore[no-any-return]
    return None


# --------------------------------------------------------------------------- the venue feed


class RecordedFeed:
    """A recorded selection as a venue feed (``recorder replay --serve``).

    Args:
        data_dir, start, end, symbols, types: what to replay (see :func:`recorder.replay.rows.iter_rows`).
        speed: 1 real time, 10 ten times faster, None as fast as clients read.
        settle_s: start this long after a client's last REG when its REGs do not cover
            every recorded pair (a client that wants only some symbols).
        max_step: most entries one venue step hands out.
        prefetch: read and encode in a worker thread (default); False reads inside
            :meth:`step`, deterministic for tests and fine for small selections.

    Raises:
        ConfigError: bad arguments, or nothing recorded for the selection.

    Use as a context manager (or call :meth:`close`) to stop the reader thread.
    """

    def __init__(
        self,
        data_dir: Path | str,
        start: Dateish,
        end: Dateish | None = None,
        *,
        symbols: Iterable[str] | None = None,
        types: Iterable[str] = ("0B", "0D"),
        speed: float | None = None,
        settle_s: float = 1.0,
        max_step: int = 4096,
        prefetch: bool = True,
    ) -> None:
        self.selection = select(data_dir, start, end, symbols=symbols, types=types)
        Pacer(speed)  # validates
        self.speed = speed
        self._scan = Scan(self.selection, entries=False, inventory=True)
        self.inventory = scan_inventory(self._scan)
        if not self.inventory.pairs:
            self._scan.close()
            dates = ", ".join(self.selection.dates)
            raise ConfigError(f"nothing recorded in {self.selection.data_dir} for {dates} and that selection")
        self.settle_ns = int(settle_s * NS)
        self.max_step = max_step
        self.started_ns: int | None = None
        self.start_reason = ""
        self.exhausted = False
        self.entries = 0
        self._first_recv: int | None = None
        self._last_reg_ns: int | None = None
        self._venue: Venue | None = None
        self._pending: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._done = asyncio.Event()
        self._chunks: queue.Queue[Any] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._source = self._produce()
        self._reader: threading.Thread | None = None
        if prefetch:
            self._reader = threading.Thread(target=self._read, name="replay-reader", daemon=True)
            self._reader.start()

    @property
    def items(self) -> list[str]:
        """Every recorded item (``005930``, ``005930_NX``, ...)."""
        return self.inventory.items

    def symbols_info(self) -> list[dict[str, Any]]:
        return self.inventory.symbols_info()

    # ---------------------------------------------------------------- reader thread

    def _produce(self) -> Iterator[list[tuple[int, dict[str, Any]]]]:
        """Rows → ``(recv_ts, entry)`` chunks, in replay order.

        An entry's ``values`` is its JSON text, already encoded (an ``orjson.Fragment``): the
        venue's ``orjson.dumps`` of a frame writes it as is, so frames are what
        :func:`recorder.kiwoom.frames.encode_frame` would write, without a dict per field.
        """
        meta = [(TABLE_TYPES[f.part.table], f.part.symbol) for f in self._scan.by_rank]
        kinds = [(rt.code, rt.name, symbol) for rt, symbol in meta]
        fragment = orjson.Fragment
        for w in self._scan.windows():
            for off in range(0, len(w), _CHUNK):
                c = w.slice(off, _CHUNK)
                recv = pc.multiply(c.column("recv"), 1000).to_pylist()
                fis, sfxs, vals = (c.column(k).to_pylist() for k in ("fi", "sfx", "text"))
                chunk = []
                for r, fi, sfx, v in zip(recv, fis, sfxs, vals, strict=True):
                    code, name, symbol = kinds[fi]
                    chunk.append(
                        (r, {"values": fragment(v), "type": code, "name": name, "item": symbol + sfx})
                    )
                yield chunk

    def _read(self) -> None:
        """The reader thread: chunks into a bounded queue (memory stays small), then the end."""
        try:
            for chunk in self._source:
                if not self._put(chunk):
                    return
            self._put(_END)
        except Exception as exc:  # handed to step(), which raises it in the venue
            self._put(exc)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def close(self) -> None:
        """Stop the reader thread (idempotent)."""
        self._stop.set()
        if self._reader is not None:
            if self._reader.is_alive():
                self._scan.interrupt()  # a statement reading a large group stops at once
            self._reader.join(5)
        if self._reader is None or not self._reader.is_alive():
            self._scan.close()

    def __enter__(self) -> RecordedFeed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- venue hooks

    def attach(self, venue: Venue) -> None:
        """FeedHooks: remember the venue, for its backlog and for :meth:`wait_replayed`."""
        self._venue = venue

    def on_subscribed(self, subscriptions: frozenset[tuple[str, str]], now_ns: int) -> None:
        """FeedHooks: start the clock once a client covers every recorded pair."""
        if self.started_ns is not None:
            return
        if self.inventory.pairs <= subscriptions:
            self._start(now_ns, "covered")
        else:
            self._last_reg_ns = now_ns

    def _start(self, now_ns: int, reason: str) -> None:
        """``reason``: ``covered`` (a client registered every recorded pair) or ``settled``."""
        self.started_ns, self.start_reason = now_ns, reason
        log.info("replay clock started (%s); speed %s", reason, self.speed or "max")

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        """Feed protocol: the entries due at ``now_ns``, within the backpressure budget.

        Raises:
            Exception: whatever reading the store raised (the venue stops on it).
        """
        if self.exhausted:
            return []
        if self.started_ns is None:
            if self._last_reg_ns is None or now_ns - self._last_reg_ns < self.settle_ns:
                return []
            self._start(now_ns, "settled")
        assert self.started_ns is not None
        budget = self.max_step
        if self._venue is not None:
            room = max(1, self._venue.config.send_queue_max // 2) - self._venue.backlog()
            budget = min(budget, room)
        elapsed = (now_ns - self.started_ns) * self.speed if self.speed is not None else None
        out: list[dict[str, Any]] = []
        while len(out) < budget:
            if not self._pending and not self._refill():
                break
            recv, entry = self._pending[0]
            if self._first_recv is None:
                self._first_recv = recv
            if elapsed is not None and recv - self._first_recv > elapsed:
                break
            self._pending.popleft()
            out.append(entry)
            self.entries += 1  # counted as handed out, so the end-of-replay log counts them all
        return out

    def _refill(self) -> bool:
        """Take the next chunk if it is ready; False if none is (yet, or ever)."""
        item: Any
        if self._reader is None:
            item = next(self._source, _END)
        else:
            try:
                item = self._chunks.get_nowait()
            except queue.Empty:
                return False  # the reader is behind; nothing is invented, the next step goes on
        if item is _END:
            self.exhausted = True
            self._done.set()
            log.info("replay complete: %d entries; serving silence until stopped", self.entries)
            return False
        if isinstance(item, Exception):
            raise item
        self._pending.extend(item)
        return True

    async def wait_replayed(self, timeout: float = 60.0) -> None:
        """Return once every entry is out and every client has read it (tests, tools).

        Waits for the end of the recording, for every connection's send queue to drain,
        then for a PING round trip on every connection (:meth:`recorder.sim.venue.Venue.ping_barrier`).
        """
        async with asyncio.timeout(timeout):
            await self._done.wait()
        venue = self._venue
        if venue is not None:
            await venue.wait_for(lambda: venue.backlog() == 0, timeout)
            await venue.ping_barrier(timeout)
