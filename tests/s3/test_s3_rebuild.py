"""rebuild on a real S3-compatible server (moto on loopback) against the local rebuild of the
same store, its crash window, and a bucket left without "folder" marker objects."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from recorder.store import objstore
from recorder.store.compact import compact
from recorder.store.fs import acquire_lock
from recorder.store.inventory import scan
from recorder.store.journal import read_checkpoint, write_checkpoint
from recorder.store.layout import INTENT_DIR, LOCK, journal_root
from recorder.store.objstore import S3Store
from recorder.store.rebuild import rebuild
from recorder.store.s3rebuild import finish_rebuilds
from tests.s3.conftest import S3Server
from tests.s3.test_s3_maintenance import Crash, crash_at, invoke, tables_of, trade_rows


def part_names(where: Path | S3Store) -> list[str]:
    if isinstance(where, Path):
        return sorted(p.path.relative_to(where).as_posix() for p in scan(where).parts)
    return sorted(p.path.relative_to(where.root).as_posix() for p in objstore.scan(where).parts)


def test_rebuild_on_s3_gives_the_local_rebuild_table_by_table(
    s3_server: S3Server, pair: tuple[Path, S3Store, Path]
) -> None:
    local, s3, state = pair
    compact(s3, writers=["w1"])  # w1's objects are merged: the rebuild's names differ from them
    before = len(objstore.scan(s3).parts)
    full = read_checkpoint(journal_root(state, "w1"))
    write_checkpoint(journal_root(state, "w1"), full - 9)  # as a capture's crash leaves it
    code, out = invoke("rebuild", "--data-dir", str(local))
    assert code == 0, out
    code, out = invoke("rebuild", "--data-dir", s3.url, "--journal-dir", str(state))
    assert code == 0 and out.startswith("rebuilt writers w1, w2: removed "), out
    assert tables_of(s3) == tables_of(local)
    assert part_names(s3) == part_names(local) and len(part_names(s3)) != before
    assert objstore.list_objects(s3, INTENT_DIR) == []
    assert read_checkpoint(journal_root(state, "w1")) == full  # recovery must not decode them again
    assert not list(state.glob(".rebuild-*")) and not scan(state).parts  # nothing left staged
    s3_server.assert_no_folder_markers(s3)  # compaction and rebuild deleted objects


@pytest.mark.parametrize(
    ("step", "repair"),
    [
        ("intent-written", "rebuild"),
        ("new-visible", "verify"),
        ("staged-removed", "capture start"),
    ],
)
def test_a_rebuild_interrupted_on_s3_is_repaired(
    s3_server: S3Server, pair: tuple[Path, S3Store, Path], tmp_path: Path, step: str, repair: str
) -> None:
    local, s3, state = pair
    want = trade_rows(local)
    full = read_checkpoint(journal_root(state, "w2"))
    write_checkpoint(journal_root(state, "w2"), full - 9)
    with pytest.raises(Crash):  # w2's three files a partition become one: new keys
        rebuild(s3, ["w2"], journal_dir=state, hook=crash_at(step))
    assert len(objstore.list_objects(s3, INTENT_DIR)) == 1  # the intent outlives the crash
    if step in ("new-visible", "staged-removed"):  # old and new objects together: duplicates
        assert trade_rows(s3) != want
    if repair == "rebuild":
        code, out = invoke("rebuild", "--data-dir", s3.url, "--journal-dir", str(state), "--writer-id", "w2")
        assert code == 0, out
    elif repair == "verify":
        code, out = invoke("verify", "--data-dir", s3.url, "--journal-dir", str(state))
        assert code == 0 and "finished an interrupted rebuild of writer w2" in out, out
    else:  # what a capture runs before it records
        other = tmp_path / "other-host"
        (other / "_journal" / "w1").mkdir(parents=True)
        assert finish_rebuilds(s3, other) == []  # w2's journal is not on that host: left alone
        fd = acquire_lock(journal_root(state, "w2") / LOCK)  # as while w2 rebuilds or captures
        try:
            assert finish_rebuilds(s3, state) == []
        finally:
            os.close(fd)
        assert len(objstore.list_objects(s3, INTENT_DIR)) == 1
        objstore.open_store(s3, state)
    assert objstore.list_objects(s3, INTENT_DIR) == []
    assert trade_rows(s3) == want
    assert read_checkpoint(journal_root(state, "w2")) == full
    s3_server.assert_no_folder_markers(s3)


def test_rebuild_of_a_writer_without_a_journal_is_one_line(s3: S3Store, built: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    shutil.copytree(built, local)
    for where in (["--data-dir", str(local)], ["--data-dir", s3.url, "--journal-dir", str(local)]):
        code, out = invoke("rebuild", *where, "--writer-id", "nope")
        assert code == 2, out
        assert out.startswith("error: no journal of writer nope under ") and out.count("\n") == 1, out
        assert "writers with a journal: w1, w2" in out
    assert not (local / "_journal" / "nope").exists()
    assert objstore.list_objects(s3) == [] and scan(local).parts  # refused before anything was done
    code, out = invoke("rebuild", "--data-dir", s3.url, "--journal-dir", str(tmp_path / "empty"))
    assert code == 2 and "nothing to rebuild" in out and out.count("\n") == 1, out
