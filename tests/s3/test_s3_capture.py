"""``recorder capture --data-dir s3://…`` from a venue on loopback, into a real S3-compatible
server (moto on loopback): journal and staging on local disk, part files uploaded whole,
compacted on S3 afterwards, verify clean, rows equal to what the venue sent."""

from __future__ import annotations

import collections
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import queries
from recorder.cli.main import main
from recorder.kiwoom.fields import TABLES
from recorder.sim.venue import VenueConfig
from recorder.store import objstore
from recorder.store.objstore import S3Store
from soak.harness import capture_command, soak_env
from tests.s3.conftest import SECRET, S3Server


def trades_by_value(entries: list[Any]) -> collections.Counter[tuple[str, int, int, int]]:
    return collections.Counter(
        (
            e.entry["item"][:6],
            abs(int(e.entry["values"]["10"])),
            abs(int(e.entry["values"]["15"])),
            int(e.entry["values"]["13"]),
        )
        for e in entries
        if e.entry["type"] == "0B"
    )


def test_capture_into_s3_with_a_local_journal(
    s3_server: S3Server, s3: S3Store, tmp_path: Path, venue_thread: Any
) -> None:
    vt = venue_thread(
        VenueConfig(
            n_symbols=3,
            tick_interval=0.02,
            trade_rate=20.0,
            book_rate=10.0,
            seed=5,
            ping_interval=0.2,
            heartbeat_miss_limit=1_000_000,
        )
    )
    state = tmp_path / "state"
    cmd = capture_command(vt.venue, s3.url, "w1", "--journal-dir", str(state), "--flush-age", "0.2s")  # type: ignore[arg-type]
    proc = subprocess.Popen(cmd, env=soak_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        vt.wait_logins(1)
        vt.wait_entries(300)
        before = vt.barrier()  # every frame written before it was read and journaled
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = (out + err).decode()
    assert proc.returncode == 0, text
    assert SECRET not in text and "Traceback" not in text
    assert s3.url in out.decode()

    # Nothing left staged; the journal stays local. Stopped by a signal, the capture leaves
    # compaction for later: `recorder compact` makes it one object per partition.
    assert not [p for t in TABLES for p in (state / t).rglob("*.parquet")]
    assert list((state / "_journal" / "w1").glob("seg-*"))
    # (How many flushes a partition got depends on the machine's speed: compaction on S3 is
    # proven in test_s3_maintenance; here it must leave one object per partition.)
    assert "compaction skipped" in err.decode()
    r = CliRunner().invoke(main, ["compact", "--data-dir", s3.url, "--journal-dir", str(state)])
    assert r.exit_code == 0, r.output
    parts = objstore.scan(s3).parts
    per_partition = collections.Counter((p.table, p.date, p.symbol) for p in parts)
    assert parts and set(per_partition.values()) == {1}, per_partition

    r = CliRunner().invoke(main, ["verify", "--data-dir", s3.url, "--journal-dir", str(state)])
    assert r.exit_code == 0, r.output
    assert "writer w1: journal (whole) decoded and compared" in r.output

    sent = vt.run(lambda: list(vt.venue.sent))
    read = [e for e in sent if e.frame_index < before.get(e.conn_id, 0)]
    stored = collections.Counter(
        tuple(row.values())
        for row in queries.sql(s3, "SELECT symbol, price, volume, cum_volume FROM trades").to_pylist()
    )
    assert sum(stored.values()) >= 100
    assert not trades_by_value(read) - stored  # every trade the capture had read is stored
    assert not stored - trades_by_value(sent)  # and nothing else


def test_a_capture_that_never_subscribed_still_uploads_its_gap(
    s3_server: S3Server, s3: S3Store, tmp_path: Path
) -> None:
    from tests.capture.test_runner import ENV, assert_nothing_captured, closed_port, command

    ws, rest = closed_port(), closed_port()
    state = tmp_path / "state"
    t0 = time.time_ns()
    r = subprocess.run(
        [
            *command(tmp_path / "unused"),
            *(
                "--ws-url",
                f"ws://127.0.0.1:{ws}/api/dostk/websocket",
                "--rest-url",
                f"http://127.0.0.1:{rest}",
            ),
            *("--duration", "1s", "--journal-dir", str(state), "--data-dir", s3.url),  # the last one counts
        ],
        env={**ENV, **s3_server.env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_nothing_captured(r, s3, t0, time.time_ns(), at_least_s=1.0)  # type: ignore[arg-type]
    assert not [p for t in TABLES for p in (state / t).rglob("*.parquet")]
    assert not (tmp_path / "unused").exists()
