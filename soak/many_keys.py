"""The market-scale soak scenario: 500 codes over 3 app keys in one capture, with cuts.

One ``recorder capture --keys`` process runs three sessions against the embedded venue,
which accepts exactly those three key pairs and trades 500 codes. Every few seconds the
venue cuts every session (a clean close, as Kiwoom does routinely). The figures: peak RSS of
the capture (the issue's bound is 400 MB for an hour), the store against the journal
(exactly once), and coverage: the entries the venue's market produced for the universe
against those the recorder journaled, so the cost of each reconnect is measured.
"""

from __future__ import annotations

import collections
import random
import time
from pathlib import Path
from typing import Any

from recorder.sim.market import SyntheticMarket
from recorder.sim.venue import Venue, VenueConfig
from soak import truth
from soak.harness import SoakError

KEYS = tuple((f"soak-appkey-{n:02d}-7f3a", f"soak-secret-{n:02d}-91c2") for n in range(3))
RSS_BOUND_MB = 400.0


class CountingFeed:
    """The venue's synthetic market, counting every REAL entry it produces, by item."""

    def __init__(self, market: SyntheticMarket) -> None:
        self.market = market
        self.items = market.items
        self.produced: collections.Counter[str] = collections.Counter()

    def step(self, now_ns: int) -> list[dict[str, Any]]:
        entries = self.market.step(now_ns)
        self.produced.update(e["item"] for e in entries)
        return entries

    def symbols_info(self) -> list[dict[str, Any]]:
        return self.market.symbols_info()


def keys_file(path: Path) -> Path:
    path.write_text("".join(f'[[key]]\nappkey = "{a}"\nsecretkey = "{s}"\n\n' for a, s in KEYS))
    path.chmod(0o600)
    return path


def many_keys(work: Path, *, seconds: float = 120.0, cut_every: float = 10.0, seed: int = 8) -> Any:
    """500 codes over 3 keys for ``seconds``, every session cut every ``cut_every`` seconds."""
    from soak.scenarios import Run, _outcome, venue_config

    codes = [f"{200000 + 13 * n:06d}" for n in range(500)]
    market = SyntheticMarket(codes, seed=seed, venues=("KRX",), trade_rate=1.0, book_rate=0.5)
    feed = CountingFeed(market)
    # An hour of 500 codes is millions of entries: the venue keeps none of them (record_sent
    # off), and the store is checked against the journal in bounded memory.
    cfg: VenueConfig = venue_config(
        seed, symbols=codes, venues=("KRX",), keys=KEYS, ping_interval=5.0, record_sent=False
    )
    failures: list[str] = []
    rng = random.Random(seed)
    with Run(work, "many_keys", cfg, feed=feed) as run:
        keys = keys_file(run.dir / "keys.toml")
        # The default flush age (5 minutes), as a nightly run has it: memory is bounded by the
        # capture's buffer budget, not by frequent flushes.
        proc = run.capture("--keys", str(keys), "--types", "0B,0D")
        venue: Venue = run.vt.venue
        _wait_subscribed(run, proc, len(codes))
        produced_at_start = run.vt.run(lambda: sum(feed.produced.values()))
        cuts = 0
        t0 = time.monotonic()
        per_s = 1.5 * len(codes)  # about what the market produces a second (trades + books)
        while time.monotonic() - t0 < seconds:
            # Paced by what the venue sends, not by sleeping: a loaded machine just runs longer.
            run.more_entries(int(per_s * cut_every * rng.uniform(0.7, 1.3)), timeout=cut_every * 20)
            run.vt.call(venue.close_all(1000, "Bye"))
            cuts += 1
            _wait_subscribed(run, proc, len(codes))
        run.vt.barrier()
        produced = run.vt.run(lambda: sum(feed.produced.values())) - produced_at_start
        rc = proc.stop()
        run.vt.wait_no_connections()
        if rc != 0:
            failures.append(f"capture exited {rc}: {proc.tail()}")
        sc = truth.store_vs_journal_at_scale(run.data, run.dir)
        failures.extend(sc.failures)
        received = sum(sc.expected.values())
        coverage = min(1.0, received / max(produced, 1))
        peak = run.peak_mb()
        if peak > RSS_BOUND_MB:
            failures.append(f"peak RSS {peak:.0f} MB over the {RSS_BOUND_MB:.0f} MB bound")
        logins = run.vt.run(lambda: venue.stats.logins)
        if logins != 3 * (cuts + 1):
            failures.append(f"{logins} LOGINs for 3 keys and {cuts} cuts (expected {3 * (cuts + 1)})")
        figures = {
            "sent": produced,
            "recorded": sum(sc.stored.values()),
            "missing": sc.missing,
            "duplicated": sc.duplicated,
            "gaps": len(truth.gaps(run.data)),
            "rejects": 0,
        }
        out = _outcome(
            "many_keys",
            run,
            None,
            failures,
            cuts=cuts,
            keys=3,
            codes=len(codes),
            coverage=round(coverage, 4),
            logins=logins,
        )
        out.figures.update(figures)
        return out


def _wait_subscribed(run: Any, proc: Any, n_codes: int, timeout: float = 60.0) -> None:
    """Until every code is registered again on some connection (or the capture died)."""
    venue = run.vt.venue

    def covered() -> bool:
        live = [c for c in venue.connections.values() if c.logged_in and not c.closing]
        return len(live) == 3 and len({i for c in live for i, _ in c.subscriptions}) >= n_codes

    try:
        run.vt.wait(covered, timeout, f"{n_codes} codes subscribed over 3 keys")
    except SoakError:
        if not proc.alive():
            raise SoakError(f"capture exited before subscribing: {proc.tail()}") from None
        raise


__all__ = ["many_keys"]
