"""Shortened soak scenarios (``python -m soak`` runs the long ones): the real ``recorder
capture`` CLI (or :mod:`soak.capture_proc`, the same library with soak knobs) in
subprocesses against the embedded venue, every fault scripted and seeded,
each run ending with the ground-truth comparison of :mod:`soak.truth` (venue frames ↔
journal ↔ store).

Synchronisation is on venue conditions, process exits and PING barriers (see
:mod:`soak.harness`) and the write gate's pipe; the only polling is RSS sampling, for
which no event exists.

Three tests pin recorder bugs the soak found and that are fixed: an entry whose ``type`` is
a list or object, integers below the int64 range, and ENOSPC on the journal.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from recorder.client.session import SessionTuning
from soak.capture_proc import request
from soak.frames import Injected, Knobs
from soak.scenarios import (
    Outcome,
    can_mount,
    disk_full,
    drops,
    malformed,
    refused_regs,
    sigkill,
    signals,
    slow_consumer,
)

pytestmark = pytest.mark.timeout(120)

KNOWN_BUGS_OFF = Knobs(unhashable_types=False, negative_overflow=False)


def passed(out: Outcome) -> Outcome:
    assert out.ok, "\n".join([out.line(), *out.failures])
    assert out.figures["missing"] == 0 and out.figures["duplicated"] == 0
    assert out.figures["recorded"] > 0
    return out


def test_drops_of_every_kind_lose_nothing(tmp_path: Path) -> None:
    out = passed(drops(tmp_path, seconds=1.0, seed=11, min_faults=4, pace=(10, 60)))
    faults = out.figures["faults"]
    assert set(faults) == {"close", "abort", "heartbeat", "kick"}, faults
    assert out.figures["gaps"] == sum(faults.values())  # one disconnect/kicked gap per fault


def test_refused_regs_are_retried_or_recorded_as_gaps(tmp_path: Path) -> None:
    out = passed(refused_regs(tmp_path, seconds=1.0, seed=12, min_cycles=4, pace=(10, 40)))
    assert out.figures["refused_105110"] >= 1 and out.figures["refused_105115"] >= 1
    assert out.figures["reg_rejected_gaps"] == out.figures["refused_105115"]


def test_sigkill_then_restart_exactly_once(tmp_path: Path) -> None:
    out = passed(sigkill(tmp_path, kills=2, seed=13))
    assert out.figures["restart_gaps"] == 2


def test_sigterm_and_sigint_flush_everything(tmp_path: Path) -> None:
    out = passed(signals(tmp_path, rounds=2, seed=14))
    assert out.figures["sigterm"] == 1 and out.figures["sigint"] == 1


def test_malformed_flood_is_all_in_rejects(tmp_path: Path) -> None:
    """The whole hypothesis grammar, including the classes that once crashed the capture."""
    out = passed(malformed(tmp_path, n_frames=150, seed=15, huge=1))
    assert out.figures["capture_survived"] == "yes"
    assert out.figures["journaled_injected"] == out.figures["injected"] == 151
    assert out.figures["mismatched"] == 0
    assert out.figures["rejects"] >= out.figures["injected"]  # every injected frame is bad


def _real(entry: dict[str, object]) -> str:
    return orjson.dumps({"data": [entry], "trnm": "REAL"}).decode()


GOOD_VALUES = {"20": "093000", "10": "+70000", "15": "-5", "13": "1000"}


def test_entry_with_a_list_as_type_is_rejected_not_fatal(tmp_path: Path) -> None:
    bad = Injected(
        _real({"values": GOOD_VALUES, "type": ["0B"], "name": "x", "item": "005930"}), 0, 1, "type"
    )
    passed(malformed(tmp_path, frames=[bad], seed=16))


def test_integers_below_int64_are_noted_in_rejects(tmp_path: Path) -> None:
    frames = [
        Injected(
            _real({"values": {**GOOD_VALUES, "1314": v}, "type": "0B", "name": "x", "item": "005930"}),
            1,
            1,  # an optional FID that does not parse: the row is stored with it null, and noted
            "negative_overflow",
        )
        for v in ("-9223372036854775809", "-43109310289925652480")
    ]
    passed(malformed(tmp_path, frames=frames, seed=17))


def test_slow_consumer_memory_is_bounded_and_nothing_is_dropped(tmp_path: Path) -> None:
    out = passed(
        slow_consumer(
            tmp_path, seconds=1.0, throttle=0.25, n_symbols=3, seed=18, bound_mb=400.0, held_entries=60
        )
    )
    assert out.figures["peak_2x_mb"] <= out.figures["peak_1x_mb"] * 1.25 + 25
    # Parquet lagged the journal: it grew while the first part-file write was held.
    assert out.figures["held_lag_records"] >= 1


def _mount_or_skip(tmp_path: Path) -> None:
    why = can_mount(tmp_path)
    if why is not None:
        pytest.skip(
            f"disk_full needs to mount a small tmpfs and cannot here ({why}); the journal and the "
            "Parquet writer have no injection point for ENOSPC from the CLI, so there is no honest "
            "unprivileged substitute. Run the tests as root (or `python -m soak --scenario disk_full`)."
        )


def test_disk_full_stops_loudly_and_everything_journaled_is_recovered(tmp_path: Path) -> None:
    _mount_or_skip(tmp_path)
    # A 2 MB disk: Parquet alone fills it in about 10 s of the feed, the journal in about 3
    out = passed(disk_full(tmp_path, size_mb=2, phases=("parquet_full", "both_full"), seed=19))
    assert "msg=parquet:ENOSPC" in out.figures["parquet_full"]
    assert "queryable" in out.figures["both_full"]


def test_disk_full_on_the_journal_exits_promptly(tmp_path: Path) -> None:
    _mount_or_skip(tmp_path)
    passed(disk_full(tmp_path, phases=("journal_full",), seed=20, hang_timeout=30.0))


def test_the_soak_capture_builds_a_typed_request(tmp_path: Path) -> None:
    """soak.capture_proc turns its options into the library's typed parameters."""
    req = request(
        [
            *("--ws-url", "ws://127.0.0.1:9/ws", "--rest-url", "http://127.0.0.1:9"),
            *("--data-dir", str(tmp_path), "--symbols", "005930,000660_NX", "--writer-id", "w"),
            *("--flush-age", "0.5s", "--backoff-base-s", "0.05", "--reg-batch", "4", "--throttle", "0.1"),
        ]
    )
    assert req.tuning == SessionTuning(backoff_base_s=0.05, reg_batch=4)
    assert req.flush_age_s == 0.5 and list(req.symbols) == ["005930", "000660_NX"]
    assert req.part_writer is not None
    plain = request(
        [
            "--ws-url",
            "ws://h/ws",
            "--rest-url",
            "http://h",
            "--data-dir",
            "d",
            "--symbols",
            "005930",
            "--writer-id",
            "w",
        ]
    )
    assert plain.tuning == SessionTuning() and plain.part_writer is None


def test_many_keys_500_codes_with_cuts_lose_nothing_received(tmp_path: Path) -> None:
    from soak.many_keys import many_keys

    out = passed(many_keys(tmp_path, seconds=2.0, cut_every=1.0, seed=21))
    assert out.figures["cuts"] >= 1 and out.figures["logins"] == 3 * (out.figures["cuts"] + 1)
    assert out.figures["coverage"] > 0  # measured, not bounded here: it depends on the machine's speed
