"""Prometheus metrics and a health check for a running capture, over HTTP.

``recorder capture --metrics-port N`` serves two paths on the capture's event loop:

- ``/metrics``: Prometheus text, from a private registry (never the process-global one).
  Everything is read from the capture's live counters when a scrape arrives
  (:class:`CaptureCollector`), so the socket path pays nothing for it.
- ``/healthz``: 200 while every session that has codes to record is logged in and
  subscribed, 503 otherwise (before the first subscription, while a key reconnects, after a
  kick or a refused login); the body is JSON with each key's state.

Keys are labelled as in the progress lines, ``key 1/3 (3f9c01d2aa41)``: a position and a
digest, never the app key.

The listening socket is bound by :meth:`MetricsServer.start`, before the capture makes any
network call, so a port already in use fails the run at once (a
:class:`~recorder.errors.ConfigError`, exit 2).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from recorder.capture.diskcheck import device, disk_free
from recorder.capture.progress import CaptureStats
from recorder.errors import ConfigError
from recorder.store.layout import JOURNAL_DIR

if TYPE_CHECKING:
    from recorder.capture.live import Capture
    from recorder.capture.relay import Relay

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
TABLES = ("trades", "orderbook")  # what ``recorder_entries_total{type}`` counts
UP_STATES = frozenset({"subscribed"})
IDLE_STATES = frozenset({"idle"})  # a key with no codes assigned runs no session


def health(stats: CaptureStats | None) -> tuple[bool, dict[str, Any]]:
    """Whether every session is logged in and subscribed, and each key's state.

    None (no capture yet) and a capture whose sessions have not been planned are not healthy.
    """
    keys = [] if stats is None else stats.keys
    states = [
        {"key": k.label, "state": k.state, "detail": k.detail, "codes": k.items, "reconnects": k.reconnects}
        for k in keys
    ]
    active = [k for k in keys if k.state not in IDLE_STATES]
    ok = bool(active) and all(k.state in UP_STATES for k in active)
    return ok, {"status": "ok" if ok else "unhealthy", "keys": states}


class CaptureCollector(Collector):
    """Reads a capture's counters at each scrape.

    Args:
        data_dir: the store, for ``recorder_disk_free_bytes`` (and
            ``recorder_journal_disk_free_bytes`` when its ``_journal`` is another file system).
        clock_ns: the wall clock (receive times are wall-clock ns).
    """

    def __init__(self, data_dir: Path, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.data_dir = data_dir
        self.clock_ns = clock_ns
        self.capture: Capture | None = None

    def describe(self) -> list[Metric]:
        return []  # collected on scrape only; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        cap = self.capture
        stats = cap.stats if cap is not None else None
        now = self.clock_ns()

        entries = CounterMetricFamily("recorder_entries", "Rows decoded, per table.", labels=["type"])
        rows = dict(stats.rows) if stats is not None else {}  # the decoder replaces it whole
        for table in TABLES:
            entries.add_metric([table], rows.get(table, 0))
        yield entries

        gaps = CounterMetricFamily("recorder_gaps", "Gap rows recorded, per kind.", labels=["kind"])
        for kind, n in sorted((dict(stats.gaps_by_kind) if stats is not None else {}).items()):
            gaps.add_metric([kind], n)
        yield gaps

        yield CounterMetricFamily(
            "recorder_rejects", "Frames or entries that could not be decoded.", value=_get(stats, "rejects")
        )
        yield CounterMetricFamily(
            "recorder_reconnects",
            "Sessions lost (disconnect, kick, stale), all keys.",
            value=_get(stats, "reconnects"),
        )
        yield CounterMetricFamily(
            "recorder_frames", "Frames journaled by this run.", value=_get(stats, "frames")
        )

        up = GaugeMetricFamily(
            "recorder_sessions_up", "1 while the key's session is logged in and subscribed.", labels=["key"]
        )
        for k in stats.keys if stats is not None else ():
            up.add_metric([k.label], 1.0 if k.state in UP_STATES else 0.0)
        yield up

        if stats is not None:
            # No frame yet: the time since the capture started, which is how long none came.
            last = stats.last_recv_ns or stats.started_ns
            yield GaugeMetricFamily(
                "recorder_last_frame_age_seconds",
                "Seconds since the newest frame was received.",
                value=max(now - last, 0) / 1e9,
            )
            lag = cap.journal.last_fno - stats.decoded_fno if cap is not None else 0
            yield GaugeMetricFamily(
                "recorder_journal_lag_records",
                "Journal records written but not yet decoded.",
                value=max(lag, 0),
            )
            stored = stats.last_stored_ns or stats.started_ns
            behind = stats.last_recv_ns - stored if stats.last_recv_ns else 0
            yield GaugeMetricFamily(
                "recorder_parquet_lag_seconds",
                "Receive time of the newest frame minus that of the newest frame in Parquet "
                "(checkpointed); grows up to the flush age between flushes.",
                value=max(behind, 0) / 1e9,
            )

        relay = cap.relay if cap is not None else None
        if relay is not None:
            yield from _relay_metrics(relay)

        free = _disk_free(self.data_dir)
        if free is not None:
            yield GaugeMetricFamily(
                "recorder_disk_free_bytes", "Free bytes on the data directory's file system.", value=free
            )
        journal = self.data_dir / JOURNAL_DIR
        if journal.is_dir() and device(journal) != device(self.data_dir):
            yield GaugeMetricFamily(
                "recorder_journal_disk_free_bytes",
                "Free bytes on the journal's file system (only when it is not the data directory's).",
                value=disk_free(journal),
            )


def _relay_metrics(relay: Relay) -> Iterator[Metric]:
    """The live relay's clients (``--relay-port``): connected, cut for falling behind, fed."""
    s = relay.stats
    yield GaugeMetricFamily(
        "recorder_relay_clients", "Relay clients connected now.", value=len(relay.connections)
    )
    yield CounterMetricFamily(
        "recorder_relay_clients_cut", "Relay clients cut for falling behind (queue full).", value=s.slow_cuts
    )
    yield CounterMetricFamily(
        "recorder_relay_frames_sent", "Frames sent to relay clients.", value=s.frames_sent
    )
    yield CounterMetricFamily(
        "recorder_relay_codes_added", "Codes added upstream for relay clients.", value=s.codes_added
    )


def _get(stats: CaptureStats | None, name: str) -> int:
    return int(getattr(stats, name)) if stats is not None else 0


def _disk_free(path: Path) -> int | None:
    for p in (path, *path.parents):
        if p.exists():
            return shutil.disk_usage(p).free
    return None


class MetricsServer:
    """``/metrics`` and ``/healthz`` for one capture, on the running event loop.

    Use: ``await server.start()`` (binds, or raises ConfigError), ``server.attach(capture)``
    once the capture exists, ``await server.stop()`` at the end.
    """

    def __init__(
        self,
        port: int,
        data_dir: Path,
        *,
        host: str = DEFAULT_HOST,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.host, self.port = host, port
        self.collector = CaptureCollector(data_dir, clock_ns)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def attach(self, capture: Capture) -> None:
        """Report ``capture`` from now on (before it: no key, unhealthy)."""
        self.collector.capture = capture

    async def start(self) -> None:
        """Bind and serve. Raises ConfigError when the address cannot be bound (in use, ...)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            sock = socket.create_server((self.host, self.port), family=family)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port: cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        self.port = sock.getsockname()[1]
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        log.info("metrics on %s/metrics, health on %s/healthz", self.url, self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        cap = self.collector.capture
        ok, body = health(cap.stats if cap is not None else None)
        return web.Response(
            status=200 if ok else 503, text=json.dumps(body) + "\n", content_type="application/json"
        )
