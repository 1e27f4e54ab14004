"""The raw-frame journal: the recorder's source of truth (docs/architecture.md, invariants 1 and 4).

Every WebSocket frame is appended with its receive time *before* it is decoded, and
session events (disconnects, refused REGs, failed LOGINs) are appended as small JSON
objects, so the Parquet tables, ``gaps`` included, can be rebuilt from the journal alone.

One writer's directory, ``<store>/_journal/<writer_id>/`` (mode 0o700)::

    LOCK                       flock'ed by the one JournalWriter using the directory
    CHECKPOINT                 b"<fno>\\n": every record with fno <= this reached Parquet
    seg-000000000000.jnl.zst   a sealed segment, compressed (zstd; :mod:`recorder.store.retention`)
    seg-000000001234.jnl       segments, named by their first fno (mode 0o600)
    seg-000000001234.jnl.torn  a segment without one valid record, moved aside at open

Readers take a compressed segment (one zstd frame of exactly the segment's bytes) as they take a
plain one, reading it forward as a stream; where a crash left both forms of one segment (the
compressed file complete, the plain one not yet removed), the plain one is read.

A segment is a bare sequence of records. A record is a 32-byte little-endian header,
then the payload::

    off size field
      0  2   magic       0x4A4B (b"KJ")
      2  1   kind        1 = text frame, 2 = binary frame, 3 = event (orjson object)
      3  1   flags       0 (reserved, e.g. for optional compression)
      4  2   session     which WebSocket session of the process received it
      6  2   reserved    0
      8  4   payload_len at most MAX_PAYLOAD
     12  8   fno         frame number: +1 per record, across segments and restarts
     20  8   recv_ts_ns  signed, nanoseconds since the Unix epoch
     28  4   crc32       zlib.crc32 of bytes 0..27 followed by the payload

The payload is the frame exactly as received (text frames as UTF-8, ``surrogatepass``
so that any Python ``str`` round-trips) or the event's orjson bytes.

Files are only created (``O_EXCL``) and appended to; nothing is truncated or rewritten.
A restart always starts a new segment at (last valid fno of the last segment) + 1, so a
torn record (kill -9 mid-write) can only sit at the end of a segment: readers stop
there, log it and go on with the next segment. A segment rolls before a record would
push it past ``segment_bytes`` (a larger record gets a segment of its own).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from recorder.errors import JournalError
from recorder.store.fs import acquire_lock, fsync_dir, private_opener, write_atomic
from recorder.store.layout import LOCK

log = logging.getLogger(__name__)

#: The event that pins the KST trading date of the frames that follow (None unpins).
TRADING_DAY = "trading_day"

TEXT, BINARY, EVENT = 1, 2, 3
MAGIC = 0x4A4B
HEADER = struct.Struct("<HBBHHIQqI")
HEADER_SIZE = HEADER.size  # 32
MAX_PAYLOAD = 1 << 28
_PRE = struct.Struct("<HBBHHIQq")  # the header up to its crc
_CRC = struct.Struct("<I")
_KINDS = frozenset((TEXT, BINARY, EVENT))
_SEG_RE = re.compile(r"^seg-(\d{12,})\.jnl(\.zst)?$")
ZST = ".zst"  # the suffix of a compressed segment
_CHUNK = 4 << 20  # readers fetch this much per syscall
_WRITE_AHEAD = 1 << 20  # appends hand their buffer to the OS beyond this size
_CLEAN, _PARTIAL, _CORRUPT, _FULL, _NEED = range(5)  # outcomes of reading a segment


@dataclass(frozen=True, slots=True)
class Record:
    """One journal record: a received frame or a session event."""

    fno: int
    recv_ts_ns: int
    kind: int
    session: int
    payload: bytes

    def frame(self) -> str | bytes:
        """The frame as received: ``str`` for a text frame, ``bytes`` for a binary one."""
        if self.kind == TEXT:
            return self.payload.decode("utf-8", "surrogatepass")
        if self.kind == BINARY:
            return self.payload
        raise ValueError(f"record {self.fno} is an event, not a frame")

    def event(self) -> dict[str, Any]:
        """The dict of an EVENT record."""
        if self.kind != EVENT:
            raise ValueError(f"record {self.fno} is a frame, not an event")
        return orjson.loads(self.payload)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at a segment's end holding no complete valid record. ``moved_to``: where a
    segment without any valid record was renamed, freeing its name (its first fno)."""

    segment: Path
    offset: int
    bytes_ignored: int
    reason: str
    moved_to: Path | None = None


def _seg_name(first_fno: int) -> str:
    return f"seg-{first_fno:012d}.jnl"


def _error(action: str, path: Path, exc: OSError) -> JournalError:
    code = errno.errorcode.get(exc.errno or 0, "")
    return JournalError(f"{action} {path}: {exc.strerror or exc} ({code})")


def list_segments(root: Path) -> list[tuple[int, Path]]:
    """``(first fno, path)`` of each segment of a writer directory, in fno order."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _error("cannot list journal directory", root, exc) from exc
    found: dict[int, Path] = {}
    for n in sorted(names, reverse=True):  # "x.jnl" after "x.jnl.zst": the plain one wins
        if m := _SEG_RE.match(n):
            found[int(m.group(1))] = root / n
    return sorted(found.items())


def _parse(
    buf: bytes, off: int, seq: int, min_fno: int, out: list[Record], limit: int
) -> tuple[int, int, int, int, str]:
    """Decode the complete records of ``buf`` from ``off`` on: every reader's hot loop.

    Returns ``(off, seq, status, need, reason)``; status is ``_FULL`` (``out`` holds
    ``limit`` records), ``_CORRUPT`` (``reason`` says why) or ``_NEED`` (``need`` more
    bytes are wanted).
    """
    n, view = len(buf), memoryview(buf)
    crc32, unpack, size = zlib.crc32, HEADER.unpack_from, HEADER_SIZE
    while len(out) < limit:
        if n - off < size:
            return off, seq, _NEED, size - (n - off), ""
        magic, kind, flags, session, _, plen, fno, ts, crc = unpack(buf, off)
        if magic != MAGIC or kind not in _KINDS or flags or plen > MAX_PAYLOAD:
            return off, seq, _CORRUPT, 0, "bad record header"
        if fno != seq:
            return off, seq, _CORRUPT, 0, f"fno {fno} where {seq} was expected"
        end = off + size + plen
        if end > n:
            return off, seq, _NEED, end - n, ""
        payload = buf[off + size : end]
        if crc32(payload, crc32(view[off : off + size - 4])) != crc:
            return off, seq, _CORRUPT, 0, f"crc mismatch in record {fno}"
        if fno >= min_fno:
            out.append(Record(fno, ts, kind, session, payload))
        seq, off = seq + 1, end
    return off, seq, _FULL, 0, ""


class _Cursor:
    """Reads one segment onwards from where it stopped, keeping a partial record buffered.

    Segments are append-only, so bytes below a file's size never change: a partial
    record kept here stays valid while the writer completes it.
    """

    def __init__(self, first: int, path: Path) -> None:
        self.first, self.path = first, path
        self.seq, self.pos, self.reason = first, 0, ""  # next fno, its offset; why we stopped
        self._buf, self._off = b"", 0
        self._z: Any = None  # a compressed segment: a zstd stream, read forward only
        self._zpos = 0
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            if path.name.endswith(ZST):
                import pyarrow as pa

                self._z = pa.CompressedInputStream(pa.PythonFile(os.fdopen(os.dup(self._fd), "rb")), "zstd")
        except OSError as exc:
            raise _error("cannot open journal segment", path, exc) from exc

    def _pread(self, n: int, at: int) -> bytes:
        if self._z is None:
            return os.pread(self._fd, n, at)
        import pyarrow as pa

        assert at == self._zpos, "compressed segments are read forward"
        try:
            got = self._z.read(n)
            data: bytes = got if isinstance(got, bytes) else got.to_pybytes()
        except pa.ArrowException as exc:
            raise OSError(errno.EIO, f"bad compressed segment: {exc}") from exc
        self._zpos += len(data)
        return data

    def size(self) -> int:
        """The segment's bytes (of a compressed one: those read so far)."""
        return self._zpos if self._z is not None else os.fstat(self._fd).st_size

    def read(self, out: list[Record], limit: int, min_fno: int) -> int:
        """Append records to ``out`` up to EOF; returns _CLEAN, _PARTIAL, _CORRUPT or _FULL."""
        while True:
            off, self.seq, status, need, self.reason = _parse(
                self._buf, self._off, self.seq, min_fno, out, limit
            )
            self.pos, self._off = self.pos + off - self._off, off
            if status != _NEED:
                return status
            have = len(self._buf) - off
            try:
                chunk = self._pread(max(_CHUNK, need), self.pos + have)
            except OSError as exc:
                raise _error("cannot read journal segment", self.path, exc) from exc
            if not chunk:
                self.reason = "incomplete record" if have else ""
                return _PARTIAL if have else _CLEAN
            self._buf, self._off = (self._buf[off:] + chunk if have else chunk), 0

    def warn(self) -> None:
        ignored = self.size() - self.pos
        log.warning(
            "journal: %s in %s at offset %d; %d bytes ignored", self.reason, self.path, self.pos, ignored
        )

    def close(self) -> None:
        if self._z is not None:
            self._z.close()
        os.close(self._fd)


def _default_opener(path: Path) -> BinaryIO:
    # "xb" is O_CREAT | O_EXCL: never truncate. Unbuffered: the writer buffers itself.
    return open(path, "xb", buffering=0, opener=private_opener)


class JournalWriter:
    """Appends frames and events to one writer directory, from one thread.

    Call :meth:`open` (or enter the context) first, :meth:`flush` after each batch of
    appends (tail readers see flushed records only), :meth:`close` at the end. Appends
    fsync by themselves every ``fsync_interval_s`` by ``clock``. Every OSError becomes a
    :class:`JournalError` naming the path and the errno text, after which the writer
    refuses all appends: the capture must stop. ``opener`` creates a segment file (for
    tests: a file that fails); by default with ``O_EXCL`` and mode 0o600.

    Attributes:
        torn_tail: after :meth:`open`, the newest damaged segment end left by a crash.
        syncs: how many times :meth:`sync` ran (for monitoring and tests).
    """

    def __init__(
        self,
        root: Path,
        *,
        segment_bytes: int = 256 << 20,
        fsync_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        opener: Callable[[Path], BinaryIO] | None = None,
    ) -> None:
        self.root = Path(root)
        self.torn_tail: TornTail | None = None
        self.syncs = 0
        self._segment_bytes, self._interval = segment_bytes, fsync_interval_s
        self._clock, self._opener = clock, opener or _default_opener
        self._lock_fd: int | None = None
        self._file: BinaryIO | None = None
        self._path, self._buf, self._seg_size = self.root, bytearray(), 0
        self._next_fno, self._last_sync = 0, 0.0
        self._failed: JournalError | None = None
        self._closed = False

    @property
    def last_fno(self) -> int:
        """The fno of the last record appended (or found at open); -1 when none ever was."""
        return self._next_fno - 1

    def open(self) -> JournalWriter:
        """Create the directories, lock, find where the last run stopped, start a segment.

        Raises:
            JournalError: another process holds the lock, or the filesystem failed.
        """
        if self._lock_fd is not None or self._closed:
            raise JournalError(f"journal writer for {self.root} was already opened")
        try:
            self.root.parent.parent.mkdir(parents=True, exist_ok=True)
            for d in (self.root.parent, self.root):  # _journal/ and _journal/<writer_id>/
                if not d.is_dir():
                    d.mkdir(mode=0o700)
            self._lock_fd = acquire_lock(self.root / LOCK)
        except BlockingIOError:
            self._release()
            raise JournalError(
                f"another recorder is writing to {self.root}; give each process its own --writer-id"
            ) from None
        except OSError as exc:
            self._release()
            raise _error("cannot create and lock journal directory", self.root, exc) from exc
        try:
            self._next_fno = self._recover()
            self._last_sync = self._clock()
            self._start_segment()
        except JournalError:
            self.close()
            raise
        return self

    def _recover(self) -> int:
        """The fno after the last valid record; last segments without one are set aside."""
        segments = list_segments(self.root)
        while segments:
            first, path = segments.pop()
            cur = _Cursor(first, path)
            try:
                status = cur.read([], 1 << 62, 1 << 63)
                size = cur.size()
            finally:
                cur.close()
            torn = TornTail(path, cur.pos, size - cur.pos, cur.reason) if status != _CLEAN else None
            if cur.seq == first:
                moved = self._set_aside(path, size)
                torn = torn and replace(torn, moved_to=moved)
            if torn is not None:
                log.warning(
                    "journal: %s in %s at offset %d; %d bytes ignored (moved to %s)",
                    torn.reason,
                    path,
                    torn.offset,
                    torn.bytes_ignored,
                    torn.moved_to,
                )
                self.torn_tail = self.torn_tail or torn
            if cur.seq > first:
                return cur.seq
        return 0

    def _set_aside(self, path: Path, size: int) -> Path | None:
        try:
            if size == 0:  # created, then a crash before the first write: nothing to keep
                os.unlink(path)
                return None
            target, n = path.with_name(path.name + ".torn"), 0
            while target.exists():  # we hold the lock: nobody else creates these names
                n += 1
                target = path.with_name(f"{path.name}.torn{n}")
            os.rename(path, target)
            return target
        except OSError as exc:
            raise _error("cannot move aside journal segment", path, exc) from exc

    def _start_segment(self) -> None:
        self._path = self.root / _seg_name(self._next_fno)
        try:
            self._file = self._opener(self._path)
            fsync_dir(self.root)  # the new name must survive a crash, like the bytes behind it
        except OSError as exc:
            raise self._fail("cannot create journal segment", exc) from exc
        self._seg_size = 0

    def append_frame(self, recv_ts_ns: int, raw: str | bytes, session: int = 0) -> int:
        """Buffer one received frame; returns its fno. Call :meth:`flush` after the batch."""
        if isinstance(raw, str):
            return self._append(TEXT, recv_ts_ns, raw.encode("utf-8", "surrogatepass"), session)
        return self._append(BINARY, recv_ts_ns, bytes(raw), session)

    def append_event(self, recv_ts_ns: int, event: dict[str, Any], session: int = 0) -> int:
        """Buffer one session event, a dict orjson can serialise (else TypeError); its fno."""
        return self._append(EVENT, recv_ts_ns, orjson.dumps(event), session)

    def _append(self, kind: int, recv_ts_ns: int, payload: bytes, session: int) -> int:
        self._check()
        if len(payload) > MAX_PAYLOAD:
            raise JournalError(f"a frame of {len(payload)} bytes exceeds the journal's limit")
        fno = self._next_fno
        try:
            pre = _PRE.pack(MAGIC, kind, 0, session, 0, len(payload), fno, recv_ts_ns)
        except struct.error as exc:
            raise ValueError(f"session {session} or recv_ts_ns {recv_ts_ns} out of range") from exc
        size = HEADER_SIZE + len(payload)
        if self._seg_size and self._seg_size + size > self._segment_bytes:
            self.sync()
            self._close_file()
            self._start_segment()
        self._buf += pre
        self._buf += _CRC.pack(zlib.crc32(payload, zlib.crc32(pre)))
        self._buf += payload
        self._seg_size += size
        self._next_fno = fno + 1
        if len(self._buf) >= _WRITE_AHEAD:
            self._write_out()
        if self._clock() - self._last_sync >= self._interval:
            self.sync()
        return fno

    def _check(self) -> None:
        if self._failed is not None:
            raise JournalError(f"journal writer stopped after an earlier error: {self._failed}")
        if self._file is None:
            raise JournalError(f"journal writer for {self.root} is not open")

    def _write_out(self) -> None:
        assert self._file is not None
        view = memoryview(self._buf)
        try:
            while view:  # a raw file may take less than everything
                view = view[self._file.write(view) :]
            self._file.flush()
        except OSError as exc:
            raise self._fail("cannot write journal segment", exc) from exc
        finally:
            view.release()
        del self._buf[:]

    def _fail(self, action: str, exc: OSError) -> JournalError:
        self._failed = _error(action, self._path, exc)
        return self._failed

    def flush(self) -> None:
        """Hand the buffered records to the OS: tail readers see them complete from now on."""
        self._check()
        self._write_out()

    def sync(self) -> None:
        """Flush, then fsync the current segment: its records survive a power loss."""
        self.flush()
        assert self._file is not None
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise self._fail("cannot fsync journal segment", exc) from exc
        self._last_sync = self._clock()
        self.syncs += 1

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                if self._failed is None:  # else the first error has been raised already
                    raise self._fail("cannot close journal segment", exc) from exc

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def close(self) -> None:
        """Flush, fsync, release the lock. Idempotent.

        After an earlier failure the buffered records cannot be saved: close then only
        releases the file and the lock, without raising again.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed is None and self._file is not None:
                self.sync()
        finally:
            try:
                self._close_file()
            finally:
                self._release()

    def __enter__(self) -> JournalWriter:
        return self if self._lock_fd is not None else self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_records(root: Path, start_fno: int = 0) -> Iterator[Record]:
    """Every valid record with ``fno >= start_fno``, in fno order, across segments.

    A torn or corrupt segment end is logged (warning) and reading goes on with the next
    segment, as does a segment not starting where the previous one stopped. No record
    is yielded twice. Segments wholly before ``start_fno`` are not opened.

    Raises:
        JournalError: a segment could not be opened or read.
    """
    segments = list_segments(Path(root))
    i = 0
    while i + 1 < len(segments) and segments[i + 1][0] <= start_fno:
        i += 1
    min_fno, expect = start_fno, None
    for first, path in segments[i:]:
        if expect is not None and first != expect:
            log.warning("journal: %s starts at fno %d where %d was expected", path, first, expect)
        cur = _Cursor(first, path)
        try:
            status = _FULL
            while status == _FULL:
                batch: list[Record] = []
                status = cur.read(batch, 8192, min_fno)
                min_fno = batch[-1].fno + 1 if batch else min_fno
                yield from batch
            if status != _CLEAN:
                cur.warn()
            expect = cur.seq
        finally:
            cur.close()


class JournalTail:
    """Follows the journal while a JournalWriter in the same process appends to it.

    Create it after :meth:`JournalWriter.open` (which sets stale segments aside), call
    :meth:`read_available` from one thread as often as needed, :meth:`close` at the end.
    It reads the files directly and shares nothing with the writer.

    Attributes:
        next_fno: the smallest fno not returned yet (never decreases).
    """

    def __init__(self, root: Path, start_fno: int) -> None:
        self.root = Path(root)
        self.next_fno = start_fno
        self._cur: _Cursor | None = None

    def read_available(self, max_records: int = 10_000) -> list[Record]:
        """The complete records flushed so far and not yet returned, at most ``max_records``.

        An incomplete record at the end of the current segment is "not yet written" and
        is tried again next call. Nothing is returned twice or skipped, except records
        lost to a torn or corrupt segment end left by a crash (logged as a warning).

        Raises:
            JournalError: the writer's current segment is corrupt, or a read failed.
        """
        out: list[Record] = []
        if self._cur is None and not self._start():
            return out
        while True:
            cur = self._cur
            assert cur is not None
            status = self._read(cur, out, max_records)
            if status == _FULL:
                return out
            nxt = self._successor(cur, status)
            if nxt is None:
                if status == _CORRUPT and not out:  # hand over the good records first
                    raise JournalError(
                        f"journal segment {cur.path} is corrupt at offset {cur.pos}: {cur.reason}"
                    )
                return out
            # A later segment exists, so this one is final: take what was flushed
            # between our read and the creation of the next one, then move on.
            status = self._read(cur, out, max_records)
            if status == _FULL:
                return out
            if status != _CLEAN:
                cur.warn()
            if nxt[0] != cur.seq:
                log.warning("journal: %s starts at fno %d where %d was expected", nxt[1], nxt[0], cur.seq)
            cur.close()
            self._cur = None
            self._cur = _Cursor(*nxt)

    def _read(self, cur: _Cursor, out: list[Record], limit: int) -> int:
        status = cur.read(out, limit, self.next_fno)
        self.next_fno = out[-1].fno + 1 if out else self.next_fno
        return status

    def _start(self) -> bool:
        segments = list_segments(self.root)
        if not segments:
            return False
        before = [s for s in segments if s[0] <= self.next_fno]
        first, path = before[-1] if before else segments[0]
        if first > self.next_fno:
            log.warning("journal: %s starts at fno %d where %d was expected", path, first, self.next_fno)
        self._cur = _Cursor(first, path)
        return True

    def _successor(self, cur: _Cursor, status: int) -> tuple[int, Path] | None:
        if status == _CLEAN:  # the writer goes on at exactly cur.seq
            path = self.root / _seg_name(cur.seq)
            return (cur.seq, path) if cur.seq > cur.first and path.exists() else None
        later = [s for s in list_segments(self.root) if s[0] > cur.first]
        return later[0] if later else None

    def close(self) -> None:
        """Release the open segment. Idempotent."""
        if self._cur is not None:
            self._cur.close()
            self._cur = None

    def __enter__(self) -> JournalTail:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_checkpoint(root: Path, fno: int, state: dict[str, Any] | None = None) -> None:
    """Record that every record with ``fno <= fno`` has fully reached Parquet.

    ``state`` is whatever the reader needs to resume exactly at ``fno + 1`` (the decoding
    pipeline's trading day and continuity expectations); it is stored with the number so
    the two can never disagree. Atomic: a temporary file is written, fsynced and renamed
    over ``CHECKPOINT`` (:func:`recorder.store.fs.write_atomic`), so a crash leaves the old
    value or the new one. Raises JournalError on any OSError.
    """
    target = Path(root) / "CHECKPOINT"
    data = b"%d\n" % fno + (orjson.dumps(state) + b"\n" if state is not None else b"")
    try:
        write_atomic(target, data, replace=True)
    except OSError as exc:
        raise _error("cannot write journal checkpoint", target, exc) from exc


def read_checkpoint(root: Path) -> int:
    """The fno stored by :func:`write_checkpoint`, or -1 when there is none."""
    return read_checkpoint_state(root)[0]


def read_checkpoint_state(root: Path) -> tuple[int, dict[str, Any] | None]:
    """The fno and state stored by :func:`write_checkpoint`; ``(-1, None)`` when there is none."""
    path = Path(root) / "CHECKPOINT"
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return -1, None
    except OSError as exc:
        raise _error("cannot read journal checkpoint", path, exc) from exc
    first, _, rest = text.partition(b"\n")
    try:
        fno = int(first)
        state = orjson.loads(rest) if rest.strip() else None
    except (ValueError, orjson.JSONDecodeError):
        raise JournalError(f"journal checkpoint {path} is damaged: {text[:40]!r}") from None
    return fno, state


def list_writers(journal_dir: Path) -> list[str]:
    """The writer ids (subdirectories) under ``<store>/_journal/``, sorted."""
    try:
        entries = list(os.scandir(journal_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _error("cannot list journal directory", Path(journal_dir), exc) from exc
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
