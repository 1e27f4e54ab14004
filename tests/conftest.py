"""Shared fixtures: the embedded venue on its own event-loop thread, for subprocess tests.

``make test`` runs the suite on two pytest-xdist workers, a test file per worker at a time
(``--dist loadfile``), so a module's expensive fixture (the Spark session, the S3 server) is
started once. (``loadgroup`` would be finer, but with pytest 9.2 it silently stops grouping:
pytest-xdist issue 1386.)

Hypothesis runs without its per-example deadline: on a loaded machine a slow example is
not a failure (the deadline would make it a "flaky" error), and no test here is about speed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from recorder.sim.venue import VenueConfig
from soak.harness import VenueThread

settings.register_profile("recorder", deadline=None)
settings.load_profile("recorder")


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
