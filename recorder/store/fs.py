"""The store's filesystem primitives: atomic writes, directory fsync, locks, private files.

Every file the store writes whole (part files, compaction intents, journal checkpoints) goes
through :func:`atomic_write`, so each one appears complete or not at all, and survives a crash
once written: temporary name in the same folder (:func:`recorder.store.layout.temp_path`,
created with ``O_EXCL`` and mode 0o600, so nothing is ever truncated), write, fsync, rename,
fsync of the folder. Locks are ``flock`` on a file, released when its descriptor closes, so a
killed process never leaves one behind.

Many files written together (the partitions of one flush) go through :class:`DurableBatch`
instead: each is written under its temporary name, then one ``syncfs`` makes them all durable,
they are renamed, and one more ``syncfs`` makes the names durable. Two system calls instead of
two fsyncs per file: a flush of 4,000 partitions spends milliseconds, not seconds, waiting for
the disk. Where ``syncfs`` is missing (not Linux), the batch falls back to fsync per file.

These functions raise ``OSError`` as the OS reports it; callers translate it into the error
of their layer (:class:`~recorder.errors.StoreError`, :class:`~recorder.errors.JournalError`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import threading
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
    if not replace:
        _refuse_existing(final)
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


def _load_syncfs() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_SYNCFS = _load_syncfs()
#: A batch this small fsyncs file by file: cheaper than flushing the whole filesystem.
_SYNCFS_MIN_FILES = 4


def syncfs(path: Path) -> None:
    """Flush every dirty page and name of the filesystem holding ``path`` (Linux ``syncfs``).

    Since Linux 5.8 it reports write-back errors of any file on that filesystem since ``path``
    was opened, like fsync does for one file.

    Raises:
        OSError: the call failed, or the platform has no ``syncfs``.
    """
    if _SYNCFS is None:
        raise OSError(errno.ENOSYS, "syncfs is not available on this platform", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)


class DurableBatch:
    """Files that appear at their final names together, complete and durable, on :meth:`commit`.

    :meth:`create` opens a file at the temporary name beside its final name (``O_EXCL``, mode
    0o600; a leftover of an earlier crash is removed first); the caller writes and closes it.
    Until :meth:`commit` nothing is visible; a crash before it leaves only temporary names, which
    readers ignore. ``commit``: one ``syncfs`` (data), the renames, one more ``syncfs`` (names).
    A failed ``commit`` leaves some files renamed (each complete) and the rest temporary; the
    error is raised. :meth:`abort` removes what was not committed. Thread-safe: the partitions
    of one flush are written on several threads.

    Args:
        root: a folder on the filesystem every file of the batch lives on (the store).
        replace: replace existing final files instead of refusing them.
    """

    def __init__(self, root: Path, *, replace: bool = False) -> None:
        self.root = root
        self.replace = replace
        self._files: list[tuple[Path, Path]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._files)

    def create(self, final: Path) -> BinaryIO:
        """A new binary file whose bytes appear at ``final`` on commit; close it when written.

        Raises:
            FileExistsError: ``final`` exists and the batch does not replace files.
            OSError: any other filesystem failure.
        """
        if not self.replace:
            _refuse_existing(final)
        tmp = temp_path(final)
        tmp.unlink(missing_ok=True)
        f = open(tmp, "xb", opener=private_opener)  # noqa: SIM115 - the caller closes it
        with self._lock:
            self._files.append((tmp, final))
        return f

    def write(self, final: Path, data: bytes) -> None:
        """Write ``data`` as a new file whose bytes appear at ``final`` on commit, creating its
        folder (mode 0o700) if need be.

        In a folder this call has just created nothing can be in the way, so the checks of
        :meth:`create` are skipped and a new partition's file costs four system calls (mkdir,
        open, write, close) instead of seven: a 2,000-symbol flush writes 4,000 of them.

        Raises:
            FileExistsError: ``final`` exists and the batch does not replace files.
            OSError: any other filesystem failure.
        """
        folder = final.parent
        try:
            os.mkdir(folder, 0o700)
        except FileNotFoundError:
            folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            return self.write(final, data)
        except FileExistsError:
            with self.create(final) as f:
                f.write(data)
            return
        tmp = temp_path(final)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with self._lock:
            self._files.append((tmp, final))
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def commit(self) -> None:
        """Make every file durable and visible at its final name (see the class)."""
        with self._lock:
            files, self._files = self._files, []
        if not files:
            return
        batched = _SYNCFS is not None and len(files) >= _SYNCFS_MIN_FILES
        try:
            if batched:
                syncfs(self.root)
            else:
                for tmp, _ in files:
                    fsync_path(tmp)
        except BaseException:
            for tmp, _ in files:
                _remove_quietly(tmp)
            raise
        for i, (tmp, final) in enumerate(files):
            try:
                if not self.replace:
                    _refuse_existing(final)
                os.replace(tmp, final)
            except BaseException:
                for left, _ in files[i:]:
                    _remove_quietly(left)
                raise
        if batched:
            syncfs(self.root)
        else:
            for folder in {final.parent for _, final in files}:
                fsync_dir(folder)

    def abort(self) -> None:
        """Remove the temporary files of everything not committed."""
        with self._lock:
            files, self._files = self._files, []
        for tmp, _ in files:
            _remove_quietly(tmp)


def _refuse_existing(final: Path) -> None:
    if final.exists():
        raise FileExistsError(errno.EEXIST, "already exists; refusing to overwrite it", str(final))


def fsync_path(path: Path) -> None:
    """fsync the file at ``path`` (opened read-only for it)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
