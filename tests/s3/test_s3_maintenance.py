"""ls, verify, compact (and its crash window), replay and report on a real S3-compatible server
(moto on loopback), each against the same store kept in a local folder."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

import queries
from recorder.cli.main import main
from recorder.kiwoom.fields import TABLES
from recorder.store import objstore
from recorder.store.compact import compact, finish_compactions
from recorder.store.inventory import scan
from recorder.store.journal import read_checkpoint, write_checkpoint
from recorder.store.layout import INTENT_DIR, journal_root
from recorder.store.objstore import S3Store
from tests.s3.conftest import SECRET, S3Server
from tests.store.test_compact import DAY1


class Crash(Exception):
    pass


def tables_of(where: Path | S3Store) -> dict[str, list[dict]]:
    """Every row of every view, over one connection."""
    con = queries.connect(where)
    try:
        return {t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").to_arrow_table().to_pylist() for t in TABLES}
    finally:
        con.close()


def invoke(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert SECRET not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output


def test_queries_ls_and_verify_see_the_same_store(pair: tuple[Path, S3Store, Path]) -> None:
    local, s3, state = pair
    assert tables_of(s3) == tables_of(local)
    code, out = invoke("ls", "--data-dir", s3.url, "--journal-dir", str(state), "--format", "json")
    assert code == 0
    got, want = orjson.loads(out), orjson.loads(invoke("ls", "--data-dir", str(local), "--format", "json")[1])
    assert got["data_dir"] == s3.url
    assert {**got, "data_dir": ""} == {**want, "data_dir": ""}
    code, out = invoke("verify", "--data-dir", s3.url, "--journal-dir", str(state))
    assert code == 0, out
    assert "journal (whole) decoded and compared" in out and out.strip().splitlines()[-1].startswith("clean")


def test_verify_on_s3_finds_a_missing_object(pair: tuple[Path, S3Store, Path]) -> None:
    _, s3, state = pair
    victim = next(p for p in objstore.scan(s3).parts if p.table == "trades")
    objstore.delete(s3, victim.path.relative_to(s3.root).as_posix())
    code, out = invoke("verify", "--data-dir", s3.url, "--journal-dir", str(state))
    assert code == 1 and "rows missing from the store" in out, out


def test_compact_on_s3_keeps_every_row(s3_server: S3Server, pair: tuple[Path, S3Store, Path]) -> None:
    local, s3, state = pair
    before = len(objstore.scan(s3).parts)
    code, out = invoke("compact", "--data-dir", s3.url, "--journal-dir", str(state))
    assert code == 0 and "compacted" in out, out
    assert len(objstore.scan(s3).parts) < before
    assert tables_of(s3) == tables_of(local)
    assert objstore.list_objects(s3, INTENT_DIR) == []
    assert invoke("verify", "--data-dir", s3.url, "--journal-dir", str(state))[0] == 0
    s3_server.assert_no_folder_markers(s3)  # inputs deleted


def crash_at(step: str) -> Callable[[str], None]:
    def hook(at: str) -> None:
        if at == step:
            raise Crash(step)

    return hook


def trade_rows(where: Path | S3Store) -> list[dict]:
    return queries.sql(
        where, "SELECT hash(t) AS h, count(*) AS n FROM trades t GROUP BY ALL ORDER BY ALL"
    ).to_pylist()


@pytest.mark.parametrize(
    ("step", "repair"),
    [
        ("intent-written", "compact"),
        ("intent-written", "verify"),
        ("merged-visible", "compact"),
        ("merged-visible", "verify"),
        ("merged-visible", "capture start"),
        ("input-removed", "capture start"),
    ],
)
def test_a_compaction_interrupted_on_s3_is_repaired(
    pair: tuple[Path, S3Store, Path], step: str, repair: str
) -> None:
    local, s3, state = pair
    with pytest.raises(Crash):
        compact(s3, dates=[DAY1], tables=["trades"], writers=["w1"], hook=crash_at(step))
    intents = objstore.list_objects(s3, INTENT_DIR)
    assert len(intents) == 1  # the intent object outlives the crash
    if step != "intent-written":  # merged object and (some) inputs visible together: duplicates
        assert trade_rows(s3) != trade_rows(local)
    if repair == "compact":
        assert (
            invoke("compact", "--data-dir", s3.url, "--journal-dir", str(state), "--date", "2026-07-01")[0]
            == 0
        )
    elif repair == "verify":
        code, out = invoke("verify", "--data-dir", s3.url, "--journal-dir", str(state))
        assert code == 0 and "interrupted compaction" in out, out
    else:  # what a capture runs before it records (recorder.store.objstore.open_store)
        assert finish_compactions(s3)
    assert objstore.list_objects(s3, INTENT_DIR) == []
    assert trade_rows(s3) == trade_rows(local)


def test_replay_and_report_read_s3_as_they_read_a_folder(
    pair: tuple[Path, S3Store, Path], tmp_path: Path
) -> None:
    local, s3, _ = pair
    for extra in ([], ["--symbols", "005930_NX", "--types", "0B"]):
        code, want = invoke("replay", "--data-dir", str(local), "--date", DAY1, *extra)
        assert code == 0 and want
        assert invoke("replay", "--data-dir", s3.url, "--date", DAY1, *extra) == (0, want)
    code, out = invoke("replay", "--data-dir", s3.url, "--date", "2026-07-25")
    assert code == 2 and f"nothing recorded in {s3.url}" in out
    pages = []
    for where, name in ((str(local), "local.html"), (s3.url, "s3.html")):
        code, out = invoke("report", "--data-dir", where, "--date", DAY1, "--out", str(tmp_path / name))
        assert code == 0, out
        pages.append((tmp_path / name).read_text().replace(where, "STORE"))
    assert pages[0] == pages[1]


def test_publish_waits_for_the_checkpoint_and_never_uploads_a_file_twice(
    s3_server: S3Server, s3: S3Store, built: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    shutil.copytree(built, state)
    root = journal_root(state, "w1")
    full = read_checkpoint(root)
    w1 = sorted((p for p in scan(state).parts if p.writer == "w1"), key=lambda p: p.last_fno)
    cut = w1[len(w1) // 2].last_fno
    write_checkpoint(root, cut)  # as after a crash: later flushes are not checkpointed yet
    r = objstore.publish(s3, state)
    late = [p for p in w1 if p.last_fno > cut]
    assert r.waiting == len(late) > 0
    assert all(p.path.exists() for p in late)  # left for the capture's recovery
    assert not any(p.path.exists() for p in w1 if p.last_fno <= cut)

    write_checkpoint(root, full)
    uploaded = objstore.publish(s3, state).files
    assert uploaded == len(late)
    total = len(objstore.scan(s3).parts)
    local_copy = tmp_path / "local"
    shutil.copytree(built, local_copy)

    # A crash between a PUT and the local delete leaves the file staged; a compaction on S3 may
    # merge the object meanwhile. The next start drops the staged copy instead of uploading it.
    again = next(p for p in scan(local_copy).parts if p.writer == "w1" and p.table == "trades")
    rel = again.path.relative_to(local_copy)
    (state / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(again.path, state / rel)
    compact(s3, tables=["trades"], writers=["w1"])
    r = objstore.publish(s3, state)
    assert (r.files, r.covered) == (0, 1) and not (state / rel).exists()
    assert trade_rows(s3) == trade_rows(local_copy)
    assert total > len(objstore.scan(s3).parts)


def test_pandas_reads_the_store_on_s3_as_docs_s3_shows(pair: tuple[Path, S3Store, Path]) -> None:
    import pandas as pd

    from recorder.kiwoom.schema import partitioning
    from recorder.store.objstore import s3_filesystem

    local, s3, _ = pair
    got = pd.read_parquet(
        f"{s3.root}/trades",
        filesystem=s3_filesystem(),
        partitioning=partitioning("trades"),
        filters=[("date", "=", DAY1)],
    )
    want = queries.sql(local, f"SELECT count(*) FROM trades WHERE date = '{DAY1}'").column(0)[0].as_py()
    assert len(got) == want > 0
    assert set(got["symbol"]) == {"005930", "000660", "035720"}
