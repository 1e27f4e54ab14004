"""``recorder ingest``: a file of raw REAL frames (NDJSON, one per line) → the store.

The file is read in blocks of whole lines from a memory map; threads parse the next blocks
(:func:`recorder.kiwoom.decode_arrow.parse_block`) while the current one goes through the
capture's :class:`~recorder.store.pipeline.Pipeline`, so ingested rows are decoded exactly as
captured ones. A frame's number is its line number, so a reject points at its line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from recorder.errors import ConfigError
from recorder.kiwoom.decode_arrow import parse_block
from recorder.kiwoom.time import KST, trading_day
from recorder.store.inventory import scan
from recorder.store.pipeline import Pipeline, PipelineStats
from recorder.store.sink import Sink

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

log = logging.getLogger(__name__)

_NL = ord("\n")
# Threads parsing blocks, one block each. Each block in flight holds about 60 MB once
# parsed, hence the cap: memory stays bounded on machines with many cores.
_PARSERS = min(os.cpu_count() or 1, 8)
_LOOKAHEAD = _PARSERS + 2  # blocks in flight: the one being decoded and those parsed ahead
# The first block is small, so that decoding starts soon after the parsers do.
_FIRST_BLOCK = 2 << 20


@dataclass(slots=True)
class IngestResult:
    lines: int
    stats: PipelineStats
    files: int
    seconds: float


def _ndjson_blocks(
    path: Path, block_bytes: int = 16 << 20, *, first_bytes: int | None = None
) -> Iterator[pa.Buffer]:
    """The file in blocks of whole lines, each ending with ``\\n``, zero-copy from a memory map;
    the first of about ``first_bytes`` (default ``block_bytes``).

    A last line without its newline gets one (that block only is copied), so every block
    can take the fast path of :func:`recorder.kiwoom.decode_arrow.parse_block`.
    """
    if path.stat().st_size == 0:
        return
    with pa.memory_map(str(path)) as mm:
        whole = mm.read_buffer()  # buffers sliced from it keep the mapping alive
    a = np.frombuffer(whole, np.uint8)
    pos, size = 0, len(a)
    step = first_bytes or block_bytes
    while pos < size:
        end = min(pos + step, size)
        step = block_bytes
        cut = _after_last_newline(a, pos, end)
        if cut == pos:  # no newline in a whole block: one line longer than a block
            cut = _after_first_newline(a, end, size)
        if cut < 0:  # the rest of the file is one line without its newline
            yield pa.py_buffer(whole[pos:].to_pybytes() + b"\n")
            return
        yield whole.slice(pos, cut - pos)
        pos = cut


_STEP = 1 << 16  # bytes searched for a newline at a time


def _after_last_newline(a: np.ndarray, start: int, end: int) -> int:
    """The index after the last ``\\n`` in ``a[start:end]``, or ``start`` if there is none."""
    hi = end
    while hi > start:
        lo = max(start, hi - _STEP)
        hits = np.flatnonzero(a[lo:hi] == _NL)
        if len(hits):
            return lo + int(hits[-1]) + 1
        hi = lo
    return start


def _after_first_newline(a: np.ndarray, start: int, end: int) -> int:
    """The index after the first ``\\n`` in ``a[start:end]``, or -1 if there is none."""
    for lo in range(start, end, _STEP):
        hits = np.flatnonzero(a[lo : min(lo + _STEP, end)] == _NL)
        if len(hits):
            return lo + int(hits[0]) + 1
    return -1


def _numbered(lines: list[bytes], before: int) -> tuple[list[int], list[bytes]]:
    stripped = [line.strip() for line in lines]
    numbers = [before + i + 1 for i, line in enumerate(stripped) if line]
    return numbers, [line for line in stripped if line]


def ingest_ndjson(
    path: Path,
    data_dir: Path | S3Store,
    *,
    date: str | None = None,
    writer: str | None = None,
    block_bytes: int = 16 << 20,
    journal_dir: Path | None = None,
) -> IngestResult:
    """Raw REAL frames, one JSON object per line, → the store through the capture's decoder.

    Args:
        path: the NDJSON file.
        data_dir: the store: a folder, or an ``s3://`` store
            (:class:`~recorder.store.objstore.S3Store`): then the part files are written into
            the local store ``journal_dir`` (default
            :func:`~recorder.store.objstore.default_local_dir`) and uploaded when complete.
        date: the KST trading date (``YYYY-MM-DD``) of the frames' HHMMSS times, under
            which their rows and rejects are filed; default: today in KST.
        writer: part-file writer id; default ``ingest-<hash of the file>``, so ingesting the
            same file twice is refused instead of duplicating rows.
        block_bytes: the file is decoded in blocks of about this size (whole lines).

    Raises:
        ConfigError: ``date`` is not a date, or the file was already ingested into this store.
        StoreError: a part file could not be written.
    """
    started = time.perf_counter()
    day = _ingest_day(date)
    writer = writer or f"ingest-{_file_digest(path)}"
    if not isinstance(data_dir, Path):
        return _ingest_remote(path, data_dir, day, writer, block_bytes, journal_dir, started)
    if journal_dir is not None:
        raise ConfigError("--journal-dir is for an s3:// --data-dir; a local store is written in place")
    if _writer_has_parts(data_dir, writer):
        raise ConfigError(f"{path} was already ingested into {data_dir} (writer {writer}); nothing done")
    recv_ts = time.time_ns()
    sink = Sink(data_dir, writer, rejects_date=day.isoformat())
    pipe = Pipeline(sink, trading_day=trading_day(day))
    lines = before = 0
    # The next blocks are parsed (NumPy and Arrow, GIL released) while this one is decoded.
    with ThreadPoolExecutor(max_workers=_PARSERS, thread_name_prefix="ingest-parse") as pool:
        ahead: deque[tuple[pa.Buffer, Future[tuple[pa.Table | None, int]]]] = deque()
        blocks = _ndjson_blocks(path, block_bytes, first_bytes=min(block_bytes, _FIRST_BLOCK))
        prepared = False
        while True:
            while len(ahead) < _LOOKAHEAD and (block := next(blocks, None)) is not None:
                ahead.append((block, pool.submit(parse_block, block, threads=False)))
            if not ahead:
                break
            if not prepared:  # while the first blocks are parsed
                sink.prepare()
                prepared = True
            block, parsed = ahead.popleft()
            table, n = parsed.result()
            # Frame numbers are line numbers, so rejects point at the line.
            if table is not None:
                pipe.feed_block(block, table, before + 1, recv_ts)
                lines += n
            else:
                # Every line goes to the decoder as a REAL frame: it checks each one and
                # rejects, whole and with the reason, any line that is not (ingest takes
                # REAL frames only).
                numbers, kept = _numbered(bytes(block).split(b"\n")[:n], before)
                pipe.feed_real_frames(kept, [recv_ts] * len(kept), numbers)
                lines += len(kept)
            before += n
    pipe.drain()
    sink.close()
    return IngestResult(lines, pipe.stats, sink.files_written, time.perf_counter() - started)


def _ingest_remote(
    path: Path,
    store: S3Store,
    day: dt.date,
    writer: str,
    block_bytes: int,
    journal_dir: Path | None,
    started: float,
) -> IngestResult:
    """Ingest into the local store of ``store``, then upload every part file written."""
    from recorder.store import objstore

    _, local = objstore.open_store(store, journal_dir)  # leftovers of a crash go up first
    assert local is not None
    if any(p.writer == writer for p in objstore.scan(store, date=day.isoformat()).parts):
        raise ConfigError(f"{path} was already ingested into {store} (writer {writer}); nothing done")
    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    res = ingest_ndjson(path, local, date=day.isoformat(), writer=writer, block_bytes=block_bytes)
    objstore.publish(store, local, check_existing=False, tidy=True)
    res.seconds = time.perf_counter() - started
    return res


def _ingest_day(date: str | None) -> dt.date:
    if date is None:
        return dt.datetime.now(KST).date()
    try:
        return dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ConfigError(f"{date!r} is not a date (YYYY-MM-DD)") from exc


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=6)
    st = path.stat()
    h.update(f"{st.st_size}".encode())
    with open(path, "rb") as f:
        h.update(f.read(1 << 20))
    return h.hexdigest()


def _writer_has_parts(data_dir: Path, writer: str) -> bool:
    return any(p.writer == writer for p in scan(data_dir).parts)
