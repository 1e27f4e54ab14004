"""The capture's decoder process: it goes with its parent, its death is loud, signals are the
parent's to act on, and whatever happens every journaled row ends up stored exactly once."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import queries
from recorder.capture.decoder import LOCK, wait_for_orphan
from recorder.errors import JournalError
from recorder.sim.venue import VenueConfig
from recorder.store.fs import acquire_lock
from recorder.store.layout import journal_root
from soak.harness import WRITER, CaptureProc
from tests.helpers import journal_rows, stored_rows

VENUE = VenueConfig(n_symbols=3, tick_interval=0.02, seed=11, trade_rate=20.0, book_rate=20.0)
FLUSH = ("--flush-age", "0.2s")


def _decoder_of(cap: CaptureProc) -> psutil.Process:
    """The capture's one child process. It is started before the first LOGIN, so once the
    venue has seen a login it exists."""
    (child,) = psutil.Process(cap.pid).children()
    return child


def _wait_gone(proc: psutil.Process, timeout: float = 30.0) -> bool:
    """Whether ``proc`` has exited (or is a zombie nobody reaps) within ``timeout``. The kernel
    offers no event for a process that is not our child: this polls."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def _capturing(vt: Any, tmp_path: Path, name: str) -> tuple[Path, Path, CaptureProc]:
    """The real CLI capturing into ``tmp_path/store``, logged in and 40 entries further on."""
    data, logs = tmp_path / "store", tmp_path / "logs"
    cap = CaptureProc(vt, data, logs, FLUSH, name).start()
    vt.wait_logins(1)
    vt.wait_entries(vt.entries_sent() + 40)
    return data, logs, cap


def _loads_arrow(pid: int) -> bool:
    """Whether process ``pid`` has Arrow's C++ library mapped (pyarrow imported)."""
    return "libarrow" in Path(f"/proc/{pid}/maps").read_text()


def _restart_and_check(vt: Any, data: Path, logs: Path, logins: int) -> None:
    """Run the real CLI again on the store: afterwards every row the journal decodes to is
    stored exactly once, and the downtime is one restart gap. The recovery is the decoder
    process's: the recorder's own process never loads Arrow (about 60 MB resident)."""
    again = CaptureProc(vt, data, logs, FLUSH, "again").start()
    try:
        vt.wait_logins(logins)
        vt.wait_entries(vt.entries_sent() + 40)
        vt.barrier()
        assert _loads_arrow(_decoder_of(again).pid) and not _loads_arrow(again.pid)
    finally:
        rc = again.stop()
    assert rc == 0, again.tail()
    for table in ("trades", "orderbook"):
        rows = stored_rows(data, table)
        assert rows and rows == journal_rows(data, WRITER, table)
    restarts = queries.sql(data, "SELECT detail FROM gaps WHERE kind = 'restart'").to_pylist()
    assert restarts == [{"detail": "the recorder was not running (crash or kill); restarted"}]


def test_kill_9_of_the_capture_takes_its_decoder_along(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VENUE)
    data, logs, doomed = _capturing(vt, tmp_path, "doomed")
    decoder = _decoder_of(doomed)
    assert doomed.kill() == -signal.SIGKILL
    assert _wait_gone(decoder), "the decoder process outlived the capture"
    vt.wait_no_connections()
    _restart_and_check(vt, data, logs, 2)


def test_a_decoder_that_dies_ends_the_capture_loudly(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VENUE)
    data, logs, cap = _capturing(vt, tmp_path, "victim")
    _decoder_of(cap).kill()
    rc = cap.wait(60)
    err = cap.stderr()
    assert rc not in (0, None), err
    assert "the decoder process ended unexpectedly" in err and "Traceback" not in err
    vt.wait_no_connections()
    _restart_and_check(vt, data, logs, 2)


def test_a_ctrl_c_to_the_process_group_is_a_clean_stop(tmp_path: Path, venue_thread: Any) -> None:
    """A terminal sends SIGINT to the decoder too: it carries on until the parent tells it to
    drain, so the stop is clean and every journaled row is stored."""
    vt = venue_thread(VENUE)
    data, _, cap = _capturing(vt, tmp_path, "ctrl-c")
    vt.barrier()
    decoder = _decoder_of(cap)
    decoder.send_signal(signal.SIGINT)
    decoder.send_signal(signal.SIGTERM)
    assert cap.stop(signal.SIGINT) == 0, cap.tail()
    assert "Traceback" not in cap.stderr()
    for table in ("trades", "orderbook"):
        rows = stored_rows(data, table)
        assert rows and rows == journal_rows(data, WRITER, table)


def test_recovery_waits_for_an_earlier_decoder(tmp_path: Path) -> None:
    """While some process holds the decoder lock, a new run must not recover (it would
    write next to it); once the lock is free it goes ahead."""
    root = journal_root(tmp_path, WRITER)
    root.mkdir(parents=True)
    fd = acquire_lock(root / LOCK)
    try:
        with pytest.raises(JournalError, match="still holds"):
            wait_for_orphan(root, timeout_s=0.2)
    finally:
        os.close(fd)
    wait_for_orphan(root, timeout_s=0.2)
