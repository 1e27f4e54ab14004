"""Shared fixtures: the embedded venue on its own event-loop thread, for subprocess tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from recorder.venue import Venue, VenueConfig

T = TypeVar("T")


class VenueThread:
    """A :class:`Venue` served from a background thread, so a test can run the real CLI
    in a subprocess against it and still await the venue's ground truth."""

    def __init__(self, config: VenueConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="venue", daemon=True)
        self.thread.start()
        self.venue = Venue(config)
        self.call(self.venue.start())

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.call(self.venue.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def venue_thread() -> Iterator[Any]:
    made: list[VenueThread] = []

    def start(config: VenueConfig) -> VenueThread:
        vt = VenueThread(config)
        made.append(vt)
        return vt

    yield start
    for vt in made:
        vt.close()
