"""Disk safety for a capture: the day's need estimated from the universe, checked before any
network call, and free space watched while recording.

The estimate (docs/deployment.md, "Disk sizing")::

    need = codes x seconds x bytes_per_code_s + one journal segment (256 MiB)

- ``codes``: the items recorded (after ``--shard``); for a market universe, whose size is only
  known once ka10099 has listed it, the most the keys may record (200 per app key);
- ``seconds``: ``--duration`` / ``--until``, else the day's sessions still ahead (from now or
  the first open to the last close of the recorded venues); :data:`FALLBACK_S` on a closed day
  recorded with ``--force`` or ``--sim``;
- ``bytes_per_code_s``: :data:`BYTES_PER_CODE_S` by default: 4.5 entries per code per second
  (a liquid code in the continuous session) x 520 bytes per entry, the journal once its
  segments are compressed (~70 bytes) plus live Parquet before compaction (~450 bytes),
  measured by ``benchmarks/bench_storage.py``;
- one raw segment: the journal's last segment stays plain until it is sealed.

The journal and the store are checked on their own file systems when they differ (the
journal's share is ~70/520 of the rate, the rest is the store's); each must have its share
free. Free space comes from a callable, so tests fake only the disk.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recorder.errors import ConfigError, StoreError

log = logging.getLogger(__name__)

ENTRIES_PER_CODE_S = 4.5
BYTES_PER_ENTRY = 520
BYTES_PER_CODE_S = ENTRIES_PER_CODE_S * BYTES_PER_ENTRY
JOURNAL_SHARE = 70 / 520  # of the rate: compressed journal; the rest is Parquet
SEGMENT_BYTES = 256 << 20  # the journal's plain last segment (JournalWriter's default)
FALLBACK_S = 3600.0
MODES = ("refuse", "warn", "off")

FreeBytes = Callable[[Path], int]
Device = Callable[[Path], int]


def disk_free(path: Path) -> int:
    """Free bytes (for an unprivileged user) on the file system holding ``path`` or its nearest
    existing parent."""
    return shutil.disk_usage(_existing(path)).free


def device(path: Path) -> int:
    """The file system (``st_dev``) of ``path`` or its nearest existing parent."""
    return os.stat(_existing(path)).st_dev


def _existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


@dataclass(frozen=True)
class DiskNeed:
    """What a capture expects to write, per file system, and what is free there."""

    codes: int
    seconds: float
    bytes_per_code_s: float
    need: Mapping[Path, int]  # a path on each distinct file system → bytes needed there
    free: Mapping[Path, int]

    @property
    def short(self) -> list[Path]:
        return [p for p, n in self.need.items() if self.free[p] < n]

    def describe(self, path: Path) -> str:
        return (
            f"{path} needs about {_size(self.need[path])} ({self.codes:,} codes x "
            f"{_span(self.seconds)} x {_size(self.bytes_per_code_s)}/code/s) and has "
            f"{_size(self.free[path])} free"
        )


def estimate(
    codes: int,
    seconds: float,
    *,
    store: Path,
    journal: Path,
    bytes_per_code_s: float = BYTES_PER_CODE_S,
    free: FreeBytes = disk_free,
    dev: Device = device,
) -> DiskNeed:
    """The need of recording ``codes`` for ``seconds`` into ``store`` with its journal in
    ``journal``, and the free bytes there (one entry when both share a file system)."""
    total = codes * seconds * bytes_per_code_s
    jnl = int(total * JOURNAL_SHARE) + SEGMENT_BYTES
    parquet = int(total * (1 - JOURNAL_SHARE))
    same = dev(store) == dev(journal)
    need = {store: jnl + parquet} if same else {journal: jnl, store: parquet}
    return DiskNeed(codes, seconds, bytes_per_code_s, need, {p: free(p) for p in need})


def check_disk(need: DiskNeed, mode: str = "refuse") -> list[str]:
    """Refuse (``refuse``) or warn about (``warn``) a file system short of space; returns the
    warnings logged. ``off`` checks nothing.

    Raises:
        StoreError: ``refuse`` and a file system has less free than its need; one line naming
            both.
        ConfigError: an unknown mode.
    """
    if mode not in MODES:
        raise ConfigError(f"--disk-check must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "off":
        return []
    lines = [f"not enough disk space: {need.describe(p)}" for p in need.short]
    if lines and mode == "refuse":
        raise StoreError("; ".join(lines) + " (--disk-check warn records anyway)")
    for line in lines:
        log.warning("%s", line)
    for p in need.need:
        if p not in need.short:
            log.debug("disk: %s", need.describe(p))
    return lines


@dataclass
class DiskWatch:
    """Warns once each time free space on a watched file system falls under ``floor`` bytes
    (and again after it has recovered and falls again).

    Call :meth:`check` now and then (the capture does every ``every_s`` seconds).
    """

    paths: list[Path]
    floor: int
    free: FreeBytes = disk_free
    _below: set[Path] = field(default_factory=set)

    def check(self) -> list[str]:
        """Read free space; log and return a warning for each newly crossed floor."""
        out = []
        for p in self.paths:
            try:
                have = self.free(p)
            except OSError as exc:
                log.warning("disk: cannot read free space of %s: %s", p, exc.strerror or exc)
                continue
            if have >= self.floor:
                self._below.discard(p)
            elif p not in self._below:
                self._below.add(p)
                out.append(
                    f"disk space low: {_size(have)} free on {p}, under the floor of {_size(self.floor)}"
                )
                log.warning("%s", out[-1])
        return out


def default_floor(codes: int, bytes_per_code_s: float = BYTES_PER_CODE_S) -> int:
    """The watch's floor when none is given: what the universe writes in an hour, at least 1 GiB."""
    return max(int(codes * 3600 * bytes_per_code_s), 1 << 30)


def _span(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 360 else f"{seconds:,.0f} s"


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} bytes"


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 1 << 10}
_UNITS |= {"MIB": 1 << 20, "GIB": 1 << 30, "TIB": 1 << 40}


def parse_size(text: str) -> float:
    """``2340``, ``2.3KB``, ``50GB``, ``1GiB`` → bytes.

    Raises:
        ConfigError: not a non-negative number with an optional unit.
    """
    t = text.strip().upper().replace(" ", "")
    num = t.rstrip("KMGTIB")
    try:
        value = float(num) * _UNITS[t[len(num) :]]
    except (ValueError, KeyError):
        raise ConfigError(f"{text!r} is not a size (e.g. 2340, 2.3KB, 50GB, 1GiB)") from None
    if value < 0:
        raise ConfigError(f"{text!r}: a size cannot be negative")
    return value
