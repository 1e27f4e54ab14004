"""``recorder backfill``: fetch a day's missing trades from the REST tick chart and store them.

The store side (holes, alignment, proof, tables) is :mod:`recorder.store.backfill`; this module
walks ka10079 for each item with holes, with one worker per app key (each client paces itself
at Kiwoom's 5 requests a second per key and TR and backs off on 429), and writes what aligns.

A walk goes back from the newest execution, page by page, only as far as the earliest hole of
the item needs (the second of the recorded trade before it), so a gap late in the day costs a
few pages, not the day. An authentication failure stops everything at once; a business error
for one item (an unknown code, say) makes that item's holes unhealable with the reason; a
transport failure or a rate limit that does not clear leaves the item unexamined (nothing is
stored for it, so the next run tries again) and the run fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from recorder.client.rest import ChartRow, KiwoomRest
from recorder.errors import AuthError, ConfigError, KiwoomError, RateLimitError, RecorderError, StoreError
from recorder.kiwoom.time import NS
from recorder.store import backfill as bf
from recorder.store.fs import locked
from recorder.store.sink import Sink

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

log = logging.getLogger(__name__)

Progress = Callable[["BackfillResult"], None]


@dataclass(slots=True)
class BackfillResult:
    """What a backfill of one day did."""

    date: str
    items: int = 0  # items with holes
    items_done: int = 0
    holes_aligned: int = 0  # holes examined so far whose fill adds up (for progress)
    holes: int = 0
    healed: int = 0
    unhealable: int = 0
    trades: int = 0  # rows written with source = 'rest'
    shares: int = 0  # their quantity
    residual: int = 0  # shares still missing in unhealable holes
    outcomes: int = 0  # backfill rows written (new or changed outcomes)
    requests: int = 0
    pages: int = 0
    rate_limited: int = 0
    failed: list[str] = field(default_factory=list)  # items left unexamined, with why

    def summary(self) -> str:
        if not self.holes:
            return f"backfill {self.date}: no trade gaps to heal"
        text = (
            f"backfill {self.date}: {self.holes} holes in {self.items} items: {self.healed} healed "
            f"({self.trades:,} trades, {self.shares:,} shares), {self.unhealable} not healable "
            f"({self.residual:,} shares still missing); {self.requests} requests, {self.pages} pages, "
            f"{self.rate_limited} rate-limited"
        )
        if self.failed:
            text += f"; {len(self.failed)} items not examined ({self.failed[0]})"
        return text


async def backfill(
    data_dir: Path | S3Store,
    date: str,
    clients: Sequence[KiwoomRest],
    *,
    items: Sequence[str] = (),
    clock: Callable[[], int] = time.time_ns,
    progress: Progress | None = None,
) -> BackfillResult:
    """Heal the trade holes of ``date`` (``YYYY-MM-DD``) in the store at ``data_dir``.

    Args:
        clients: one REST client per app key; items are shared out among them.
        items: only these items (``005930`` or ``005930_NX``; a bare code means every venue
            recorded for it); default every item with trades that day.
        clock: wall-clock epoch ns, for ``recv_ts`` and ``checked_ts``.
        progress: called after each item with the result so far.

    Raises:
        ConfigError: no store at ``data_dir``, no clients, or another backfill is running.
        AuthError: Kiwoom refused a key (nothing more is fetched; what was healed is stored).
        StoreError: a part file could not be read or written.

    An ``s3://`` store (:class:`~recorder.store.objstore.S3Store`): the day's trades, gaps and
    backfill objects are copied into a temporary folder, healed there, and the new part files
    uploaded (no lock: one backfill per prefix at a time; a crash loses only that run's work).
    """
    if not isinstance(data_dir, Path):
        return await _backfill_remote(data_dir, date, clients, items=items, clock=clock, progress=progress)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir} is not a directory; no store there")
    if not clients:
        raise ConfigError("backfill needs at least one app key")
    res = BackfillResult(date)
    lock_dir = data_dir / bf.BACKFILL_DIR
    lock_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        with locked(lock_dir / "LOCK"):
            await _run(data_dir, date, clients, items, clock, progress, res)
    except BlockingIOError:
        raise ConfigError(f"another backfill is running on {data_dir}") from None
    return res


async def _run(
    data_dir: Path,
    date: str,
    clients: Sequence[KiwoomRest],
    items: Sequence[str],
    clock: Callable[[], int],
    progress: Progress | None,
    res: BackfillResult,
) -> None:
    try:
        recorded = bf.recorded_trades(data_dir, date, items)
        holes = bf.find_holes(recorded, bf.recorded_gaps(data_dir, date))
        stored = bf.stored_outcomes(data_dir, date)
    except (OSError, pa.ArrowException) as exc:
        raise StoreError(f"cannot read the store at {data_dir}: {exc}") from exc
    res.items, res.holes = len(holes), sum(len(h) for h in holes.values())
    if not holes:
        return
    queue: asyncio.Queue[str] = asyncio.Queue()
    for item in sorted(holes):
        queue.put_nowait(item)
    fills: list[bf.Fill] = []

    async def worker(client: KiwoomRest) -> None:
        while not queue.empty():
            item = queue.get_nowait()
            got = await _heal_item(client, date, recorded[item], holes[item], res)
            fills.extend(got)
            res.holes_aligned += sum(f.outcome == bf.HEALED for f in got)
            res.items_done += 1
            _count(res, clients)
            if progress is not None:
                progress(res)

    tasks = [asyncio.create_task(worker(c)) for c in clients]
    try:
        await asyncio.gather(*tasks)
    except AuthError:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        _store(data_dir, date, fills, stored, clock(), res)  # keep what was healed before the refusal
        raise
    _store(data_dir, date, fills, stored, clock(), res)


async def _heal_item(
    client: KiwoomRest, date: str, it: bf.ItemTrades, holes: list[bf.Hole], res: BackfillResult
) -> list[bf.Fill]:
    try:
        chart = await _chart(client, it.item, date, min(h.before.ts_ns for h in holes))
    except AuthError:
        raise
    except RateLimitError as exc:  # try again on the next run
        res.failed.append(f"{it.item}: {exc}")
        return []
    except KiwoomError as exc:
        return [bf.Fill(h, detail=f"the tick chart was refused: {exc}") for h in holes]
    except RecorderError as exc:  # transport: try again on the next run
        res.failed.append(f"{it.item}: {exc}")
        return []
    return bf.align(it, holes, chart)


async def _chart(client: KiwoomRest, item: str, date: str, oldest_ns: int) -> list[ChartRow]:
    """The item's chart rows of ``date`` back to the second of ``oldest_ns``, oldest first."""
    day_start = bf.kst_midnight_ns(date)
    day_end = day_start + 86_400 * NS
    stop_before = oldest_ns // NS * NS
    rows: list[ChartRow] = []
    pages = client.tick_chart(item)
    try:
        async for page in pages:
            done = False
            for r in page:
                if r.ts_ns >= day_end:
                    continue  # a later day's tape: walking back towards the date
                if r.ts_ns < day_start:
                    done = True
                    break
                rows.append(r)
                if r.ts_ns < stop_before:
                    done = True
            if done:
                break
    finally:
        await pages.aclose()  # type: ignore[attr-defined]  # an async generator
    rows.reverse()
    return rows


async def _backfill_remote(
    store: S3Store, date: str, clients: Sequence[KiwoomRest], **kw: Any
) -> BackfillResult:
    import shutil
    import tempfile

    from recorder.store import objstore
    from recorder.store.inventory import scan

    copy = Path(tempfile.mkdtemp(prefix="recorder-backfill-"))
    try:
        await asyncio.to_thread(
            objstore.mirror, store, copy, tables=("trades", "gaps", "backfill"), dates=[date]
        )
        copied = scan(copy).parts
        res = await backfill(copy, date, clients, **kw)
        for p in copied:  # what was there already; the rest is the backfill's own
            p.path.unlink()
        await asyncio.to_thread(objstore.publish, store, copy, check_existing=False)
        return res
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def _store(
    data_dir: Path, date: str, fills: list[bf.Fill], stored: set[Any], now_ns: int, res: BackfillResult
) -> None:
    new = [f for f in fills if bf.outcome_key(f) not in stored]
    for f in fills:
        if f.outcome == bf.HEALED:
            res.healed += 1
            res.trades += len(f.rows)
            res.shares += f.filled
        else:
            res.unhealable += 1
            res.residual += f.hole.missing
    if not new:
        return
    writer = "backfill-" + dt.datetime.fromtimestamp(now_ns / NS, dt.UTC).strftime("%Y%m%dT%H%M%S")
    sink = Sink(data_dir, writer)
    healed = bf.fill_table(new, date, now_ns)
    if len(healed):
        sink.add_tables({"trades": healed})
    sink.add_tables({"backfill": bf.outcome_table(new, date, now_ns)})
    sink.close()
    res.outcomes = len(new)
    log.info("backfill %s: %d outcomes stored by writer %s", date, len(new), writer)


def _count(res: BackfillResult, clients: Sequence[KiwoomRest]) -> None:
    res.requests = sum(c.counters.requests for c in clients)
    res.pages = sum(c.counters.pages for c in clients)
    res.rate_limited = sum(c.counters.rate_limited for c in clients)


def rest_url_for(env_name: str, rest_url: str | None, environ: dict[str, str] | None = None) -> str:
    """The REST server of a backfill: ``--rest-url``, else ``KIWOOM_REST_URL``, else ``--env``'s."""
    import os

    from recorder.kiwoom.limits import ENDPOINTS

    if env_name not in ENDPOINTS:
        raise ConfigError(f"--env must be prod or mock, not {env_name!r}")
    environ = dict(os.environ) if environ is None else environ
    return rest_url or environ.get("KIWOOM_REST_URL") or ENDPOINTS[env_name][0]


async def run_backfill(
    data_dir: Path | S3Store,
    date: str,
    rest_url: str,
    keys: Sequence[Any],
    *,
    items: Sequence[str] = (),
    progress: Progress | None = None,
) -> BackfillResult:
    """:func:`backfill` with one :class:`~recorder.client.rest.KiwoomRest` per key pair."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(KiwoomRest(rest_url, k)) for k in keys]
        return await backfill(data_dir, date, clients, items=items, progress=progress)
