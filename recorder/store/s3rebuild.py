"""``recorder rebuild --data-dir s3://…``: a writer's objects decoded again from its local journal.

The journal of an ``s3://`` store's writers is local (``--journal-dir``). A rebuild decodes a
writer's whole journal, as the local rebuild does (:mod:`recorder.store.rebuild`), into a
scratch folder next to it, then swaps the writer's objects in the bucket. S3 has no rename and
no multi-object swap, so, as compaction on S3 does, an intent object comes first:

1. ``_compaction/rebuild-<id>.json`` names the writer, the objects to upload (``new``: key
   and bytes) and the writer's objects before (``old``);
2. every new object is uploaded whole (the same key as an old one replaces it);
3. the writer's journal checkpoint moves to the last frame decoded (every frame is in the
   bucket now: a capture's recovery must not decode them again), and the writer's part files
   staged in the local store are removed (the journal holds them);
4. the old objects that are not new ones are deleted;
5. the intent is deleted.

A crash between 1 and 4 leaves old and new objects together (duplicate rows) until the intent
is replayed by :func:`finish_rebuilds` (the next ``rebuild``, ``verify``, ``compact``, or the
start of a capture or an ingest): when every new object is there with its bytes it rolls
forward (3 to 5; the intent carries the checkpoint), otherwise it rolls back (deletes the new
objects that are not old ones; an old key replaced by its new object holds the same frames,
so the store is whole again) and the next rebuild starts over. The writer's journal lock is
held throughout, so no capture of that writer runs meanwhile on this host. An intent is
replayed only on the host holding that writer's journal, and only when its lock is free:
another host's rebuild, or one still running here, is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from recorder.errors import StoreError
from recorder.store import objstore
from recorder.store.fs import acquire_lock
from recorder.store.inventory import Part
from recorder.store.inventory import scan as scan_local
from recorder.store.journal import JournalWriter, read_checkpoint, read_records, write_checkpoint
from recorder.store.layout import INTENT_DIR, LOCK, journal_root, parse_part
from recorder.store.objstore import S3Store
from recorder.store.pipeline import Pipeline, PipelineStats
from recorder.store.s3client import delete_many

log = logging.getLogger(__name__)

#: Rebuild intents, next to compaction's (whose glob, ``intent-*.json``, does not match them).
REBUILD_GLOB = "rebuild-*.json"

#: Called after each step ("intent-written", "new-visible", "staged-removed", "old-removed");
#: tests raise from it to simulate a crash right there.
Hook = Callable[[str], None]


def rebuild_writer(
    store: S3Store, local: Path, writer: str, hook: Hook | None = None
) -> tuple[int, int, PipelineStats]:
    """Regenerate one writer's objects from its journal in ``local``; returns (objects
    removed, objects written, pipeline stats). The caller checked that the journal exists.

    Raises:
        JournalError: the journal is locked by a running capture, or cannot be read.
        StoreError: a file or an object could not be written, read or deleted.
    """
    from recorder.store.sink import Sink

    root = journal_root(local, writer)
    with JournalWriter(root).open():  # holds the writer's lock: no capture is running
        scratch = Path(tempfile.mkdtemp(prefix=".rebuild-", dir=local))
        try:
            sink = Sink(scratch, writer)
            pipe = Pipeline(sink)
            pipe.feed_records(read_records(root))
            pipe.drain()
            sink.close()
            new = {p.path.relative_to(scratch).as_posix(): p for p in scan_local(scratch).parts}
            old = {p.path.relative_to(store.root).as_posix(): p.size for p in _objects_of(store, writer)}
            ikey = f"{INTENT_DIR}/rebuild-{uuid.uuid4().hex}.json"
            intent = {
                "writer": writer,
                "new": [{"name": rel, "bytes": p.size} for rel, p in sorted(new.items())],
                "old": [{"name": rel, "bytes": size} for rel, size in sorted(old.items())],
                "checkpoint": {"fno": pipe.last_fno, "state": pipe.state()},
            }
            objstore.put_bytes(store, ikey, orjson.dumps(intent))
            _step(hook, "intent-written")
            objstore._parallel(lambda rel: objstore.put_file(store, new[rel].path, rel), sorted(new))
            _step(hook, "new-visible")
            _advance_checkpoint(root, intent["checkpoint"])
            _remove_staged(local, writer)
            _step(hook, "staged-removed")
            gone = sorted(set(old) - set(new))
            delete_many(store, gone)
            _step(hook, "old-removed")
            objstore.delete(store, ikey)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    log.info("rebuilt writer %s in %s: %d objects removed, %d new", writer, store.url, len(gone), len(new))
    return len(gone), len(new), pipe.stats


def finish_rebuilds(store: S3Store, local: Path) -> list[str]:
    """Replay the intents of interrupted rebuilds of the writers whose journal is in ``local``
    (see the module docstring); returns what was done, one line each. A writer's part files
    staged in ``local`` are removed when its rebuild rolls forward.

    Raises:
        StoreError: an intent cannot be read or names keys outside the store's layout.
    """
    import fnmatch

    done: list[str] = []
    objs = objstore.list_objects(store, INTENT_DIR)
    intents = [o.rel for o in objs if fnmatch.fnmatch(Path(o.rel).name, REBUILD_GLOB)]
    if not intents:
        return done
    sizes = {o.rel: o.size for o in objstore.list_objects(store)}
    for ikey in intents:
        try:
            it = orjson.loads(objstore.get_bytes(store, ikey))
            writer = str(it["writer"])
            new = {str(o["name"]): int(o["bytes"]) for o in it["new"]}
            old = {str(o["name"]): int(o["bytes"]) for o in it["old"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"rebuild intent {store.url}/{ikey} cannot be read: {exc}") from exc
        if not all((p := parse_part(rel)) is not None and p.writer == writer for rel in [*new, *old]):
            raise StoreError(f"rebuild intent {store.url}/{ikey} names keys outside the store's layout")
        root = journal_root(local, writer)
        if not root.is_dir():
            log.info("a rebuild of writer %s (%s) is left to the host with its journal", writer, ikey)
            continue
        try:
            fd = acquire_lock(root / LOCK)
        except BlockingIOError:
            log.info(
                "writer %s is rebuilding or capturing: its rebuild intent %s is left alone", writer, ikey
            )
            continue
        except OSError as exc:
            raise StoreError(f"cannot open lock file {root / LOCK}: {exc.strerror}") from exc
        try:
            if all(sizes.get(rel) == size for rel, size in new.items()):
                _advance_checkpoint(root, it.get("checkpoint"))
                _remove_staged(local, writer)
                delete_many(store, sorted(set(old) - set(new)))
                what = "finished"
            else:
                delete_many(store, sorted(set(new) - set(old)))
                what = "rolled back (run recorder rebuild again)"
            objstore.delete(store, ikey)
        finally:
            os.close(fd)
        done.append(f"{what} an interrupted rebuild of writer {writer}")
        log.warning("%s", done[-1])
    return done


def _objects_of(store: S3Store, writer: str) -> list[Part]:
    return [p for p in objstore.scan(store).parts if p.writer == writer]


def _advance_checkpoint(root: Path, checkpoint: Any) -> None:
    """Every frame the rebuild decoded is in the bucket now: the journal checkpoint says so
    (with the pipeline's state after it), so that a capture's recovery does not decode them
    again into part files the bucket would then hold twice."""
    if not isinstance(checkpoint, dict) or int(checkpoint["fno"]) <= read_checkpoint(root):
        return
    write_checkpoint(root, int(checkpoint["fno"]), checkpoint["state"])


def _remove_staged(local: Path, writer: str) -> None:
    for p in scan_local(local).parts:
        if p.writer == writer:
            try:
                p.path.unlink(missing_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot remove the staged {p.path}: {exc}") from exc


def _step(hook: Hook | None, name: str) -> None:
    if hook is not None:
        hook(name)
