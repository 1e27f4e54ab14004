"""``recorder backfill`` on a store in S3 (moto on loopback): the same healing as in a folder, and a
second run adds no object."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from pathlib import Path

import queries
from recorder.capture.backfill import run_backfill
from recorder.kiwoom.time import kst_date
from recorder.sim.venue import Venue
from recorder.store import objstore
from recorder.store.objstore import S3Store
from tests.capture.test_backfill import CFG, _capture_with_a_kick
from tests.helpers import CREDS
from tests.s3.conftest import S3Server

TAPE = (
    "SELECT symbol, venue, epoch(ts)::BIGINT AS s, price, volume, cum_volume, source FROM trades ORDER BY ALL"
)


def test_backfill_on_s3_heals_as_in_a_folder(s3_server: S3Server, s3: S3Store, tmp_path: Path) -> None:
    local, state = tmp_path / "local", tmp_path / "state"

    async def main() -> None:
        venue = Venue(dataclasses.replace(CFG, chart_page_rows=900))  # few pages: S3 is the subject
        await venue.start()
        try:
            await _capture_with_a_kick(local, venue)
            shutil.copytree(local, state)
            assert objstore.publish(s3, state).files > 0
            day = kst_date(time.time_ns())
            healed = await run_backfill(s3, day, venue.rest_url, [CREDS])
            assert healed.holes >= 1 and healed.healed == healed.holes, healed.summary()
            objects = objstore.list_objects(s3)
            again = await run_backfill(s3, day, venue.rest_url, [CREDS])
            assert again.outcomes == 0 and objstore.list_objects(s3) == objects
        finally:
            await venue.stop()

    asyncio.run(main())
    # The captured rows are all there, and the healed ones on top: the cum_volume chain is whole.
    captured = queries.sql(local, TAPE).to_pylist()
    stored = queries.sql(s3, TAPE).to_pylist()
    assert [r for r in stored if r["source"] == "ws"] == captured
    assert [r for r in stored if r["source"] == "rest"]
    breaks = (
        "SELECT count(*) FROM (SELECT cum_volume - volume - lag(cum_volume) OVER "
        "(PARTITION BY symbol, venue ORDER BY cum_volume) AS d FROM trades) WHERE d <> 0"
    )
    assert queries.sql(s3, breaks).column(0)[0].as_py() == 0
