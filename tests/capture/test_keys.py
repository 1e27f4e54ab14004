"""Several app keys in one capture, over loopback: one session per key, the universe spread
over them (200 codes each), and a failure on one key isolated from the others."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import queries
from recorder.capture.assign import assign_keys, key_id
from recorder.capture.live import Capture
from recorder.client.credentials import Credentials
from recorder.client.session import SessionTuning
from recorder.errors import AuthError
from recorder.sim.venue import Venue, VenueConfig
from recorder.store.journal import EVENT, read_records
from recorder.store.layout import journal_root
from tests.helpers import capture_config, journal_rows, stored_rows

# Kiwoom's REG pacing (100 codes a REG, under 5 REG/s), fast reconnects.
TUNING = SessionTuning(backoff_base_s=0.01, backoff_cap_s=0.05, kicked_backoff_s=0.05, reg_retry_s=0.3)
KEYS = [Credentials(f"multi-appkey-{n:04d}", f"multi-secret-{n:04d}") for n in range(3)]
CODES = [f"{100000 + 7 * n:06d}" for n in range(500)]


def _venue(**kw: object) -> VenueConfig:
    pairs = tuple((k.appkey, k.secretkey) for k in KEYS)
    return VenueConfig(symbols=CODES, venues=("KRX",), keys=pairs, trade_rate=0.5, book_rate=0.2, **kw)


async def _capture(
    tmp: Path, venue: Venue, keys: list[Credentials], until_items: int
) -> tuple[Capture, dict[str, set[str]]]:
    """Capture until the venue has ``until_items`` subscriptions; the items of each key's session."""
    cfg = dataclasses.replace(
        capture_config(venue, tmp, "multi", CODES, types=("0B",)), keys=keys, tuning=TUNING
    )
    capture = Capture(cfg)
    task = asyncio.create_task(capture.run())
    try:
        # Every subscribed (item, type) on the venue side, across every key's connection.
        await venue.wait_for(
            lambda: sum(len(c.subscriptions) for c in venue.connections.values()) >= until_items, 30
        )
        await venue.ping_barrier(30)
        by_key = {c.appkey or "": {i for i, _ in c.subscriptions} for c in venue.connections.values()}
    finally:
        capture.stop.set()
        await asyncio.wait_for(task, 60)
    return capture, by_key


def test_three_keys_500_codes_one_session_each(tmp_path: Path) -> None:
    async def go() -> tuple[Venue, Capture, dict[str, set[str]]]:
        async with Venue(_venue()) as venue:
            capture, by_key = await _capture(tmp_path, venue, KEYS, 500)
            return venue, capture, by_key

    venue, capture, by_key = asyncio.run(go())
    # One session per key; every key under 200 codes; together exactly the universe.
    assert sorted(by_key) == sorted(k.appkey for k in KEYS)
    assert all(len(items) <= 200 for items in by_key.values())
    assert sorted(i for items in by_key.values() for i in items) == sorted(CODES)
    # The split is the documented deterministic one.
    plan = assign_keys(CODES, [key_id(k.appkey) for k in KEYS])
    assert {k.appkey: set(plan[key_id(k.appkey)]) for k in KEYS} == by_key
    assert venue.stats.kicks == 0
    assert all(k.ever_subscribed for k in capture.stats.keys)
    # The three sessions journal into one journal, and the store holds exactly what it decodes to.
    frames = [r for r in read_records(journal_root(tmp_path, "multi")) if r.kind != EVENT]
    assert {r.session for r in frames} == {0, 1, 2}
    assert stored_rows(tmp_path, "trades") == journal_rows(tmp_path, "multi", "trades")


def test_one_refused_key_does_not_stop_the_others(tmp_path: Path) -> None:
    bad = [KEYS[0], Credentials(KEYS[1].appkey, "wrong-secret-0000"), KEYS[2]]

    async def go() -> tuple[Capture, BaseException | None, dict[str, int]]:
        async with Venue(_venue()) as venue:
            cfg = dataclasses.replace(
                capture_config(venue, tmp_path, "multi", CODES, types=("0B",)), keys=bad, tuning=TUNING
            )
            capture = Capture(cfg)
            task = asyncio.create_task(capture.run())
            plan = assign_keys(CODES, [key_id(k.appkey) for k in bad])
            want = len(plan[key_id(KEYS[0].appkey)]) + len(plan[key_id(KEYS[2].appkey)])
            await venue.wait_for(
                lambda: sum(len(c.subscriptions) for c in venue.connections.values()) >= want, 30
            )
            await venue.ping_barrier(30)
            by_key = {c.appkey or "": len(c.subscriptions) for c in venue.connections.values()}
            capture.stop.set()
            try:
                await asyncio.wait_for(task, 60)
                err = None
            except AuthError as exc:
                err = exc
            return capture, err, by_key

    capture, err, by_key = asyncio.run(go())
    assert err is not None and "1 of 3 keys recorded nothing" in str(err) and "key 2/3" in str(err)
    assert "wrong-secret" not in str(err) and KEYS[1].appkey not in str(err)
    assert sorted(by_key) == sorted([KEYS[0].appkey, KEYS[2].appkey])
    states = [k.state for k in capture.stats.keys]
    assert (
        states[1] == "failed"
        and capture.stats.keys[0].ever_subscribed
        and capture.stats.keys[2].ever_subscribed
    )
    # The refused key's items have a login_failed gap; the others recorded.
    gaps = queries.sql(tmp_path, "SELECT kind, symbols FROM gaps WHERE kind = 'login_failed'").to_pylist()
    plan = assign_keys(CODES, [key_id(k.appkey) for k in bad])
    assert len(gaps) == 1 and sorted(gaps[0]["symbols"]) == sorted(plan[key_id(bad[1].appkey)])
    assert stored_rows(tmp_path, "trades") == journal_rows(tmp_path, "multi", "trades")


def test_universe_too_large_for_the_keys_is_refused_before_any_network_call(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(
        "".join(f'[[key]]\nappkey = "{k.appkey}"\nsecretkey = "{k.secretkey}"\n' for k in KEYS[:2])
    )
    keys.chmod(0o600)
    codes = ",".join(f"{100000 + n:06d}" for n in range(401))
    # Port 9 on loopback: nothing listens; a network call would fail differently.
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "recorder.cli.main",
            "capture",
            "--symbols",
            codes,
            "--keys",
            str(keys),
            "--ws-url",
            "ws://127.0.0.1:9/x",
            "--rest-url",
            "http://127.0.0.1:9",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert "401 codes exceed the 400-code limit of 2 app keys" in r.stderr and "3 keys are needed" in r.stderr
    assert KEYS[0].appkey not in r.stderr + r.stdout
    assert not (tmp_path / "d").exists()


def test_keys_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[key]]\nappkey = "a"\nsecretkey = "b"\n')
    keys.chmod(0o644)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "recorder.cli.main",
            "capture",
            "--sim",
            "--keys",
            str(keys),
            "--duration",
            "5s",
            "--data-dir",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "chmod 600" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_cover_the_universe_without_overlap(tmp_path: Path, shards: int) -> None:
    async def one(shard: int) -> set[str]:
        async with Venue(_venue()) as venue:
            cfg = capture_config(venue, tmp_path, f"shard{shard}", CODES, types=("0B",))
            cfg = dataclasses.replace(cfg, keys=KEYS, shard=(shard, shards), tuning=TUNING)
            from recorder.capture.assign import shard_items

            want = len(shard_items(CODES, shard, shards))
            capture = Capture(cfg)
            task = asyncio.create_task(capture.run())
            await venue.wait_for(
                lambda: sum(len(c.subscriptions) for c in venue.connections.values()) >= want, 30
            )
            got = {i for c in venue.connections.values() for i, _ in c.subscriptions}
            capture.stop.set()
            await asyncio.wait_for(task, 60)
            return got

    slices = [asyncio.run(one(i)) for i in range(1, shards + 1)]
    assert sum(len(s) for s in slices) == len(CODES)
    assert set().union(*slices) == set(CODES)
