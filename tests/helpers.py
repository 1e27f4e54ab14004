"""Ground-truth helpers shared by the end-to-end tests: what the store holds versus what the
journal says arrived, in one comparable row layout."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import queries
from recorder.capture.live import CaptureConfig
from recorder.client.credentials import Credentials
from recorder.client.session import SessionTuning
from recorder.kiwoom.decode import Decoder
from recorder.kiwoom.frames import row_columns
from recorder.store.journal import EVENT, read_records
from recorder.store.layout import journal_root


def stored_rows(data_dir: Path, table: str) -> list[tuple]:
    """Rows of ``table`` ordered by seq: symbol, venue, seq, ts (µs), then every value column."""
    cols = ", ".join(["symbol", "venue", "seq", "epoch_us(ts) AS ts", *row_columns(table)[5:]])
    return [
        tuple(r.values())
        for r in queries.sql(data_dir, f"SELECT {cols} FROM {table} ORDER BY seq").to_pylist()
    ]


def journaled_frames(data_dir: Path, writer: str) -> list[tuple[int, int, str | bytes]]:
    """(fno, recv_ts, frame) of every frame record in a writer's journal."""
    return [
        (r.fno, r.recv_ts_ns, r.frame())
        for r in read_records(journal_root(data_dir, writer))
        if r.kind != EVENT
    ]


def decoded_rows(frames: list[tuple[int, int, str | bytes]], table: str) -> list[tuple]:
    """What journaled frames decode to, in the layout of :func:`stored_rows`."""
    dec = Decoder()
    for fno, recv, raw in frames:
        dec.add(raw, recv, fno)
    res = dec.finish()
    if table not in res.tables:
        return []
    cols = res.tables[table].columns
    rows = zip(
        cols["symbol"],
        cols["venue"],
        cols["seq"],
        [t // 1000 for t in cols["ts"]],
        *(cols[n] for n in row_columns(table)[5:]),
        strict=True,
    )
    return sorted(rows, key=lambda r: r[2])


def journal_rows(data_dir: Path, writer: str, table: str) -> list[tuple]:
    """Every row the writer's journal decodes to: what the store must hold, exactly once."""
    return decoded_rows(journaled_frames(data_dir, writer), table)


CREDS = Credentials("test-appkey-123456", "test-secret-abcdef")
# Backoffs and pacing short enough for tests; REG batches of 2 so one refusal hits few items.
FAST_SESSION = SessionTuning(
    reg_batch=2,
    reg_per_s=50.0,
    backoff_base_s=0.01,
    backoff_cap_s=0.05,
    kicked_backoff_s=0.05,
    reg_retry_s=0.05,
)


def capture_config(
    venue: Any, data_dir: Path, writer: str, symbols: Any = None, **options: Any
) -> CaptureConfig:
    """An in-process capture of ``venue`` (every item it trades unless ``symbols``) into ``data_dir``."""
    return CaptureConfig(
        data_dir=data_dir,
        ws_url=venue.ws_url,
        rest_url=venue.rest_url,
        keys=[CREDS],
        symbols=symbols if symbols is not None else venue.feed.items,
        writer=writer,
        tuning=FAST_SESSION,
        **options,
    )


WAIT_S = 120.0  # bounds a hang; a loaded machine may start Python slowly


def trades_sent(vt: Any) -> int:
    return sum(1 for s in vt.venue.sent if s.entry["type"] == "0B")


def capture_until(
    vt: Any, cmd: list[str], env: dict[str, str], *, logins: int, trades: int = 1
) -> subprocess.CompletedProcess[str]:
    """Run a capture until the venue has had ``logins`` LOGINs in all and has sent ``trades``
    more trades that the capture has provably read (a PING barrier after them), then SIGTERM.

    Output goes to unnamed temporary files, so a chatty capture never blocks on a full pipe.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        try:
            vt.wait_logins(logins, WAIT_S)
            want = vt.run(lambda: trades_sent(vt)) + trades
            vt.wait(lambda: trades_sent(vt) >= want, WAIT_S, f"{want} trades sent")
            vt.barrier(WAIT_S)
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(cmd, rc, out.read(), err.read())


T0 = 1_784_510_876_000_000_000  # 2026-07-20 10:27:56 KST


def async_test(fn: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test body on a fresh event loop, bounded to 30 s (a hang fails, not stalls)."""

    @functools.wraps(fn)
    def wrapper() -> None:
        asyncio.run(asyncio.wait_for(fn(), 30))  # type: ignore[arg-type]

    return wrapper


class Clock:
    """A settable epoch-ns clock (the venue's token expiry, rate windows, market time): it
    moves only when the test moves it."""

    def __init__(self, now: int = T0) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now
