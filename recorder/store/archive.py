"""``--journal-archive s3://bucket/prefix``: sealed journal segments uploaded before they are pruned.

Each segment :func:`recorder.store.retention.prune` is about to remove goes up first as one whole
object ``<archive>/<writer>/seg-<first fno>.jnl.zst`` (a plain segment is compressed first, as
the capture does with sealed ones: ``zstd -d`` gives the raw journal back). The upload is
checked by the object's size; an object of that name and size already there (an earlier
prune that failed afterwards) is not uploaded again. A segment whose upload fails is kept
locally. To rebuild from archived segments, download them into ``_journal/<writer>/`` of a
journal folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from recorder.errors import ConfigError, StoreError
from recorder.store import objstore
from recorder.store.journal import ZST
from recorder.store.objstore import S3Store
from recorder.store.retention import Archiver, SegmentInfo, compress_segment

log = logging.getLogger(__name__)


def parse_archive(url: str | os.PathLike[str]) -> S3Store:
    """An ``--journal-archive`` value: an ``s3://bucket/prefix`` URL, nothing else.

    Raises:
        ConfigError: a local path, or a URL of another scheme.
    """
    loc = objstore.parse_location(url)
    if not isinstance(loc, S3Store):
        raise ConfigError(f"--journal-archive {os.fspath(url)}: give an s3://bucket/prefix URL")
    return loc


def archiver(store: S3Store) -> Archiver:
    """The ``archive`` of :func:`recorder.store.retention.prune` that uploads into ``store``."""

    def archive(seg: SegmentInfo) -> Path:
        path = seg.path if seg.compressed else compress_segment(seg.path)
        rel = f"{seg.writer}/{path.name}"
        assert path.name.endswith(ZST)
        size = path.stat().st_size
        if objstore.head_size(store, rel) != size:
            objstore.put_file(store, path, rel)
            if (got := objstore.head_size(store, rel)) != size:
                raise StoreError(f"archived {store.url}/{rel} holds {got} bytes where {path} has {size}")
            log.info("journal: archived %s to %s/%s (%d bytes)", path, store.url, rel, size)
        return path

    return archive
