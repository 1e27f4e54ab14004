"""The machinery of a soak run: the embedded venue on its own event-loop thread, the
capture in subprocesses against it (the real ``recorder capture`` CLI, or
:mod:`soak.capture_proc` where a scenario needs short backoffs or a held writer), and RSS
polling of those processes.

Synchronisation is on events wherever one exists: venue conditions
(:meth:`VenueThread.wait`), process exit (``Popen.wait``), PING barriers and the write
gate's pipe (:class:`WriteGate`). The only polling is RSS sampling: there is no event for
"memory grew".
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from recorder.sim.venue import Venue, VenueConfig
from soak.capture_proc import RELEASE_ALL, RELEASE_ONE

T = TypeVar("T")

APPKEY, SECRET = "soak-appkey-5e1f0a27", "soak-secret-9b2c7d41e8"
RECORDER = [sys.executable, "-m", "recorder.cli.main"]
CLI_CAPTURE = (*RECORDER, "capture")  # the real CLI
SOAK_CAPTURE = (sys.executable, "-m", "soak.capture_proc")  # the library with soak knobs
WRITER = "soak"
MB = 1 << 20


class SoakError(Exception):
    """A step of a scenario could not complete (a wait timed out, a process misbehaved)."""


class VenueThread:
    """A :class:`Venue` served from a background thread, so the real CLI can run in a
    subprocess against it while this process awaits the venue's ground truth.

    The tests' ``venue_thread`` fixture uses it too.
    """

    def __init__(self, config: VenueConfig, feed: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-venue", daemon=True)
        self.thread.start()
        self.venue = Venue(config, feed=feed)
        self.call(self.venue.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the venue's loop and return its result."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError as exc:
            fut.cancel()
            raise SoakError(f"venue call timed out after {timeout:g} s") from exc

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn()`` on the venue's loop (consistent reads of venue state)."""

        async def inline() -> T:
            return fn()

        return self.call(inline())

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Until ``predicate()`` holds on the venue's loop (woken by every venue change)."""
        try:
            self.call(self.venue.wait_for(predicate, timeout), timeout + 5)
        except (TimeoutError, SoakError) as exc:
            raise SoakError(f"timed out after {timeout:g} s waiting for {what}") from exc

    def wait_logins(self, n: int, timeout: float = 30.0) -> None:
        self.wait(lambda: self.venue.stats.logins >= n, timeout, f"LOGIN #{n}")

    def wait_entries(self, n: int, timeout: float = 30.0) -> None:
        self.wait(lambda: self.venue.stats.entries_sent >= n, timeout, f"{n} REAL entries sent")

    def wait_no_connections(self, timeout: float = 30.0) -> None:
        self.wait(lambda: not self.venue.connections, timeout, "every connection to close")

    def entries_sent(self) -> int:
        return self.run(lambda: self.venue.stats.entries_sent)

    def connection_ids(self) -> list[int]:
        return self.run(lambda: sorted(self.venue.connections))

    def barrier(self, timeout: float = 30.0) -> dict[int, int]:
        """PING every connection and wait for the echoes; then, per connection, how many
        frames the venue had written *before* the barrier PING: the recorder has read (and
        journaled, since it journals before it echoes) at least those."""

        async def go() -> dict[int, int]:
            before = {cid: c for cid, c in self._frame_counts().items() if cid in self.venue.connections}
            await self.venue.ping_barrier(timeout)
            return before

        return self.call(go(), timeout + 5)

    def _frame_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for f in self.venue.frames:
            counts[f.conn_id] = counts.get(f.conn_id, 0) + 1
        return counts

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.venue.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        with contextlib.suppress(Exception):
            self.loop.close()


def hermetic_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Kiwoom setting or credentials file, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIWOOM_")}
    env["KIWOOM_RECORDER_CONFIG"] = "/nonexistent/kiwoom-recorder/credentials"  # never the real ~/.config
    env.update(extra)
    return env


def soak_env() -> dict[str, str]:
    return hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)


def capture_command(
    venue: Venue, data_dir: Path, writer: str, *extra: str, program: tuple[str, ...] = CLI_CAPTURE
) -> list[str]:
    """A capture of every item ``venue`` trades, into ``data_dir`` as ``writer``: by default
    ``recorder capture``; ``program=SOAK_CAPTURE`` for :mod:`soak.capture_proc`."""
    return [
        *program,
        "--force",  # its own venue: record whatever the trading calendar says today
        # seconds-long runs, estimated as a day's need: a full /tmp is reported, not refused
        *("--disk-check", "warn"),
        "--ws-url",
        venue.ws_url,
        "--rest-url",
        venue.rest_url,
        "--data-dir",
        str(data_dir),
        "--symbols",
        ",".join(venue.feed.items),  # type: ignore[attr-defined]
        "--writer-id",
        writer,
        *extra,
    ]


class WriteGate:
    """The harness's side of :class:`soak.capture_proc.Gate`: see each part-file write the
    capture is about to make, and let it through when the scenario is ready.

    Two pipes; the child gets the write end of the announcements and the read end of the
    releases (``--gate-fds``). When the child dies, :meth:`held` reports it at once (end of
    file) instead of waiting out its timeout.
    """

    def __init__(self) -> None:
        self._announce_r, announce_w = os.pipe()
        release_r, self._release_w = os.pipe()
        self._child: tuple[int, int] | None = (announce_w, release_r)
        self._buf = b""

    def child_fds(self) -> tuple[int, int]:
        if self._child is None:
            raise SoakError("a write gate serves one capture process")
        return self._child

    def spawned(self) -> None:
        """Close the child's ends here, so that the child's death is seen as end of file."""
        for fd in self.child_fds():
            os.close(fd)
        self._child = None

    def held(self, timeout: float = 60.0) -> str:
        """Wait until the capture holds a write; the part file's name."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._announce_r], [], [], max(left, 0.0))
            if not ready:
                raise SoakError(f"no part-file write was held within {timeout:g} s")
            chunk = os.read(self._announce_r, 4096)
            if not chunk:
                raise SoakError("the capture exited while the harness waited for a held write")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def release(self) -> None:
        """Let the held write through; the next one will be held again."""
        os.write(self._release_w, RELEASE_ONE)

    def open(self) -> None:
        """Let the held write and every later one through."""
        os.write(self._release_w, RELEASE_ALL)

    def close(self) -> None:
        fds = [self._announce_r, self._release_w, *(self._child or ())]
        self._announce_r = self._release_w = -1
        self._child = None
        for fd in fds:
            if fd >= 0:
                os.close(fd)


@dataclass
class CaptureProc:
    """One capture subprocess (``recorder capture``, or ``program``); output goes to files
    under ``log_dir``. With a ``gate``, the capture's part-file writes wait for it."""

    vt: VenueThread
    data_dir: Path
    log_dir: Path
    extra: tuple[str, ...] = ()
    name: str = "capture"
    program: tuple[str, ...] = CLI_CAPTURE
    gate: WriteGate | None = None
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ended: float | None = None
    returncode: int | None = None

    @property
    def out_path(self) -> Path:
        return self.log_dir / f"{self.name}.out"

    @property
    def err_path(self) -> Path:
        return self.log_dir / f"{self.name}.err"

    def command(self) -> list[str]:
        extra = self.extra
        if self.gate is not None:
            extra += ("--gate-fds", ",".join(map(str, self.gate.child_fds())))
        return capture_command(self.vt.venue, self.data_dir, WRITER, *extra, program=self.program)

    def start(self) -> CaptureProc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        fds = self.gate.child_fds() if self.gate is not None else ()
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), env=soak_env(), stdout=out, stderr=err, pass_fds=fds)
        if self.gate is not None:
            self.gate.spawned()
        self.started = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after ``timeout``."""
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self.ended = time.monotonic()
        return self.returncode

    def kill(self) -> int:
        """SIGKILL and reap."""
        self.send(signal.SIGKILL)
        rc = self.wait(30)
        if rc is None:
            raise SoakError(f"{self.name} (pid {self.pid}) survived SIGKILL for 30 s")
        return rc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit; a process that hangs is killed and reported."""
        self.send(sig)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
            raise SoakError(f"{self.name} did not exit within {timeout:g} s of signal {sig}; killed")
        return rc

    def stderr(self) -> str:
        try:
            return self.err_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self) -> str:
        try:
            return self.out_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 600) -> str:
        text = self.stderr().strip()
        return text[-n:].replace("\n", " | ")


@dataclass
class RssMonitor:
    """Samples the resident set size of watched processes every ``interval`` seconds; a
    process counts with its children (a capture's decoder is a child process).

    Polling is the only option: no event fires when a process's memory grows. Besides the
    samples, the kernel's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``) of the
    watched process is read at each sample, so its own peak between two samples is not
    missed. A process tree has no such mark: its figure is the largest sum of its members'
    resident sets at one sample (adding each member's high-water mark would add peaks that
    came at different times: the capture's journal seal after its decoder has exited, say).
    """

    interval: float = 0.05
    peaks: dict[int, int] = field(default_factory=dict)  # pid → bytes
    _pids: set[int] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssMonitor:
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)
        self._thread.start()
        return self

    def watch(self, pid: int) -> None:
        with self._lock:
            self._pids.add(pid)
            self.peaks.setdefault(pid, 0)
        self._sample(pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                pids = list(self._pids)
            for pid in pids:
                self._sample(pid)

    def _sample(self, pid: int) -> None:
        """The process and its children together (a capture decodes in a child process)."""
        try:
            proc = psutil.Process(pid)
            rss, hwm = proc.memory_info().rss, _vm_hwm(pid)
            kids = proc.children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            with self._lock:
                self._pids.discard(pid)
            return
        for kid in kids:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                rss += kid.memory_info().rss
        with self._lock:
            self.peaks[pid] = max(self.peaks.get(pid, 0), rss, hwm)

    def peak(self, pid: int | None = None) -> int:
        with self._lock:
            if pid is not None:
                return self.peaks.get(pid, 0)
            return max(self.peaks.values(), default=0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0
