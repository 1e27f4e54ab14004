"""The capture's decoder: follows the journal, decodes, writes Parquet, checkpoints.

The socket reader (the event loop of :mod:`recorder.capture.live`) only stamps, journals and
echoes PINGs; the journal is the hand-off to this side. By default the decoder runs in a child
process of its own (:class:`DecoderProcess`), so decoding and writing part files never compete
with the reader for the interpreter: on two cores they run side by side. In-process, on a
thread (:class:`DecoderThread`), it runs when the caller passes a part-file writer of its own
(a seam for tests and the soak harness, whose writers hold locks and descriptors of this
process).

Both run the same :class:`DecodeLoop`, so what is stored does not depend on the host: the
checkpoint, the pipeline state saved with it and crash recovery are the same. The child:

- ignores SIGINT and SIGTERM (a terminal or a service manager signals the whole group; the
  parent decides when to drain) and gets SIGKILL when the parent dies (``kill -9``);
- holds ``DECODER.lock`` in the journal directory, which the next run waits for before it
  recovers, so an orphan can never write next to a new run;
- sends its counters, its log records and its error (if any) to the parent over a pipe; a
  child that dies without a word (out of memory, killed) is a :class:`StoreError` in the
  parent, and the frames it had not stored are recovered by the next run.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recorder.capture.progress import CaptureStats
from recorder.errors import JournalError, StoreError
from recorder.store.fs import acquire_lock
from recorder.store.journal import EVENT, JournalTail, read_checkpoint_state, read_records, write_checkpoint

if TYPE_CHECKING:  # Arrow and the store's writers load in the decoder only (see DecodeLoop)
    from recorder.store.sink import PartWriter, Sink

log = logging.getLogger(__name__)

DECODE_EVERY_S = 1.0  # the longest a journaled frame waits for its decoding batch
POLL_S = 0.1  # how often the child looks for new journal records
# REAL frames per decoding batch when the decoder has a backlog (after a crash, or behind on
# a busy machine). Arrow's transient memory grows with the batch: 25 MB at 4,000 frames of a
# 500-code feed, 62 MB at 10,000 (measured), for the same throughput.
BATCH_FRAMES = 4000
LOCK = "DECODER.lock"
ORPHAN_WAIT_S = 30.0  # how long a new run waits for a dead run's decoder to go
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}  # the parent's to act on, never the child's

#: The counters the decoder owns (see CaptureStats); the child sends them to the parent.
DECODER_FIELDS = (
    "rows",
    "rejects",
    "gaps",
    "gaps_by_kind",
    "last_decoded_ns",
    "decoded_fno",
    "files",
    "last_stored_ns",
    "recovered_frames",
)


@dataclass(frozen=True)
class DecoderSpec:
    """Everything the decoder needs, picklable: where to read, where and how to write."""

    root: Path  # the writer's journal directory
    start_fno: int  # the first record not in Parquet yet
    data_dir: Path
    writer: str
    max_age_s: float
    max_bytes: int
    compression: str = "snappy"  # live part files; compaction merges them into zstd
    compress_journal: bool = True
    log_level: int = logging.WARNING

    def sink(self, write: PartWriter | None = None) -> Sink:
        from recorder.store.sink import Sink

        return Sink(
            self.data_dir,
            self.writer,
            max_age_s=self.max_age_s,
            max_bytes=self.max_bytes,
            write=write,
            compression=self.compression,
        )


def recover(root: Path, data_dir: Path, writer: str, last_fno: int) -> int:
    """Decode the journaled frames up to ``last_fno`` that never reached Parquet (a crash
    stopped the previous run), exactly once: the rows of part files already written are
    skipped. The decoder does this before it follows the journal, so a restart reconnects at
    once and Arrow is loaded in the decoder's process only.

    Returns the number of records replayed.
    """
    checkpoint, state = read_checkpoint_state(root)
    start = checkpoint + 1
    if start > last_fno:
        return 0
    from recorder.store.pipeline import Pipeline
    from recorder.store.sink import Sink

    sink = Sink(data_dir, writer, resume=True)
    pipe = Pipeline(sink, batch=BATCH_FRAMES)
    pipe.restore(state)  # the trading day and continuity expectations as of the checkpoint
    n = 0
    for rec in read_records(root, start):
        if rec.fno > last_fno:
            break
        n += 1
        if rec.kind == EVENT:
            pipe.feed_event(rec.event(), rec.recv_ts_ns, rec.fno)
        else:
            pipe.feed_frame(rec.frame(), rec.recv_ts_ns, rec.fno)
    pipe.drain()
    sink.close()
    write_checkpoint(root, last_fno, pipe.state())
    log.info(
        "recovered %d journal records (frames %d..%d); %d rows were already in Parquet",
        n,
        start,
        last_fno,
        sink.rows_skipped,
    )
    return n


class DecodeLoop:
    """Recovers what the previous run journaled but did not store (:func:`recover`), then
    reads the journal until told to drain; decodes in batches; flushes and checkpoints.

    ``wait(timeout)`` blocks until there may be more to read (or the timeout passes);
    setting ``draining`` (the hosts' ``drain()``, from any thread) asks for a last pass: read
    until nothing more is readable, then flush, checkpoint and return. Counters go to
    ``stats`` and ``on_account`` is called after each update.
    """

    def __init__(
        self,
        spec: DecoderSpec,
        stats: CaptureStats,
        wait: Callable[[float], None],
        *,
        write: PartWriter | None = None,
        on_account: Callable[[], None] = lambda: None,
        compressor: Compressor | None = None,
    ) -> None:
        from recorder.store.pipeline import Pipeline

        self.spec, self.stats, self.wait, self.on_account = spec, stats, wait, on_account
        self.root = spec.root
        self.sink = spec.sink(write)
        self.tail = JournalTail(spec.root, spec.start_fno)
        self.pipe = Pipeline(self.sink, batch=BATCH_FRAMES)
        self.compressor = compressor
        # Set at shutdown, after the journal's last flush: read until nothing more is readable,
        # then flush and stop. (Not "until fno N": a record whose write failed never arrives.)
        self.draining = False

    def run(self) -> None:
        try:
            spec = self.spec
            self.stats.recovered_frames = recover(spec.root, spec.data_dir, spec.writer, spec.start_fno - 1)
            self.on_account()
            self._loop()
        finally:
            self.tail.close()

    def _loop(self) -> None:
        pending_since: float | None = None
        last_fed_ns = self.stats.last_decoded_ns
        while True:
            done = self.draining  # read before reading: everything flushed by then is read below
            records = self.tail.read_available(2000)
            while records:
                self.pipe.feed_records(records)
                last_fed_ns = records[-1].recv_ts_ns
                records = self.tail.read_available(2000)
            # Frames are decoded in batches of up to a second (or Pipeline.batch frames), so
            # the Arrow decoder does the work in large vectorised steps and the sink buffers
            # few, large chunks.
            now = time.monotonic()
            if not self.pipe.pending_frames:
                pending_since = None
            elif pending_since is None:
                pending_since = now
            due = self.sink.due()
            if done or due or (pending_since is not None and now - pending_since >= DECODE_EVERY_S):
                self.pipe.drain()
                pending_since = None
                self._account(last_fed_ns)
                release_memory()  # each batch's parse buffers, before the next one grows the heap
            if done or due:
                self._flush_and_checkpoint(last=done)
                self.stats.last_stored_ns = last_fed_ns
                self._account(self.stats.last_decoded_ns)
            if done:
                return
            if not self.draining:
                self.wait(POLL_S)

    def _account(self, last_recv_ns: int) -> None:
        s, p = self.stats, self.pipe.stats
        s.rows = {"trades": p.trades, "orderbook": p.orderbook, "pending": self.sink.buffered_rows}
        s.rejects, s.gaps = p.rejects, p.gaps
        s.gaps_by_kind = dict(self.pipe.gaps_by_kind)
        s.last_decoded_ns = last_recv_ns
        s.decoded_fno = self.pipe.last_fno
        s.files = self.sink.files_written
        self.on_account()

    def _flush_and_checkpoint(self, last: bool) -> None:
        """Flush every table, then checkpoint: the checkpoint and the saved pipeline state
        then describe exactly the same frame, so recovery resumes without re-deciding
        anything (a memory-pressure flush of one table does not checkpoint). After the last
        one, sealing is the shutdown's (faster levels, every core), not the compressor's."""
        self.sink.flush_all()
        write_checkpoint(self.root, self.pipe.last_fno, self.pipe.state())
        release_memory()
        if self.compressor is not None and not last:
            self.compressor.wake.set()


class Compressor(threading.Thread):
    """Compresses sealed journal segments after each checkpoint, off the socket reader's and
    the decoder's threads (zstd releases the interpreter while it works). A failure is logged
    and left for the next pass or the end of the run: the plain segment stays, so nothing is
    lost."""

    def __init__(self, root: Path) -> None:
        super().__init__(name="recorder-journal-zstd", daemon=True)
        self.root = root
        self.wake = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        from recorder.store.retention import compress_sealed

        while not self.done.is_set():
            self.wake.wait()
            self.wake.clear()
            if self.done.is_set():
                return
            try:
                compress_sealed(self.root, cancel=self.done)
            except (JournalError, OSError) as exc:
                log.warning("journal: compressing sealed segments failed (kept as they are): %s", exc)

    def stop(self) -> None:
        """Call off the pass under way (within a 4 MiB chunk) and end: a shutdown compresses
        what is left at its fast level (:func:`recorder.capture.live._seal_journal`)."""
        self.done.set()
        self.wake.set()
        self.join()


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def release_memory() -> None:
    """After a decoding batch or a flush: give the freed buffers back to the OS. Arrow's pool
    and glibc's per-thread arenas otherwise keep freed pages for reuse, and a long capture's
    resident memory only grows (measured on a 500-code capture: RSS after each flush climbed
    from about 250 to 350 MB in five minutes without it). It costs a few milliseconds a second."""
    pa = sys.modules.get("pyarrow")  # the recorder's process never loads it
    if pa is not None:
        pa.default_memory_pool().release_unused()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


# --------------------------------------------------------------------------- in-process host


class DecoderThread(threading.Thread):
    """The loop on a thread of this process. Errors are passed to ``on_error``."""

    def __init__(
        self,
        spec: DecoderSpec,
        stats: CaptureStats,
        on_error: Callable[[BaseException], None],
        write: PartWriter | None = None,
    ) -> None:
        super().__init__(name="recorder-decoder", daemon=True)
        self.on_error = on_error
        self.wake = threading.Event()  # set by the reader for each frame
        compressor = Compressor(spec.root) if spec.compress_journal else None
        self.loop = DecodeLoop(spec, stats, self._wait, write=write, compressor=compressor)

    def _wait(self, timeout: float) -> None:
        self.wake.wait(timeout)
        self.wake.clear()

    def run(self) -> None:
        compressor = self.loop.compressor
        if compressor is not None:
            compressor.start()
        try:
            self.loop.run()
        except BaseException as exc:  # reported to the capture, which exits non-zero
            self.on_error(exc)
        finally:
            if compressor is not None:
                compressor.stop()

    def drain(self) -> None:
        self.loop.draining = True
        self.wake.set()


# --------------------------------------------------------------------------- child process


def wait_for_orphan(root: Path, timeout_s: float = ORPHAN_WAIT_S) -> None:
    """Wait until no decoder of an earlier run holds ``root``'s decoder lock.

    A run killed with ``kill -9`` takes its decoder with it (SIGKILL on parent death), but not
    in the same instant; recovery must not write while that decoder might.

    Raises:
        JournalError: the lock is still held after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = acquire_lock(root / LOCK)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise JournalError(
                    f"a decoder process of an earlier run still holds {root / LOCK} after {timeout_s:.0f} s"
                ) from None
            time.sleep(0.05)  # polling a lock another process holds; there is nothing to wait on
        except OSError as exc:
            raise JournalError(f"cannot open {root / LOCK}: {exc}") from exc
        else:
            os.close(fd)
            return


class DecoderProcess:
    """The loop in a child process (``python -m recorder.capture.decoder``); the same surface
    as :class:`DecoderThread`.

    Parent and child talk over a socket pair: the spec and then ``"drain"`` one way, counters,
    log records, an error and ``"done"`` the other. A listener thread here applies the
    counters to ``stats`` and passes the child's error (or its unexpected death) to
    ``on_error``.
    """

    def __init__(
        self, spec: DecoderSpec, stats: CaptureStats, on_error: Callable[[BaseException], None]
    ) -> None:
        self.spec, self.stats, self.on_error = spec, stats, on_error
        self.wake = None  # the child polls the journal; the reader has nothing to signal
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._listener = threading.Thread(target=self._listen, name="recorder-decoder-pipe", daemon=True)

    def start(self) -> None:
        mine, theirs = socket.socketpair()
        # The child starts with SIGINT and SIGTERM blocked (the mask is inherited), so a
        # Ctrl-C while it is still importing cannot kill it; it then ignores both.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            argv = [sys.executable, "-m", __name__, str(theirs.fileno()), str(os.getpid())]
            self._proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        except OSError as exc:
            mine.close()
            raise StoreError(f"cannot start the decoder process: {exc}") from exc
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
            theirs.close()
        self._conn = Connection(mine.detach())
        try:
            self._conn.send(dataclasses.asdict(self.spec))
        except OSError as exc:  # it died at once (a broken installation)
            self._proc.wait()
            raise StoreError(
                f"the decoder process did not start (exit code {self._proc.returncode}): {exc}"
            ) from exc
        self._listener.start()

    def drain(self) -> None:
        with contextlib.suppress(OSError):  # the child is gone: its death is reported already
            assert self._conn is not None
            self._conn.send("drain")

    def join(self) -> None:
        assert self._proc is not None and self._conn is not None
        self._listener.join()
        self._proc.wait()
        self._conn.close()

    def _listen(self) -> None:
        assert self._proc is not None and self._conn is not None
        while True:
            try:
                kind, body = self._conn.recv()
            except (EOFError, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(5)
                self.on_error(
                    StoreError(
                        f"the decoder process ended unexpectedly (exit code {self._proc.returncode}); "
                        "every frame is journaled, and the next run stores what it had not"
                    )
                )
                return
            if kind == "stats":
                for name, value in body.items():
                    setattr(self.stats, name, value)
                # The reader frees every frame it journals; glibc keeps freed pages in its
                # arenas until asked. About once a second (after each batch of the child):
                # a few milliseconds, and the 500-code soak peaked 20 MB lower with it.
                release_memory()
            elif kind == "log":
                logging.getLogger(body.name).handle(body)
            elif kind == "error":
                self.on_error(body)
            elif kind == "done":
                return


class _PipeHandler(logging.Handler):
    """Sends the child's log records to the parent, which logs them with its own handlers."""

    def __init__(self, send: Callable[[str, Any], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.send("log", record)
        except Exception:  # a log line must never stop the decoder
            self.handleError(record)


def _die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies (Linux); exit now if it is already gone."""
    libc = _libc()
    if libc is not None and hasattr(libc, "prctl"):
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:
        os._exit(1)


def _child_main(conn: Connection, parent_pid: int) -> None:
    """The decoder process: runs the loop, reports to the parent."""
    _die_with_parent(parent_pid)
    for sig in _STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    lock = threading.Lock()

    def send(kind: str, body: Any) -> None:
        with lock:
            conn.send((kind, body))

    try:
        spec = DecoderSpec(**conn.recv())
    except (EOFError, OSError):
        return  # the parent is gone before it said anything
    root = logging.getLogger()
    root.handlers[:] = [_PipeHandler(send)]
    root.setLevel(spec.log_level)
    try:
        lock_fd = acquire_lock(spec.root / LOCK)
    except OSError as exc:
        send("error", JournalError(f"decoder: cannot lock {spec.root / LOCK}: {exc}"))
        return
    stats = CaptureStats()
    stats.decoded_fno = spec.start_fno - 1

    def wait(timeout: float) -> None:
        try:
            if conn.poll(timeout) and conn.recv() == "drain":
                loop.draining = True
        except (EOFError, OSError):
            os._exit(1)  # the parent is gone; the next run recovers from the journal

    def account() -> None:
        send("stats", {name: getattr(stats, name) for name in DECODER_FIELDS})

    compressor = Compressor(spec.root) if spec.compress_journal else None
    loop = DecodeLoop(spec, stats, wait, on_account=account, compressor=compressor)
    if compressor is not None:
        compressor.start()
    try:
        loop.run()
    except BaseException as exc:
        send("error", _picklable(exc))
    finally:
        if compressor is not None:
            compressor.stop()
        os.close(lock_fd)
    send("done", None)


def _picklable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a :class:`StoreError` with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return StoreError(f"decoder: {type(exc).__name__}: {exc}")
    exc.__traceback__ = None
    return exc


if __name__ == "__main__":
    _child_main(Connection(int(sys.argv[1])), int(sys.argv[2]))
