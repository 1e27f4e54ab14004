"""The machinery of a soak run: the embedded venue on its own event-loop thread, the real
``recorder capture`` CLI in subprocesses against it, and RSS polling of those processes.

Synchronisation is on events wherever one exists: venue conditions
(:meth:`VenueThread.wait`), process exit (``Popen.wait``) and PING barriers. The only
polling is RSS sampling (there is no event for "memory grew") and, in the slow-consumer
scenario, the journal/checkpoint sampler (no event for "the child appended a record").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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

T = TypeVar("T")

APPKEY, SECRET = "soak-appkey-5e1f0a27", "soak-secret-9b2c7d41e8"
RECORDER = [sys.executable, "-m", "recorder.cli.main"]
WRITER = "soak"
MB = 1 << 20


class SoakError(Exception):
    """A step of a scenario could not complete (a wait timed out, a process misbehaved)."""


class VenueThread:
    """A :class:`Venue` served from a background thread, so the real CLI can run in a
    subprocess against it while this process awaits the venue's ground truth.

    The tests' ``venue_thread`` fixture uses it too.
    """

    def __init__(self, config: VenueConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="soak-venue", daemon=True)
        self.thread.start()
        self.venue = Venue(config)
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


def capture_command(venue: Venue, data_dir: Path, writer: str, *extra: str) -> list[str]:
    """``recorder capture`` of every item ``venue`` trades, into ``data_dir`` as ``writer``."""
    return [
        *RECORDER,
        "capture",
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


@dataclass
class CaptureProc:
    """One ``recorder capture`` subprocess; output goes to files under ``log_dir``."""

    vt: VenueThread
    data_dir: Path
    log_dir: Path
    extra: tuple[str, ...] = ()
    name: str = "capture"
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
        return capture_command(self.vt.venue, self.data_dir, WRITER, *self.extra)

    def start(self) -> CaptureProc:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(self.command(), env=soak_env(), stdout=out, stderr=err)
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
    """Samples the resident set size of watched processes every ``interval`` seconds.

    Polling is the only option: no event fires when a process's memory grows. Besides the
    samples, the kernel's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``) is read
    at each sample, so a peak between two samples is not missed.
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
        try:
            rss = psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            with self._lock:
                self._pids.discard(pid)
            return
        hwm = _vm_hwm(pid)
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
