"""``recorder journal ls/prune`` with an s3:// store (the journal is local, in --journal-dir) and
``--journal-archive``: segments uploaded whole, checked, before they are pruned; a failed upload
keeps the segment and exits non-zero. A real S3-compatible server (moto) on loopback."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from recorder.store import objstore
from recorder.store.journal import list_segments, read_records, write_checkpoint
from recorder.store.layout import journal_root
from recorder.store.objstore import S3Store
from tests.s3.conftest import SECRET, S3Server
from tests.s3.test_s3_maintenance import invoke
from tests.store.test_retention import journal


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A local journal folder: writer w1, 30 frames over three days of July 2026 (long past),
    in small segments, all in Parquet per the checkpoint."""
    state = tmp_path / "state"
    frames = journal(journal_root(state, "w1"), 30, every_day=10)
    write_checkpoint(journal_root(state, "w1"), frames[-1][0])
    return state


def frames_of(state: Path) -> list[tuple[int, int, bytes | str]]:
    return [(r.fno, r.recv_ts_ns, r.frame()) for r in read_records(journal_root(state, "w1"))]


def unzstd(data: bytes) -> bytes:
    with pa.CompressedInputStream(pa.BufferReader(data), "zstd") as z:
        return bytes(z.read())


def test_journal_ls_and_prune_of_an_s3_store_read_the_local_journal(s3: S3Store, state: Path) -> None:
    segs = list_segments(journal_root(state, "w1"))
    code, out = invoke("journal", "ls", "--data-dir", s3.url, "--journal-dir", str(state))
    assert code == 0, out
    assert out.count("\nw1 ") == len(segs) and "2026-07-20" in out and "2026-07-22" in out
    assert out.strip().endswith(f"{len(segs)} segments, " + out.strip().split(", ", 1)[1])
    code, out = invoke("journal", "prune", "--data-dir", s3.url, "--journal-dir", str(state), "--keep", "0")
    assert code == 0 and out.startswith("removed "), out
    assert 1 <= len(list_segments(journal_root(state, "w1"))) < len(segs)
    assert "writer w1: the journal is whole from 2026-07-22; earlier dates cannot be rebuilt" in out
    assert objstore.list_objects(s3) == []  # the bucket is not touched
    code, out = invoke("journal", "ls", "--data-dir", str(state), "--journal-dir", str(state))
    assert code == 2 and out.startswith("error: --journal-dir is for an s3:// --data-dir"), out


def test_prune_archives_each_segment_before_removing_it(
    s3_server: S3Server, s3: S3Store, state: Path
) -> None:
    root = journal_root(state, "w1")
    plain = {p.name: p.read_bytes() for _, p in list_segments(root)}
    before = frames_of(state)
    archive = s3_server.bucket("archive")
    code, out = invoke(
        "journal", "prune", "--data-dir", s3.url, "--journal-dir", str(state), "--keep", "0",
        "--journal-archive", archive.url,
    )  # fmt: skip
    assert code == 0, out
    left = {p.name for _, p in list_segments(root)}
    gone = sorted(set(plain) - left)
    assert gone and f"removed {len(gone)} segments" in out
    assert f"earlier segments archived in {archive.url}/w1/" in out
    objs = objstore.list_objects(archive)
    assert [o.rel for o in objs] == [f"w1/{name}.zst" for name in gone]
    for name in gone:  # each object is the segment's exact bytes, zstd-compressed
        assert unzstd(objstore.get_bytes(archive, f"w1/{name}.zst")) == plain[name]
    assert frames_of(state) == [f for f in before if f[0] >= list_segments(root)[0][0]]


def test_a_failed_archive_keeps_the_segment_and_exits_non_zero(s3_server: S3Server, state: Path) -> None:
    root = journal_root(state, "w1")
    n, before = len(list_segments(root)), frames_of(state)
    for url in ("s3://no-such-bucket-here/arch", "s3://no-such-bucket-here"):
        code, out = invoke(
            "journal", "prune", "--data-dir", str(state), "--keep", "0", "--journal-archive", url
        )  # fmt: skip
        assert code == 1, out
        assert "removed 0 segments" in out
        err = out.strip().splitlines()[-1]
        assert err.startswith(f"error: journal archive: cannot upload {root}") and url in err, err
        assert "writer w1's segments from seg-" in err and err.endswith("are kept")
        assert len(list_segments(root)) == n and frames_of(state) == before
    code, out = invoke(
        "journal", "prune", "--data-dir", str(state), "--keep", "0", "--journal-archive", "arch"
    )
    assert code == 2 and out.startswith("error: --journal-archive arch: give an s3://bucket/prefix URL"), out


def test_capture_archives_then_prunes_its_journal(s3_server: S3Server, s3: S3Store, state: Path) -> None:
    from click.testing import CliRunner

    from recorder.cli.main import main
    from tests.capture.test_runner import ENV

    root = journal_root(state, "w1")
    n = len(list_segments(root))
    archive = s3_server.bucket("arch")
    args = [
        *("capture", "--sim", "--duration", "1s", "--symbols", "005930", "--writer-id", "w1"),
        *("--data-dir", s3.url, "--journal-dir", str(state), "--journal-archive", archive.url),
    ]
    kiwoom = {k: v for k, v in ENV.items() if k.startswith("KIWOOM_")}  # the venue's keys, in-process
    r = CliRunner().invoke(main, [*args, "--journal-keep", "0"], env=kiwoom)
    assert r.exit_code == 0, r.output
    assert SECRET not in r.output
    archived = objstore.list_objects(archive)
    assert archived and all(o.rel.startswith("w1/seg-") and o.rel.endswith(".jnl.zst") for o in archived)
    assert len(list_segments(root)) <= n + 2 - len(archived)  # old ones went; the capture's stay
    assert objstore.scan(s3).parts  # and it recorded
    code, out = invoke(*args)  # no --journal-keep: refused before it starts
    assert code == 2 and "give --journal-keep too" in out, out
