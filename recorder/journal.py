"""The raw-frame journal: the recorder's source of truth (ARCHITECTURE.md invariants 1, 4).

Every WebSocket frame is appended with its receive time *before* it is decoded, and
session events (disconnects, refused REGs, failed LOGINs) are appended as small JSON
objects, so the Parquet tables, ``gaps`` included, can be rebuilt from the journal alone.

Layout of one writer's directory (``<store>/_journal/<writer_id>/``, mode 0o700)::

    LOCK                      fcntl.flock'ed by the one JournalWriter using the directory
    CHECKPOINT                "<fno>\\n": every record with fno <= this has reached Parquet
    seg-000000000000.jnl      segments, named by their first fno (mode 0o600)
    seg-000000001234.jnl
    seg-000000001234.jnl.torn a segment holding no valid record, moved aside at open

A segment is a plain sequence of records, no file header. A record is a 32-byte
little-endian header followed by the payload::

    off size field
      0  2   magic       0x4A4B (b"KJ")
      2  1   kind        1 = text frame, 2 = binary frame, 3 = event (orjson object)
      3  1   flags       0 (reserved for optional compression)
      4  2   session     which WebSocket session of the process received it
      6  2   reserved    0
      8  4   payload_len
     12  8   fno         frame number: +1 per record across segments and restarts
     20  8   recv_ts_ns  signed, nanoseconds since the Unix epoch
     28  4   crc32       zlib.crc32 of bytes 0..27 followed by the payload

Payloads are the frame exactly as received (text frames UTF-8, with ``surrogatepass``
so any Python ``str`` round-trips) or the event's orjson bytes.

Files are only ever created (``O_EXCL``) and appended to; nothing is truncated or
rewritten. A restart always starts a new segment at (last valid fno of the last
segment) + 1, so a torn record (kill -9 mid-write) can only sit at the end of a segment:
readers stop there, log it and go on with the next segment. Segments roll before a
record would push them past ``segment_bytes`` (a larger record gets a segment alone).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import orjson

from recorder.errors import JournalError

log = logging.getLogger(__name__)

TEXT, BINARY, EVENT = 1, 2, 3
MAGIC = 0x4A4B
HEADER = struct.Struct("<HBBHHIQqI")
HEADER_SIZE = HEADER.size  # 32
_PRE = struct.Struct("<HBBHHIQq")  # the header without its crc
_CRC = struct.Struct("<I")
MAX_PAYLOAD = 1 << 28
_KINDS = frozenset((TEXT, BINARY, EVENT))
_SEG_RE = re.compile(r"^seg-(\d{12,})\.jnl$")
_CHUNK = 4 << 20  # readers fetch this much per syscall
_WRITE_AHEAD = 1 << 20  # appends buffer up to this much before writing to the OS

# Status of a segment read (_Cursor.read).
_CLEAN, _PARTIAL, _CORRUPT, _FULL, _NEED = range(5)


@dataclass(frozen=True, slots=True)
class Record:
    """One journal record: a received frame or a session event."""

    fno: int
    recv_ts_ns: int
    kind: int
    session: int
    payload: bytes

    def frame(self) -> str | bytes:
        """The frame as received: ``str`` for text frames, ``bytes`` for binary ones."""
        if self.kind == TEXT:
            return self.payload.decode("utf-8", "surrogatepass")
        if self.kind == BINARY:
            return self.payload
        raise ValueError(f"record {self.fno} is an event, not a frame")

    def event(self) -> dict[str, Any]:
        """The event dict of an EVENT record."""
        if self.kind != EVENT:
            raise ValueError(f"record {self.fno} is a frame, not an event")
        value = orjson.loads(self.payload)
        if not isinstance(value, dict):
            raise ValueError(f"record {self.fno}: event payload is not a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class TornTail:
    """Bytes at the end of a segment that hold no complete valid record.

    ``moved_to`` is set when the segment held no valid record at all and was renamed
    aside (so that its name, which claims a first fno, can be reused).
    """

    segment: Path
    offset: int
    bytes_ignored: int
    reason: str
    moved_to: Path | None = None


def _seg_name(first_fno: int) -> str:
    return f"seg-{first_fno:012d}.jnl"


def _list_segments(root: Path) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _error("cannot list journal directory", root, exc) from exc
    found = ((_SEG_RE.match(n), n) for n in names)
    return sorted((int(m.group(1)), root / n) for m, n in found if m)


def _error(action: str, path: Path, exc: OSError) -> JournalError:
    code = errno.errorcode.get(exc.errno or 0, "")
    return JournalError(f"{action} {path}: {exc.strerror or exc} ({code})")


def _parse(
    buf: bytes, off: int, seq: int, min_fno: int, out: list[Record], limit: int
) -> tuple[int, int, int, int, str]:
    """Decode complete records of ``buf`` from ``off``; the hot loop of every reader.

    Returns ``(off, seq, status, need, reason)``: status ``_FULL`` (``limit`` reached),
    ``_CORRUPT`` (``reason`` says why) or ``_NEED`` (``need`` more bytes are wanted).
    """
    n = len(buf)
    view = memoryview(buf)
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
        seq += 1
        off = end
    return off, seq, _FULL, 0, ""


class _Cursor:
    """Reads one segment from a file offset on, buffering what it has fetched.

    Bytes below a file's size are final (segments are append-only), so a partial record
    kept in the buffer stays valid while the writer completes it.
    """

    def __init__(self, first: int, path: Path) -> None:
        self.first, self.path = first, path
        self.seq = first  # fno of the next record in this segment
        self.pos = 0  # file offset of that record
        self.reason = ""
        self._buf, self._off = b"", 0
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _error("cannot open journal segment", path, exc) from exc

    def read(self, out: list[Record], limit: int, min_fno: int) -> int:
        """Append records to ``out`` until EOF; returns _CLEAN, _PARTIAL, _CORRUPT or _FULL."""
        while True:
            off, self.seq, status, need, self.reason = _parse(
                self._buf, self._off, self.seq, min_fno, out, limit
            )
            self.pos += off - self._off
            self._off = off
            if status != _NEED:
                return status
            have = len(self._buf) - off
            try:
                chunk = os.pread(self._fd, max(_CHUNK, need), self.pos + have)
            except OSError as exc:
                raise _error("cannot read journal segment", self.path, exc) from exc
            if not chunk:
                self.reason = "incomplete record" if have else ""
                return _PARTIAL if have else _CLEAN
            self._buf = self._buf[off:] + chunk if have else chunk
            self._off = 0

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)


def _default_opener(path: Path) -> BinaryIO:
    # "xb": O_CREAT | O_EXCL, never truncate; unbuffered because the writer buffers.
    return open(path, "xb", buffering=0, opener=lambda p, f: os.open(p, f | os.O_CLOEXEC, 0o600))


def _make_dirs(root: Path) -> None:
    """Create ``root`` and its parent (``_journal``) with mode 0o700; higher levels as usual."""
    root.parent.parent.mkdir(parents=True, exist_ok=True)
    for d in (root.parent, root):
        if not d.is_dir():
            d.mkdir(mode=0o700)


class JournalWriter:
    """Appends frames and events to one writer directory; used from one thread.

    Call :meth:`open` (or enter the context) first, :meth:`flush` after each batch of
    appends (tail readers only see flushed records) and :meth:`close` at the end.
    Appends fsync on their own every ``fsync_interval_s`` (measured by ``clock``).
    Any OSError becomes a :class:`JournalError` naming the path and the errno text, and
    the writer then refuses every further append: the capture must stop.

    Attributes:
        torn_tail: after :meth:`open`, the damaged end of the previous run's last segment.
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
        self._segment_bytes = segment_bytes
        self._interval = fsync_interval_s
        self._clock = clock
        self._opener = opener or _default_opener
        self._lock_fd: int | None = None
        self._file: BinaryIO | None = None
        self._path = self.root
        self._buf = bytearray()
        self._seg_size = 0
        self._next_fno = 0
        self._last_sync = 0.0
        self._failed: JournalError | None = None
        self._closed = False

    @property
    def last_fno(self) -> int:
        """The fno of the last record appended (or found at open); -1 if none ever."""
        return self._next_fno - 1

    def open(self) -> JournalWriter:
        """Lock the directory, find where the last run stopped, start a new segment.

        Raises:
            JournalError: another process holds the lock, or the filesystem failed.
        """
        if self._lock_fd is not None or self._closed:
            raise JournalError(f"journal writer for {self.root} was already opened")
        try:
            _make_dirs(self.root)
            self._lock_fd = os.open(self.root / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _error("cannot create journal directory", self.root, exc) from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release()
            raise JournalError(
                f"another recorder is writing to {self.root}; give each process its own --writer-id"
            ) from None
        except OSError as exc:
            self._release()
            raise _error("cannot lock journal directory", self.root, exc) from exc
        try:
            self._next_fno = self._recover()
            self._last_sync = self._clock()
            self._start_segment()
        except JournalError:
            self._release()
            raise
        return self

    def _recover(self) -> int:
        """Return the fno after the last valid record, moving aside last segments without one."""
        segments = _list_segments(self.root)
        while segments:
            first, path = segments.pop()
            cur = _Cursor(first, path)
            try:
                status, size = cur.read([], 1 << 62, 1 << 63), cur.size()
            finally:
                cur.close()
            torn = TornTail(path, cur.pos, size - cur.pos, cur.reason) if status != _CLEAN else None
            if cur.seq == first:
                moved = self._set_aside(path, size)
                torn = torn and TornTail(path, 0, size, cur.reason, moved)
            if torn is not None:
                log.warning("journal: %s in %s at offset %d; %d bytes ignored%s", torn.reason,
                            path, torn.offset, torn.bytes_ignored,
                            f", segment moved to {moved}" if torn.moved_to else "")
                self.torn_tail = self.torn_tail or torn  # the newest damage found
            if cur.seq > first:
                return cur.seq
        return 0

    def _set_aside(self, path: Path, size: int) -> Path | None:
        """Free the name of a segment without valid records; keep its bytes unless empty."""
        try:
            if size == 0:
                os.unlink(path)
                return None
            target = path.with_name(path.name + ".torn")
            n = 0
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
            dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
            try:  # the new name must survive a crash as well as the bytes behind it
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise self._fail("cannot create journal segment", exc) from exc
        self._seg_size = 0

    def append_frame(self, recv_ts_ns: int, raw: str | bytes, session: int = 0) -> int:
        """Buffer one received frame; returns its fno. Call :meth:`flush` after the batch."""
        if isinstance(raw, str):
            return self._append(TEXT, recv_ts_ns, raw.encode("utf-8", "surrogatepass"), session)
        return self._append(BINARY, recv_ts_ns, bytes(raw), session)

    def append_event(self, recv_ts_ns: int, event: dict[str, Any], session: int = 0) -> int:
        """Buffer one session event (a JSON-serialisable dict); returns its fno.

        Raises:
            TypeError: ``event`` is not serialisable by orjson.
        """
        return self._append(EVENT, recv_ts_ns, orjson.dumps(event), session)

    def _append(self, kind: int, recv_ts_ns: int, payload: bytes, session: int) -> int:
        if self._failed is not None:
            raise JournalError(f"journal writer stopped after an earlier error: {self._failed}")
        if self._file is None:
            raise JournalError(f"journal writer for {self.root} is not open")
        if len(payload) > MAX_PAYLOAD:
            raise JournalError(f"frame of {len(payload)} bytes exceeds the journal limit")
        fno = self._next_fno
        try:
            pre = _PRE.pack(MAGIC, kind, 0, session, 0, len(payload), fno, recv_ts_ns)
        except struct.error as exc:
            raise ValueError(f"session {session} or recv_ts_ns {recv_ts_ns} out of range") from exc
        size = HEADER_SIZE + len(payload)
        if self._seg_size and self._seg_size + size > self._segment_bytes:
            self._roll()
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

    def _write_out(self) -> None:
        if self._failed is not None:
            raise JournalError(f"journal writer stopped after an earlier error: {self._failed}")
        assert self._file is not None
        view = memoryview(self._buf)
        try:
            while view:
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
        """Hand buffered records to the OS: from now on tail readers see them complete."""
        if self._file is not None:
            self._write_out()

    def sync(self) -> None:
        """Flush, then fsync the current segment: the records survive a power loss."""
        self.flush()
        if self._file is None:
            return
        try:
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise self._fail("cannot fsync journal segment", exc) from exc
        self._last_sync = self._clock()
        self.syncs += 1

    def _roll(self) -> None:
        self.sync()
        self._close_file()
        self._start_segment()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:
                raise self._fail("cannot close journal segment", exc) from exc

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def close(self) -> None:
        """Flush, fsync and release the lock. Idempotent.

        After an earlier failure the buffered records cannot be saved; close then only
        releases the file and the lock, without raising again.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed is None and self._file is not None:
                self.sync()
                self._close_file()
        finally:
            if self._file is not None:  # only after a failure
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
            self._release()

    def __enter__(self) -> JournalWriter:
        return self if self._lock_fd is not None else self.open()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def read_records(root: Path, start_fno: int = 0) -> Iterator[Record]:
    """Every valid record with ``fno >= start_fno``, in fno order, across segments.

    A torn or corrupt segment end is logged (warning) and reading continues with the
    next segment; fnos missing between segments are logged as a gap. Records are never
    yielded twice, even from overlapping segments.

    Raises:
        JournalError: a segment could not be opened or read.
    """
    segments = _list_segments(Path(root))
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
                if batch:
                    min_fno = batch[-1].fno + 1
                yield from batch
            if status != _CLEAN:
                _warn_torn(cur)
            expect = cur.seq
        finally:
            cur.close()


def _warn_torn(cur: _Cursor) -> None:
    log.warning("journal: %s in %s at offset %d; %d bytes ignored",
                cur.reason, cur.path, cur.pos, cur.size() - cur.pos)


class JournalTail:
    """Follows the journal while a JournalWriter in the same process appends to it.

    Create it after :meth:`JournalWriter.open` (which moves aside stale segments) and call
    :meth:`read_available` from one thread, as often as you like; call :meth:`close` at
    the end. It reads the files directly and shares nothing with the writer.
    """

    def __init__(self, root: Path, start_fno: int) -> None:
        self.root = Path(root)
        self.next_fno = start_fno  # the smallest fno not yet returned
        self._cur: _Cursor | None = None

    def read_available(self, max_records: int = 10_000) -> list[Record]:
        """Complete records flushed so far and not returned before, at most ``max_records``.

        An incomplete record at the end of the current segment is "not yet written" and
        is retried next call. Never returns a record twice and never skips one (except
        records lost to a torn or corrupt segment end, which are logged).

        Raises:
            JournalError: the writer's current segment is corrupt, or a read failed.
        """
        out: list[Record] = []
        if self._cur is None and not self._start():
            return out
        assert self._cur is not None
        while True:
            status = self._read(out, max_records)
            if status == _FULL:
                return out
            nxt = self._successor(status)
            if nxt is None:
                if status == _CORRUPT:
                    raise JournalError(f"journal segment {self._cur.path} is corrupt at offset "
                                       f"{self._cur.pos}: {self._cur.reason}")
                return out
            # A successor exists, so the current segment is final: drain what was
            # flushed between our read and its creation, then move on.
            status = self._read(out, max_records)
            if status == _FULL:
                return out
            self._switch(nxt, status)

    def _read(self, out: list[Record], limit: int) -> int:
        assert self._cur is not None
        status = self._cur.read(out, limit, self.next_fno)
        if out:
            self.next_fno = max(self.next_fno, out[-1].fno + 1)
        return status

    def _start(self) -> bool:
        segments = _list_segments(self.root)
        if not segments:
            return False
        before = [s for s in segments if s[0] <= self.next_fno]
        first, path = before[-1] if before else segments[0]
        if first > self.next_fno:
            log.warning("journal: fno %d..%d missing before %s", self.next_fno, first - 1, path)
        self._cur = _Cursor(first, path)
        return True

    def _successor(self, status: int) -> tuple[int, Path] | None:
        assert self._cur is not None
        if status == _CLEAN:  # the writer continues at exactly this fno
            path = self.root / _seg_name(self._cur.seq)
            return (self._cur.seq, path) if path.exists() else None
        later = [s for s in _list_segments(self.root) if s[0] > self._cur.first]
        return later[0] if later else None

    def _switch(self, nxt: tuple[int, Path], status: int) -> None:
        assert self._cur is not None
        if status != _CLEAN:
            _warn_torn(self._cur)
        if nxt[0] > self._cur.seq:
            log.warning("journal: fno %d..%d missing before %s", self._cur.seq, nxt[0] - 1, nxt[1])
        self._cur.close()
        self._cur = None
        self._cur = _Cursor(*nxt)

    def close(self) -> None:
        """Release the open segment. Idempotent."""
        if self._cur is not None:
            self._cur.close()
            self._cur = None

    def __enter__(self) -> JournalTail:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def write_checkpoint(root: Path, fno: int) -> None:
    """Record atomically that every record with ``fno <= fno`` has fully reached Parquet.

    Written to a temporary file, fsynced, then renamed over ``CHECKPOINT``, so a crash
    leaves either the old or the new value. Raises JournalError on any OSError.
    """
    root = Path(root)
    target = root / "CHECKPOINT"
    try:
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".CHECKPOINT.", suffix=".tmp")
    except OSError as exc:
        raise _error("cannot write journal checkpoint", target, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"%d\n" % fno)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
        dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _error("cannot write journal checkpoint", target, exc) from exc


def read_checkpoint(root: Path) -> int:
    """The fno stored by :func:`write_checkpoint`, or -1 when there is none."""
    path = Path(root) / "CHECKPOINT"
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return -1
    except OSError as exc:
        raise _error("cannot read journal checkpoint", path, exc) from exc
    try:
        return int(text)
    except ValueError:
        raise JournalError(f"journal checkpoint {path} is not an integer: {text[:40]!r}") from None


def list_writers(journal_dir: Path) -> list[str]:
    """The writer ids (subdirectories) under ``<store>/_journal/``, sorted."""
    try:
        entries = list(os.scandir(journal_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _error("cannot list journal directory", Path(journal_dir), exc) from exc
    return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
