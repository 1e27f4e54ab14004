"""Shared fixtures: the embedded venue on its own event-loop thread, for subprocess tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from recorder.sim.venue import VenueConfig
from soak.harness import VenueThread


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
