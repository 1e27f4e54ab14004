"""The store's atomic write and locks: real files under tmp_path, and a writer killed mid-write."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from recorder.store.fs import (
    DurableBatch,
    acquire_lock,
    atomic_write,
    lock_held,
    locked,
    syncfs,
    write_atomic,
)
from recorder.store.layout import temp_path


def names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_the_file_appears_complete_and_private(tmp_path: Path) -> None:
    final = tmp_path / "part.bin"
    with atomic_write(final) as f:
        f.write(b"half")
        assert names(tmp_path) == [temp_path(final).name]  # nothing visible under the final name
        f.write(b" and the rest")
    assert final.read_bytes() == b"half and the rest"
    assert names(tmp_path) == ["part.bin"]
    assert stat.S_IMODE(final.stat().st_mode) == 0o600


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "part.bin"
    with pytest.raises(RuntimeError, match="encoder failed"), atomic_write(final) as f:
        f.write(b"some bytes")
        raise RuntimeError("encoder failed")
    assert names(tmp_path) == []


def test_an_existing_file_is_refused_unless_replacing(tmp_path: Path) -> None:
    final = tmp_path / "CHECKPOINT"
    write_atomic(final, b"1\n")
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_atomic(final, b"2\n")
    assert final.read_bytes() == b"1\n" and names(tmp_path) == ["CHECKPOINT"]
    inode = final.stat().st_ino
    write_atomic(final, b"2\n", replace=True)
    assert final.read_bytes() == b"2\n" and final.stat().st_ino != inode  # renamed over, not rewritten
    assert names(tmp_path) == ["CHECKPOINT"]


def test_a_leftover_of_a_crash_is_replaced(tmp_path: Path) -> None:
    final = tmp_path / "intent-1.json"
    temp_path(final).write_bytes(b"torn")
    write_atomic(final, b"{}")
    assert final.read_bytes() == b"{}" and names(tmp_path) == ["intent-1.json"]


def test_a_missing_folder_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "f", b"x")


_WRITER = """
import sys
from pathlib import Path
from recorder.store.fs import atomic_write

with atomic_write(Path(sys.argv[1])) as f:
    f.write(b"x" * 100_000)
    f.flush()
    print("written", flush=True)
    sys.stdin.read()  # killed while waiting here, before the rename
"""


def test_a_writer_killed_mid_write_leaves_no_visible_file(tmp_path: Path) -> None:
    final = tmp_path / "part.bin"
    with subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(final)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "written\n"
        proc.send_signal(signal.SIGKILL)
    assert not final.exists() and temp_path(final).stat().st_size == 100_000
    write_atomic(final, b"complete")  # the next writer takes the leftover's place
    assert final.read_bytes() == b"complete" and names(tmp_path) == ["part.bin"]


def test_a_lock_is_exclusive_until_its_descriptor_closes(tmp_path: Path) -> None:
    lock = tmp_path / "LOCK"
    assert not lock_held(lock) and not lock.exists()  # asking does not create the file
    fd = acquire_lock(lock)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    try:
        assert lock_held(lock)
        with pytest.raises(BlockingIOError), locked(lock):
            pass
    finally:
        os.close(fd)
    assert not lock_held(lock)
    with locked(lock):
        assert lock_held(lock)
    assert not lock_held(lock)


def test_a_killed_holder_releases_its_lock(tmp_path: Path) -> None:
    lock = tmp_path / "LOCK"
    code = (
        "import sys; from pathlib import Path; from recorder.store.fs import acquire_lock; "
        "acquire_lock(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(lock)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        assert lock_held(lock)
        proc.send_signal(signal.SIGKILL)
    assert not lock_held(lock)


# ---------------------------------------------------------------- batches of files


@pytest.mark.parametrize("count", [2, 12])  # below and above the size where one syncfs serves all
def test_a_batch_appears_whole_on_commit(tmp_path: Path, count: int) -> None:
    finals = [tmp_path / f"d{i % 3}" / f"part-{i}.bin" for i in range(count)]
    batch = DurableBatch(tmp_path)
    for i, final in enumerate(finals):
        final.parent.mkdir(exist_ok=True)
        with batch.create(final) as f:
            f.write(b"x" * i)
    assert len(batch) == count
    assert not any(f.exists() for f in finals)  # nothing visible before the commit
    batch.commit()
    assert [f.read_bytes() for f in finals] == [b"x" * i for i in range(count)]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in finals)
    assert sorted(p.name for d in tmp_path.iterdir() for p in d.iterdir()) == sorted(f.name for f in finals)
    batch.abort()  # after a commit: nothing left to remove, nothing removed
    assert all(f.exists() for f in finals)


def test_batch_write_makes_folders_and_keeps_the_checks_in_folders_it_did_not_make(tmp_path: Path) -> None:
    """``write`` creates missing folders (0o700); in an existing folder it refuses an existing
    file and removes a leftover temporary, as ``create`` does; an abort removes what it wrote."""
    new = tmp_path / "t" / "date=2026-07-20" / "symbol=005930" / "part-a.bin"  # three new folders
    old = tmp_path / "old" / "part-b.bin"
    old.parent.mkdir()
    temp_path(old).write_bytes(b"a crash's leftover")
    taken = tmp_path / "old" / "part-c.bin"
    taken.write_bytes(b"theirs")
    batch = DurableBatch(tmp_path)
    batch.write(new, b"new" * 1000)
    batch.write(old, memoryview(b"old"))
    with pytest.raises(FileExistsError):
        batch.write(taken, b"mine")
    assert taken.read_bytes() == b"theirs"
    assert not new.exists() and not old.exists()  # nothing visible before the commit
    assert stat.S_IMODE(new.parent.stat().st_mode) == 0o700 & ~_umask()
    batch.commit()
    assert (new.read_bytes(), old.read_bytes()) == (b"new" * 1000, b"old")
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert names(old.parent) == ["part-b.bin", "part-c.bin"]
    again = DurableBatch(tmp_path)
    again.write(tmp_path / "t" / "date=2026-07-21" / "symbol=005930" / "part-a.bin", b"x")
    again.abort()
    assert names(tmp_path / "t" / "date=2026-07-21" / "symbol=005930") == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_an_aborted_batch_leaves_nothing(tmp_path: Path) -> None:
    batch = DurableBatch(tmp_path)
    for i in range(5):
        with batch.create(tmp_path / f"part-{i}.bin") as f:
            f.write(b"data")
    batch.abort()
    assert names(tmp_path) == []
    batch.commit()  # nothing to commit
    assert names(tmp_path) == []


def test_a_batch_refuses_an_existing_file_and_replaces_when_told(tmp_path: Path) -> None:
    final = tmp_path / "part.bin"
    final.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        DurableBatch(tmp_path).create(final)
    assert names(tmp_path) == ["part.bin"]
    batch = DurableBatch(tmp_path, replace=True)
    with batch.create(final) as f:
        f.write(b"new")
    batch.commit()
    assert final.read_bytes() == b"new"


def test_a_file_that_appeared_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    """Another writer's file under the same name stays; the batch's own temporary is removed."""
    batch = DurableBatch(tmp_path)
    for i in range(4):
        with batch.create(tmp_path / f"part-{i}.bin") as f:
            f.write(b"mine")
    (tmp_path / "part-2.bin").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        batch.commit()
    assert (tmp_path / "part-2.bin").read_bytes() == b"theirs"
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())


def test_syncfs_reports_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        syncfs(tmp_path / "missing")
