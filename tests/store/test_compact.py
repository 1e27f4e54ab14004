"""Store maintenance: ls numbers, verify's findings and exit codes, compaction (crash-safe, exactly-once)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import queries
from recorder.cli.main import main
from recorder.errors import ConfigError
from recorder.store import compact as maintenance
from recorder.store import verify as verify_store
from recorder.store.inventory import inventory
from recorder.store.journal import JournalWriter, read_records, write_checkpoint
from recorder.store.layout import journal_root
from recorder.store.pipeline import Pipeline
from recorder.store.sink import Sink, write_part

DATA = Path(__file__).parents[1] / "data"
FRAMES = [orjson.loads(line)["frame"] for line in (DATA / "kiwoom-frames.jsonl").read_text().splitlines()]
RECV = 1_784_510_878_000_000_000  # 2026-07-20 10:27:58 KST
DAY1, DAY2 = "2026-07-20", "2026-07-21"
# Writer w1 records 005930 on KRX and 000660; w2 records 005930 on NXT and 035720: the partition
# trades/…/symbol=005930 holds files of both writers.
WRITERS = {"w1": ("005930", "000660"), "w2": ("005930_NX", "035720")}
CHUNKS = 3  # the journal is decoded in this many pieces, with a flush after each: several files

QUERIES = {
    "counts": "SELECT (SELECT count(*) FROM trades) AS t, (SELECT count(*) FROM orderbook) AS o, "
    "(SELECT count(*) FROM gaps) AS g, (SELECT count(*) FROM rejects) AS r",
    "volume": "SELECT sum(volume) AS v, sum(price * volume) AS pv FROM trades",
    "trades_by_symbol": "SELECT date, symbol, venue, min(ts), max(ts), count(*), sum(volume), "
    "max(cum_volume) FROM trades GROUP BY ALL ORDER BY ALL",
    "book_by_symbol": "SELECT date, symbol, min(ts), max(ts), count(*), sum(total_ask_qty) "
    "FROM orderbook GROUP BY ALL ORDER BY ALL",
    "trade_rows": "SELECT hash(t) AS h, count(*) AS n FROM trades t GROUP BY ALL ORDER BY ALL",
    "book_rows": "SELECT hash(o) AS h, count(*) AS n FROM orderbook o GROUP BY ALL ORDER BY ALL",
    "gaps": "SELECT * FROM gaps ORDER BY ALL",
    "rejects": "SELECT * FROM rejects ORDER BY ALL",
    "first_trade": "SELECT symbol, arg_min(price, (ts, seq)) FROM trades GROUP BY ALL ORDER BY ALL",
}


def snapshot(data: Path) -> dict[str, list[dict]]:
    """Ad-hoc queries and every named query (bars, spread, coverage, ...) over the store."""
    con = queries.connect(data)
    try:
        out = {name: con.sql(q).to_arrow_table().to_pylist() for name, q in QUERIES.items()}
    finally:
        con.close()
    for name in queries.named():
        out[f"named:{name}"] = queries.run(name, data, start="2026-07-01", end="2026-07-31").to_pylist()
    return out


# --------------------------------------------------------------------------- building stores


def trade(item: str, cum: int, vol: int, hhmmss: str, price: int = 70000) -> bytes:
    values = {"20": hhmmss, "10": f"+{price}", "15": f"{'+' if vol % 2 else '-'}{vol}", "13": str(cum)}
    entry = {"values": values, "type": "0B", "name": "주식체결", "item": item}
    return orjson.dumps({"data": [entry], "trnm": "REAL"})


def book(item: str, hhmmss: str) -> bytes:
    frame = orjson.loads(orjson.dumps(FRAMES[1]))
    frame["data"][0]["item"] = item
    frame["data"][0]["values"]["21"] = hhmmss
    return orjson.dumps(frame)


def script(items: tuple[str, ...]) -> list[dict | bytes]:
    """Journal records for one writer: trades and books of two days, a disconnect, a bad frame,
    and one cumulative-volume break (a continuity gap) on the first item."""
    out: list[dict | bytes] = []
    cum = dict.fromkeys(items, 0)
    for day in (DAY1, DAY2):
        out.append({"kind": "trading_day", "date": day})
        for i in range(12):
            hhmmss = f"0900{i // 2:02d}"  # one-second resolution: equal times, ordered by seq
            for n, item in enumerate(items):
                vol = 1 + (i * 3 + n) % 5
                cum[item] += vol + (7 if (day, i, n) == (DAY1, 5, 0) else 0)
                out.append(trade(item, cum[item], vol, hhmmss, 70000 + 100 * i))
            if i % 4 == 1:
                out.append(book(items[0], hhmmss))
            if i == 6:
                out.append(b"{broken")
                out.append({"kind": "disconnect", "start_ns": RECV, "end_ns": RECV + 10**9})
    return out


def build_store(data: Path) -> None:
    """Journal each writer's script, then decode it in CHUNKS pieces as a capture would."""
    for writer, items in WRITERS.items():
        root = journal_root(data, writer)
        with JournalWriter(root) as j:
            for n, x in enumerate(script(items)):
                ts = RECV + n * 10**6
                if isinstance(x, dict):
                    j.append_event(ts, x)
                else:
                    j.append_frame(ts, x)
        records = list(read_records(root))
        sink = Sink(data, writer)
        pipe = Pipeline(sink)
        size = -(-len(records) // CHUNKS)
        for k in range(CHUNKS):
            pipe.feed_records(records[k * size : (k + 1) * size])
            pipe.drain()
            sink.flush_all()
        sink.close()
        write_checkpoint(root, records[-1].fno)


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("base") / "data"
    build_store(data)
    return data


@pytest.fixture
def store(base_store: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(base_store, data)
    return data


def part_files(data: Path, table: str = "") -> list[Path]:
    return sorted(p for p in (data / table).rglob("part-*.parquet") if "_journal" not in p.parts)


def files_per_partition(data: Path) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for p in part_files(data):
        writer = p.name.split("-")[1]
        key = (p.parent.relative_to(data).as_posix(), writer)
        out[key] = out.get(key, 0) + 1
    return out


def rewrite(path: Path, t: pa.Table) -> None:
    """Replace a part file with ``t`` (tests only: the store never does this)."""
    path.unlink()
    write_part(t, path)


def a_file(data: Path, table: str, writer: str = "w1", symbol: str = "005930") -> Path:
    return next(p for p in part_files(data, table) if f"part-{writer}-" in p.name and symbol in str(p))


# --------------------------------------------------------------------------- ls


def test_store_has_several_files_per_partition_and_writer(base_store: Path) -> None:
    counts = files_per_partition(base_store)
    assert counts[("trades/date=2026-07-20/symbol=005930", "w1")] >= 2
    assert counts[("trades/date=2026-07-20/symbol=005930", "w2")] >= 2
    assert verify_store.verify(base_store).status == "clean"


def test_ls_counts_rows_and_bytes(store: Path) -> None:
    inv = inventory(store)
    for t in inv.tables:
        assert t.rows == queries.sql(store, f"SELECT count(*) AS n FROM {t.table}").to_pylist()[0]["n"]
        files = part_files(store, t.table)
        assert (t.files, t.bytes) == (len(files), sum(f.stat().st_size for f in files))
        want = [DAY1, DAY2] if t.table in ("trades", "orderbook") else [DAY1]  # rejects by recv_ts
        assert t.dates == ([] if t.table == "backfill" else want)  # nothing backfilled here
    trades = inv.tables[0]
    assert trades.table == "trades" and trades.symbols == ["000660", "005930", "035720"]
    p = next(p for p in inv.partitions if (p.table, p.date, p.symbol) == ("trades", DAY1, "005930"))
    per_writer = files_per_partition(store)
    assert p.rows == 24  # 12 trades each of w1 (KRX) and w2 (NXT)
    assert p.files == sum(per_writer[("trades/date=2026-07-20/symbol=005930", w)] for w in WRITERS)
    for j in inv.journals:
        root = journal_root(store, j.writer)
        assert j.bytes == sum(f.stat().st_size for f in root.iterdir() if f.is_file())
        assert j.segments == 1 and j.checkpoint > 0


def test_ls_cli(store: Path) -> None:
    r = CliRunner().invoke(main, ["ls", "--data-dir", str(store)])
    assert r.exit_code == 0, r.output
    rows = inventory(store).tables[0].rows
    assert "trades     (all)            3" in r.output and f"{rows:,}" in r.output
    assert "gaps       2026-07-20       -       4" in r.output
    assert "journal w1: 1 segments" in r.output
    r = CliRunner().invoke(main, ["ls", "--data-dir", str(store), "--format", "json"])
    assert r.exit_code == 0
    doc = orjson.loads(r.output)
    assert doc["tables"][0]["rows"] == rows and [j["writer"] for j in doc["journals"]] == ["w1", "w2"]
    r = CliRunner().invoke(main, ["ls", "--data-dir", str(store / "nowhere")])
    assert r.exit_code == 2 and "does not exist" in r.output


# --------------------------------------------------------------------------- verify


def test_verify_clean_store(store: Path) -> None:
    rep = verify_store.verify(store)
    assert (rep.status, rep.exit_code, rep.problems, rep.warnings) == ("clean", 0, [], [])
    assert rep.files == len(part_files(store))
    assert any("writer w1: journal (whole) decoded and compared" in i for i in rep.info)
    # the one cumulative-volume break of each writer's script, on its first item
    assert [(c.date, c.symbol, c.venue, c.breaks) for c in rep.continuity if c.breaks] == [
        (DAY1, "005930", "KRX", 1),
        (DAY1, "005930", "NXT", 1),
    ]
    assert any(
        "continuity: 2 cum_volume breaks in 2 of 8 (date, symbol, venue) streams" in i for i in rep.info
    )


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_verify_unreadable_file(store: Path, damage: str) -> None:
    f = a_file(store, "trades")
    data = f.read_bytes()
    f.write_bytes(b"not parquet at all" if damage == "garbage" else data[: len(data) // 2])
    rep = verify_store.verify(store)
    assert (rep.status, rep.exit_code) == ("unreadable", 2)
    assert any(f.name in p and "cannot read" in p for p in rep.problems)
    assert any("trades of writer w1: unreadable files; not compared" in w for w in rep.warnings)


def test_verify_unsorted_file(store: Path) -> None:
    f = a_file(store, "trades")
    t = pq.read_table(f)
    rewrite(f, t.take(pa.array(range(len(t) - 1, -1, -1))))
    rep = verify_store.verify(store)
    assert (rep.status, rep.exit_code) == ("problems", 1)
    assert rep.problems == [
        f"{f.relative_to(store).as_posix()}: {len(t) - 1} rows out of (ts, seq) order, first at row 1"
    ]


def test_verify_wrong_column_type(store: Path) -> None:
    f = a_file(store, "trades")
    t = pq.read_table(f)
    i = t.schema.get_field_index("volume")
    rewrite(f, t.set_column(i, "volume", pc.cast(t["volume"], pa.string())))
    rep = verify_store.verify(store)
    assert rep.status == "problems"
    assert f"{f.relative_to(store).as_posix()}: column 'volume' is string, expected int64" in rep.problems


def test_verify_row_missing_vs_journal(store: Path) -> None:
    f = a_file(store, "orderbook")
    t = pq.read_table(f)
    rewrite(f, t.slice(1))
    rep = verify_store.verify(store)
    assert (rep.status, rep.exit_code) == ("problems", 1)
    assert rep.problems == [
        "orderbook date=2026-07-20 symbol=005930 (writer w1): 1 rows missing from the store"
    ]


def test_verify_extra_and_duplicated_rows(store: Path) -> None:
    f = a_file(store, "trades", "w2")
    first, last = (int(x) for x in f.name.removesuffix(".parquet").split("-")[2:])
    copy = f.with_name(f"part-w2-{first:012d}-{last + 1:012d}.parquet")
    shutil.copyfile(f, copy)  # the same rows twice under an overlapping range
    rep = verify_store.verify(store)
    assert rep.status == "problems"
    assert any("cover overlapping frames" in p and copy.name in p for p in rep.problems)
    n = pq.read_metadata(f).num_rows
    assert f"trades date=2026-07-20 symbol=005930 (writer w2): {n} rows not in the journal" in rep.problems


def test_verify_leftover_temp_file_is_a_warning(store: Path) -> None:
    d = a_file(store, "trades").parent
    old, new = d / ".part-w1-000000000900-000000000901.parquet.tmp", d / ".part-w1-2-3.parquet.tmp"
    old.write_bytes(b"half a file")
    new.write_bytes(b"being written")
    hour_ago = old.stat().st_mtime - 7200
    os.utime(old, (hour_ago, hour_ago))
    rep = verify_store.verify(store)
    assert (rep.status, rep.exit_code, rep.problems) == ("clean", 0, [])
    assert (
        len(rep.warnings) == 1
        and old.name in rep.warnings[0]
        and "leftover temporary file" in rep.warnings[0]
    )
    assert inventory(store).temp_files == 2


def test_verify_warns_about_files_outside_the_naming(store: Path) -> None:
    g = next(iter(part_files(store, "gaps")))
    shutil.copyfile(g, g.with_name("export.parquet"))  # queries read it; compaction and resume cannot
    (g.parent / "notes.txt").write_text("hello")
    rep = verify_store.verify(store)
    assert rep.status == "clean" and len(rep.warnings) == 2
    assert "notes.txt: not a part file of the store layout" in rep.warnings[0]
    assert "export.parquet: not named part-<writer>-<first>-<last>.parquet" in rep.warnings[1]


def test_verify_without_a_journal_compares_nothing_for_that_writer(store: Path, tmp_path: Path) -> None:
    shutil.move(journal_root(store, "w2"), tmp_path / "elsewhere")  # like ingested data
    f = a_file(store, "orderbook", "w2")
    rewrite(f, pq.read_table(f).slice(1))
    rep = verify_store.verify(store)
    assert rep.status == "clean"
    assert "writer w2: no journal (ingested data); rows not compared with a journal" in rep.info


def test_verify_compares_only_up_to_the_checkpoint_while_capturing(store: Path) -> None:
    root = journal_root(store, "w1")
    f = max((p for p in part_files(store, "trades") if "part-w1-" in p.name), key=lambda p: p.name[-21:])
    first = int(f.name.split("-")[2])
    write_checkpoint(root, first - 1)  # the capture has not checkpointed this file's frames yet
    t = pq.read_table(f)  # and its last row is still in the capture's buffers
    rewrite(f, t.slice(0, len(t) - 1))
    with JournalWriter(root):
        rep = verify_store.verify(store)
        assert rep.status == "clean" and any(f"checkpoint, frame {first - 1}" in i for i in rep.info)
    rep = verify_store.verify(store)  # not capturing: the journal is the truth
    assert rep.status == "problems" and "next start recovers frames after the checkpoint" in rep.problems[0]


def test_verify_cli_exit_codes(store: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    r = run(main, ["verify", "--data-dir", str(store)])
    assert r.exit_code == 0 and r.output.rstrip().splitlines()[-1].startswith("clean (")
    f = a_file(store, "orderbook")
    rewrite(f, pq.read_table(f).slice(1))
    r = run(main, ["verify", "--data-dir", str(store)])
    assert r.exit_code == 1 and "problem: orderbook date=2026-07-20 symbol=005930" in r.output
    assert "1 problems found" in r.output
    f.write_bytes(b"garbage")
    assert run(main, ["verify", "--data-dir", str(store)]).exit_code == 2
    assert run(main, ["verify", "--data-dir", str(tmp_path / "nowhere")]).exit_code == 2


# --------------------------------------------------------------------------- compact


def test_compact_keeps_query_results_and_leaves_one_file_per_writer(store: Path) -> None:
    before, before_files = snapshot(store), files_per_partition(store)
    assert all(before[name] for name in before if name.startswith("named:"))  # not vacuous
    res = maintenance.compact(store)
    assert snapshot(store) == before
    after = files_per_partition(store)
    assert after.keys() == before_files.keys() and set(after.values()) == {1}
    assert res.files_before == sum(n for n in before_files.values() if n > 1)
    assert res.groups == res.files_after == sum(1 for n in before_files.values() if n > 1)
    assert res.rows > 0 and not res.skipped and not res.recovered
    for f in part_files(store):  # still sorted, still zstd, names cover the merged range
        t = pq.read_table(f)
        assert pq.ParquetFile(f).metadata.row_group(0).column(0).compression == "ZSTD"
        keys = list(zip(t[t.column_names[0]].to_pylist(), t["seq"].to_pylist(), strict=True))
        assert keys == sorted(keys)
        first, last = (int(x) for x in f.name.removesuffix(".parquet").split("-")[2:])
        assert (first, last) == (pc.min(t["seq"]).as_py() >> 16, pc.max(t["seq"]).as_py() >> 16)
    assert verify_store.verify(store).status == "clean"
    again = maintenance.compact(store)  # a no-op
    assert (again.groups, again.files_before) == (0, 0) and snapshot(store) == before
    assert not list((store / "_compaction").glob("intent-*"))


def test_recode_rewrites_a_partitions_only_live_file_in_the_compacted_form(tmp_path: Path) -> None:
    """A capture flushed once leaves one snappy file per partition: compaction with ``recode``
    rewrites each in place (same name, same rows, zstd), without it leaves them; once recoded,
    a second pass has nothing to do."""
    data = tmp_path / "data"
    root = journal_root(data, "w1")
    with JournalWriter(root) as j:
        for n, x in enumerate(script(WRITERS["w1"])):
            if not isinstance(x, dict):
                j.append_frame(RECV + n * 10**6, x)
    records = list(read_records(root))
    sink = Sink(data, "w1", compression="snappy")
    pipe = Pipeline(sink)
    pipe.feed_records(records)
    pipe.drain()
    sink.close()
    write_checkpoint(root, records[-1].fno)
    names = part_files(data)
    assert set(files_per_partition(data).values()) == {1}

    def codecs() -> set[str]:
        return {pq.ParquetFile(f).metadata.row_group(0).column(0).compression for f in part_files(data)}

    before = snapshot(data)
    assert codecs() == {"SNAPPY"} and maintenance.compact(data).recoded == 0 and codecs() == {"SNAPPY"}
    res = maintenance.compact(data, recode=True)
    assert res.recoded == len(names) and res.groups == 0
    assert codecs() == {"ZSTD"} and part_files(data) == names and snapshot(data) == before
    assert maintenance.compact(data, recode=True).recoded == 0
    assert verify_store.verify(data).status == "clean"


def test_compact_filters(store: Path) -> None:
    before = files_per_partition(store)
    res = maintenance.compact(store, dates=[DAY2], tables=["orderbook", "gaps"], writers=["w2"])
    after = files_per_partition(store)
    changed = {k for k in before if before[k] != after[k]}
    assert changed and res.groups == len(changed)
    for part, writer in changed:
        assert writer == "w2" and part.split("/")[:2] in (
            ["orderbook", f"date={DAY2}"],
            ["gaps", f"date={DAY2}"],
        )
    with pytest.raises(ConfigError, match="unknown table"):
        maintenance.compact(store, tables=["quotes"])


def test_exactly_once_resume_after_compaction(store: Path) -> None:
    maintenance.compact(store)
    before = snapshot(store)
    for writer in WRITERS:  # a restart that decodes the whole journal again skips every row
        sink = Sink(store, writer, resume=True)
        pipe = Pipeline(sink)
        pipe.feed_records(read_records(journal_root(store, writer)))
        pipe.drain()
        sink.close()
        assert (
            sink.files_written == 0
            and sink.rows_skipped == pipe.stats.rows + pipe.stats.rejects + pipe.stats.gaps
        )
    assert snapshot(store) == before
    root = journal_root(store, "w1")  # and new frames after compaction are written once
    q = f"SELECT max(cum_volume) AS c FROM trades WHERE symbol = '000660' AND date = '{DAY2}'"
    cum = queries.sql(store, q).to_pylist()[0]["c"]
    with JournalWriter(root) as j:
        fno = j.append_frame(RECV, trade("000660", cum + 3, 3, "150000"))
    sink = Sink(store, "w1", resume=True)
    pipe = Pipeline(sink)
    pipe.feed_records(read_records(root))
    pipe.drain()
    sink.close()
    assert sink.files_written == 1
    n = queries.sql(store, f"SELECT count(*) AS n FROM trades WHERE seq >> 16 = {fno}").to_pylist()
    assert n == [{"n": 1}]


class Crash(Exception):
    pass


def crash_at(k: int, seen: list[str]) -> Callable[[str], None]:
    def hook(step: str) -> None:
        seen.append(step)
        if len(seen) == k:
            raise Crash(step)

    return hook


def test_a_crash_at_any_step_leaves_a_valid_store(store: Path, tmp_path: Path) -> None:
    def run(data: Path, hook: Callable[[str], None] | None = None) -> maintenance.CompactResult:
        # two (partition, writer) groups: enough to crash in the first, between and in the second
        return maintenance.compact(data, dates=[DAY1], tables=["trades"], writers=["w1"], hook=hook)

    steps: list[str] = []
    reference = tmp_path / "reference"
    shutil.copytree(store, reference)
    run(reference, crash_at(0, steps))
    assert steps.count("intent-written") == 2 and steps[-1] == "intent-removed"
    before = snapshot(store)
    for k in range(1, len(steps) + 1):
        data = tmp_path / f"crash{k}"
        shutil.copytree(store, data)
        seen: list[str] = []
        with pytest.raises(Crash):
            run(data, crash_at(k, seen))
        step, intents = seen[-1], list((data / "_compaction").glob("intent-*.json"))
        assert len(intents) == (0 if step == "intent-removed" else 1)
        if step in ("intent-written", "intent-removed"):
            assert snapshot(data) == before  # inputs untouched, or all gone and replaced
        if step == "intent-written":  # as if the crash came in write_part, before its rename
            it = orjson.loads(intents[0].read_bytes())
            (data / it["dir"] / f".{it['output']}.tmp").write_bytes(b"half written")
        if step == "merged-visible":  # the one window: inputs and output both visible
            assert snapshot(data)["counts"] != before["counts"]
        how = ("verify", "finish", "compact")[k % 3]  # what replays the intent
        if how == "verify":
            rep = verify_store.verify(data)
            assert (rep.status, rep.problems) == ("clean", [])
            assert len([w for w in rep.warnings if "an interrupted compaction" in w]) == len(intents)
        elif how == "finish":  # what a capture start would call
            assert len(maintenance.finish_compactions(data)) == len(intents)
        if how != "compact":
            assert snapshot(data) == before
        res = run(data)  # the next compact finishes the job
        assert len(res.recovered) == (len(intents) if how == "compact" else 0)
        assert snapshot(data) == before, step
        assert files_per_partition(data) == files_per_partition(reference)
        assert not list((data / "_compaction").glob("*.json")) and not list(data.rglob(".part-*.tmp"))
        shutil.rmtree(data)


def test_verify_waits_for_no_compaction(store: Path) -> None:
    maintenance.compact(store, tables=["gaps"])
    fd = os.open(store / "_compaction" / "LOCK", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running compact holds it
        with pytest.raises(ConfigError, match="a compaction is running"):
            verify_store.verify(store)
        with pytest.raises(ConfigError, match="another compact is running"):
            maintenance.compact(store)
        assert maintenance.finish_compactions(store) == []  # nothing pending: nothing to wait for
    finally:
        os.close(fd)
    assert verify_store.verify(store).status == "clean"


def test_compact_refuses_while_the_writer_captures(store: Path) -> None:
    before = files_per_partition(store)
    with JournalWriter(journal_root(store, "w1")):
        with pytest.raises(ConfigError, match="writer w1 is capturing"):
            maintenance.compact(store)
        assert files_per_partition(store) == before  # nothing changed
        r = CliRunner().invoke(main, ["compact", "--data-dir", str(store)])
        assert r.exit_code != 0 and "writer w1 is capturing" in r.output
        res = maintenance.compact(store, writers=["w2"])  # other writers can be compacted
        assert res.groups > 0
    assert maintenance.compact(store).groups > 0


def test_compact_cli(store: Path) -> None:
    run = CliRunner().invoke
    r = run(main, ["compact", "--data-dir", str(store), "--table", "gaps", "--date", DAY1])
    assert r.exit_code == 0, r.output
    assert "compacted 2 (partition, writer) groups" in r.output
    r = run(main, ["compact", "--data-dir", str(store), "--table", "gaps", "--date", DAY1])
    assert r.exit_code == 0 and "nothing to compact" in r.output
    r = run(main, ["compact", "--data-dir", str(store), "--date", "July"])
    assert r.exit_code == 2 and "not a date" in r.output


def test_compact_over_a_damaged_file_compacts_the_rest_and_exits_2(store: Path) -> None:
    """A part file that cannot be read is named, left as it is with the rest of its group,
    and the command ends with exit 2 (a damaged file) after compacting everything else."""
    damaged = a_file(store, "trades")
    damaged.write_bytes(damaged.read_bytes()[:100])
    group = sorted(damaged.parent.glob("part-w1-*"))  # its (partition, writer) group
    assert len(group) > 1
    r = CliRunner().invoke(main, ["compact", "--data-dir", str(store)])
    assert r.exit_code == 2, r.output
    assert f"skipped: trades date={DAY1} symbol=005930 writer w1: cannot read {damaged.name}" in r.output
    assert "compacted " in r.output  # the other groups
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(
        "error: 1 part file(s) could not"
    )
    assert sorted(damaged.parent.glob("part-w1-*")) == group  # left as it was
    assert max(files_per_partition(store).values()) > 1 and min(files_per_partition(store).values()) == 1


def test_recode_reports_a_damaged_live_file_instead_of_passing_over_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    sink = Sink(data, "w1", compression="snappy")
    pipe = Pipeline(sink)
    for n, x in enumerate(script(WRITERS["w1"])):
        if not isinstance(x, dict):
            pipe.feed_frame(x, RECV + n * 10**6, n + 1)
    pipe.drain()
    sink.close()
    victim = part_files(data, "trades")[0]
    victim.write_bytes(b"not parquet")
    res = maintenance.compact(data, recode=True)
    assert res.unreadable == 1 and any(victim.name in s and "cannot read" in s for s in res.skipped)
    assert res.recoded == len(part_files(data)) - 1
    assert victim.read_bytes() == b"not parquet"
