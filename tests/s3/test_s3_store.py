"""The store on a real S3-compatible server (moto on loopback): data dir URLs, ingest and query."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import queries
from queries.named import duckdb_message
from recorder.cli.main import main
from recorder.errors import ConfigError
from recorder.kiwoom.fields import TABLES
from recorder.kiwoom.schema import SCHEMAS
from recorder.store import objstore
from recorder.store.objstore import S3Store, parse_location
from tests.s3.conftest import KEY_ID, SECRET, S3Server
from tests.store.test_ingest import market_frames

DATE = "2026-07-20"


def cli(*args: str) -> str:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert SECRET not in r.output
    return r.output


def frames_file(tmp_path: Path, n: int = 400, seed: int = 3) -> Path:
    f = tmp_path / f"frames-{seed}.ndjson"
    f.write_bytes(b"\n".join([*market_frames(n, seed), b"not json"]) + b"\n")  # and one reject
    return f


def ingest_to_s3(frames: Path, s3: S3Store, tmp_path: Path) -> None:
    """``recorder ingest`` of ``frames`` into the bucket, staged under ``tmp_path/st``."""
    cli("ingest", str(frames), "--data-dir", s3.url, "--date", DATE, "--journal-dir", str(tmp_path / "st"))


def staged(local: Path) -> list[Path]:
    return [p for t in TABLES for p in (local / t).rglob("*.parquet")]


# --------------------------------------------------------------------------- data dir URLs


@pytest.mark.parametrize(
    "url", ["gs://bucket/x", "http://host/x", "https://host/x", "ftp://host/x", "foo://x", "file:///tmp/x"]
)
def test_other_url_schemes_are_refused_in_one_line(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scheme is not supported"):
        parse_location(url)
    for args in (
        ["query", "SELECT 1"],
        ["ls"],
        ["compact"],
        ["verify"],
        ["ingest", str(frames_file(tmp_path))],
    ):
        r = CliRunner().invoke(main, [*args, "--data-dir", url])
        assert r.exit_code == 2, (args, r.output)
        lines = r.output.strip().splitlines()
        assert lines == [
            f"error: {url}: the {url.split(':')[0]}:// scheme is not supported; "
            "give a local folder or s3://bucket/prefix"
        ], (args, r.output)


def test_s3_urls_parse_into_bucket_and_prefix() -> None:
    assert parse_location("s3://my-bucket/a/b/") == S3Store("my-bucket", "a/b")
    assert parse_location("s3://my-bucket") == S3Store("my-bucket", "")
    assert parse_location("data") == Path("data")
    assert str(S3Store("b12", "x/y")) == "s3://b12/x/y"
    for bad in ("s3://", "s3://B/x", "s3://b/x//y", "s3://ab/../x"):
        with pytest.raises(ConfigError):
            parse_location(bad)


def test_a_missing_store_on_s3_is_refused_by_readers(s3_server: S3Server, s3: S3Store) -> None:
    for args in (["query", "SELECT 1"], ["ls"]):
        r = CliRunner().invoke(main, [*args, "--data-dir", f"{s3.url}/nothing"])
        assert r.exit_code == 2, r.output
        assert "no store at" in r.output and SECRET not in r.output


def test_endpoint_region_and_keys_come_from_the_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/",
        "AWS_DEFAULT_REGION": "ap-northeast-2",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    opts = objstore.s3_options(env)
    assert opts["endpoint_override"] == "127.0.0.1:9000" and opts["scheme"] == "http"
    assert opts["region"] == "ap-northeast-2"
    assert (opts["access_key"], opts["secret_key"]) == ("id", "secret")
    assert objstore.s3_options({"AWS_ENDPOINT_URL_S3": "https://s3.example"})["region"] == "us-east-1"
    assert "endpoint_override" not in objstore.s3_options({"AWS_REGION": "eu-west-1"})


# --------------------------------------------------------------------------- ingest and query


def test_ingest_to_s3_then_query_equals_the_same_ingest_into_a_local_store(
    s3_server: S3Server, s3: S3Store, tmp_path: Path
) -> None:
    f = frames_file(tmp_path)
    local, state = tmp_path / "local", tmp_path / "state"
    cli("ingest", str(f), "--data-dir", str(local), "--date", DATE, "--writer-id", "w1")
    cli(
        "ingest",
        str(f),
        "--data-dir",
        s3.url,
        "--date",
        DATE,
        "--writer-id",
        "w1",
        "--journal-dir",
        str(state),
    )
    assert staged(state) == []  # every part file went up, and its local copy away
    remote = sorted(o.rel for o in objstore.list_objects(s3))
    assert remote == sorted(p.relative_to(local).as_posix() for p in staged(local))
    for table in TABLES:
        # recv_ts is the time of the ingest: the one column the two ingests differ in.
        drop = " EXCLUDE (recv_ts)" if "recv_ts" in SCHEMAS[table].names else ""
        q = f"SELECT *{drop} FROM {table} ORDER BY ALL"
        want = queries.sql(local, q)
        assert want.num_rows > 0 or table in ("gaps", "backfill")
        assert queries.sql(s3.url, q).equals(want), table
    params = {"start": DATE, "end": DATE, "interval": "1 minute"}
    assert queries.run("bars", s3, **params).equals(queries.run("bars", local, **params))
    out = cli("query", "--data-dir", s3.url, "--format", "csv", "SELECT count(*) AS n FROM trades")
    assert out.splitlines()[1] == str(queries.sql(local, "SELECT count(*) FROM trades").column(0)[0])


def test_a_second_ingest_of_the_same_file_is_refused(
    s3_server: S3Server, s3: S3Store, tmp_path: Path
) -> None:
    f = frames_file(tmp_path, 50)
    ingest_to_s3(f, s3, tmp_path)
    r = CliRunner().invoke(
        main, ["ingest", str(f), "--data-dir", s3.url, "--date", DATE, "--journal-dir", str(tmp_path / "st")]
    )
    assert r.exit_code == 2 and "already ingested" in r.output


def test_query_prunes_partitions_on_s3(s3_server: S3Server, s3: S3Store, tmp_path: Path) -> None:
    """A filter on symbol reads only that symbol's objects: GETs grow with the files kept."""
    ingest_to_s3(frames_file(tmp_path), s3, tmp_path)
    symbols = queries.sql(s3, "SELECT DISTINCT symbol FROM trades ORDER BY 1").column(0).to_pylist()
    assert len(symbols) >= 3
    before = s3_server.requests()["GET"]
    queries.sql(s3, f"SELECT count(*) FROM trades WHERE symbol = '{symbols[0]}'")
    one = s3_server.requests()["GET"] - before
    before = s3_server.requests()["GET"]
    queries.sql(s3, "SELECT count(*) FROM trades")
    every = s3_server.requests()["GET"] - before
    assert one < every, (one, every)


def test_an_object_gone_under_a_query_is_one_line_without_traceback(
    s3_server: S3Server, s3: S3Store, tmp_path: Path
) -> None:
    ingest_to_s3(frames_file(tmp_path, 60), s3, tmp_path)
    con = queries.connect(s3)  # the views are bound over the objects listed now
    victim = objstore.scan(s3, ["orderbook"]).parts[-1]
    objstore.delete(s3, victim.path.relative_to(s3.root).as_posix())
    with pytest.raises(queries.QueryError) as info:
        try:
            con.sql("SELECT sum(seq) FROM orderbook").fetchall()
        except Exception as exc:
            raise queries.QueryError(duckdb_message(exc)) from exc
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg and SECRET not in msg
    assert msg.startswith("FileNotFoundError") and victim.path.name in msg, msg


def test_an_unreachable_endpoint_is_one_line_naming_the_url_not_the_keys(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.capture.test_runner import closed_port

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    for args in (["ls"], ["query", "SELECT 1"], ["compact"]):
        r = CliRunner().invoke(main, [*args, "--data-dir", "s3://bkt/x"])
        assert r.exit_code in (1, 2) and isinstance(r.exception, SystemExit), r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "s3://bkt/x" in lines[0], r.output
        assert SECRET not in r.output and KEY_ID not in r.output
