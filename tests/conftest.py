"""Shared fixtures: the embedded venue on its own event-loop thread, for subprocess tests.

``make test`` runs the suite on two pytest-xdist workers (``--dist loadgroup``): the tests
that share an expensive session fixture (the S3 server, the Spark session) stay together
on one worker, so each is started once.

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "s3" in item.path.parts:
            item.add_marker(pytest.mark.xdist_group("s3"))
        elif item.path.name == "test_spark.py":
            item.add_marker(pytest.mark.xdist_group("spark"))


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
