"""The store's filesystem primitives: atomic writes, directory fsync, locks, private files.

Every file the store writes whole (part files, compaction intents, journal checkpoints) goes
through :func:`atomic_write`, so each one appears complete or not at all, and survives a crash
once written: temporary name in the same folder (:func:`recorder.store.layout.temp_path`,
created with ``O_EXCL`` and mode 0o600, so nothing is ever truncated), write, fsync, rename,
fsync of the folder. Locks are ``flock`` on a file, released when its descriptor closes, so a
killed process never leaves one behind.

These functions raise ``OSError`` as the OS reports it; callers translate it into the error
of their layer (:class:`~recorder.errors.StoreError`, :class:`~recorder.errors.JournalError`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from recorder.store.layout import temp_path

log = logging.getLogger(__name__)


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: a file it creates gets mode 0o600; close-on-exec."""
    return os.open(path, flags | os.O_CLOEXEC, 0o600)


def fsync_dir(path: Path) -> None:
    """fsync a directory, so that names created, renamed or removed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(final: Path, *, replace: bool = False) -> Iterator[BinaryIO]:
    """A file to write ``final``'s bytes into; they appear at ``final`` whole when the block ends.

    Temporary name beside ``final`` (a leftover of an earlier crash is removed first), created
    with ``O_EXCL`` and mode 0o600; when the block ends: flush, fsync, rename onto ``final``,
    fsync the folder. If the block or any step raises, the temporary file is removed and
    ``final`` is untouched.

    Args:
        final: where the file appears; its folder must exist.
        replace: replace an existing ``final`` atomically (a reader sees the old file or the
            new one). Otherwise an existing ``final`` is refused before anything is written.

    Raises:
        FileExistsError: ``final`` exists and ``replace`` is False.
        OSError: any other filesystem failure.
    """
    if not replace and final.exists():
        raise FileExistsError(errno.EEXIST, "already exists; refusing to overwrite it", str(final))
    tmp = temp_path(final)
    tmp.unlink(missing_ok=True)  # a crash mid-write left it; it was never visible as data
    try:
        with open(tmp, "xb", opener=private_opener) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_atomic(final: Path, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to ``final`` with :func:`atomic_write` (same arguments and errors)."""
    with atomic_write(final, replace=replace) as f:
        f.write(data)


def _remove_quietly(path: Path) -> None:
    """Best-effort removal of a temporary file after a failure; the original error is raised."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s: %s", path, exc)


def acquire_lock(path: Path) -> int:
    """Take an exclusive ``flock`` on ``path`` (created with mode 0o600 if needed), without waiting.

    Returns the descriptor holding the lock: close it to release the lock.

    Raises:
        BlockingIOError: another open file description holds the lock.
        OSError: the file cannot be created or opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)  # flock needs no write access
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold :func:`acquire_lock` on ``path`` for the block (same errors)."""
    fd = acquire_lock(path)
    try:
        yield
    finally:
        os.close(fd)


def lock_held(path: Path) -> bool:
    """Whether someone else holds ``path``'s lock right now.

    A lock file that does not exist or cannot be opened counts as free: nobody to wait for.
    """
    if not path.exists():
        return False
    try:
        with locked(path):
            return False
    except BlockingIOError:
        return True
    except OSError:
        return False
