"""Query layer: views with partition pruning, named queries against independent computations,
bound parameters, and the ``recorder query`` command.

Stores are real Parquet written by the real decoder and sink from seeded synthetic-market
frames (or hand-made entries where exact values are needed); the expected values are
computed with pandas from the files themselves, never through our SQL.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import queries
from queries.named import NamedQueryError, QueryError, parse
from recorder.cli.main import main
from recorder.kiwoom.decode import Decoder
from recorder.kiwoom.time import KST, trading_day
from recorder.sim.market import SyntheticMarket
from recorder.store.sink import Gap, Sink

NS = 1_000_000_000
DAY = "2026-07-20"
SYMBOLS = ["005930", "000660", "035420"]
T0 = int(dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST).timestamp()) * NS  # 09:00:00 KST
DAY_PARAMS = {"start": DAY, "end": DAY}


def kst(hhmmss: str) -> int:
    """``"090210"`` on the test day → epoch ns."""
    h, m, s = int(hhmmss[:2]), int(hhmmss[2:4]), int(hhmmss[4:])
    return T0 + ((h - 9) * 3600 + m * 60 + s) * NS


def write_store(
    root: Path, frames: Iterable[tuple[int, list[dict[str, Any]]]], gaps: Iterable[Gap] = ()
) -> None:
    """Decode ``(recv_ns, entries)`` frames (one REAL frame each) and write them with the sink."""
    dec = Decoder(trading_day=trading_day(DAY))
    for fno, (recv, entries) in enumerate(frames):
        dec.add(orjson.dumps({"data": entries, "trnm": "REAL"}), recv, fno)
    res = dec.finish()
    assert not res.rejects, res.rejects[:1]
    sink = Sink(root, "t")
    sink.add(res)
    sink.add_gaps(gaps)
    sink.close()


def market_frames(
    drop: Callable[[dict[str, Any]], bool] = lambda e: False,
) -> list[tuple[int, list[dict[str, Any]]]]:
    """Ten minutes (09:00-09:10 KST) of a seeded market: 3 symbols on KRX and NXT, a frame
    every 250 ms. ``drop(entry)`` removes entries (called in order, once per entry)."""
    market = SyntheticMarket(SYMBOLS, seed=11, venues=("KRX", "NXT"), trade_rate=2.0)
    frames = []
    for i in range(10 * 60 * 4):
        now = T0 + i * 250_000_000
        entries = [e for e in market.step(now) if not drop(e)]
        if entries:
            frames.append((now, entries))
    return frames


def drop_first_trade(item: str, at_or_after: str) -> Callable[[dict[str, Any]], bool]:
    """A ``drop`` that removes the first trade of ``item`` stamped at or after HHMMSS."""
    done = False

    def drop(e: dict[str, Any]) -> bool:
        nonlocal done
        if not done and e["type"] == "0B" and e["item"] == item and e["values"]["20"] >= at_or_after:
            done = True
            return True
        return False

    return drop


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    write_store(root, market_frames())
    return root


def trades_from_files(root: Path) -> pd.DataFrame:
    """The trades table read straight from the part files with pyarrow (no DuckDB)."""
    frames = []
    for f in sorted(root.glob("trades/date=*/symbol=*/*.parquet")):
        df = pq.read_table(f).to_pandas()
        df["symbol"] = f.parent.name.removeprefix("symbol=")
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- catalogue


def test_named_lists_queries_with_parameters_and_defaults() -> None:
    catalog = queries.named()
    assert list(catalog) == ["bars", "coverage", "imbalance", "spread", "vwap"]
    bars = catalog["bars"]
    assert [(p.name, p.type, p.required) for p in bars.params] == [
        ("start", "DATE", True),
        ("end", "DATE", True),
        ("symbol", "VARCHAR", False),
        ("venue", "VARCHAR", False),
        ("interval", "INTERVAL", False),
    ]
    assert bars.params[-1].default == "1 minute" and bars.params[2].default is None
    assert bars.signature.startswith("start date, end date, symbol varchar = NULL")
    assert all(q.description for q in catalog.values())


def test_header_contract_is_checked_when_loading() -> None:
    head = "-- q: a query\n-- params: a date, b varchar = 'x''y'\n"
    q = parse("q", head + "SELECT $a::DATE, $b::VARCHAR -- $c in a comment, '$d' is text\n")
    assert [p.default for p in q.params][1] == "x'y"
    with pytest.raises(ValueError, match=r"\$c is used but not declared"):
        parse("q", head + "SELECT $a::DATE, $b::VARCHAR, $c::DATE")
    with pytest.raises(ValueError, match=r"write \$a::DATE"):
        parse("q", head + "SELECT $a, $b::VARCHAR")
    with pytest.raises(ValueError, match="unused"):
        parse("q", head + "SELECT $a::DATE")
    with pytest.raises(ValueError, match="first line"):
        parse("q", "SELECT 1")
    with pytest.raises(ValueError, match="unsupported type"):
        parse("q", "-- q: x\n-- params: a blob\nSELECT $a::BLOB")


def test_parameter_errors_are_clear(store: Path) -> None:
    with pytest.raises(NamedQueryError, match=r"missing parameter\(s\) end"):
        queries.run("bars", store, start=DAY)
    with pytest.raises(NamedQueryError, match=r"unknown parameter\(s\) sym\b.*it takes: start date"):
        queries.run("bars", store, sym="005930", **DAY_PARAMS)
    with pytest.raises(NamedQueryError, match="parameter interval='1 minit' is not a valid interval"):
        queries.run("bars", store, interval="1 minit", **DAY_PARAMS)
    with pytest.raises(NamedQueryError, match="parameter start='2026-13-01' is not a valid date"):
        queries.run("bars", store, start="2026-13-01", end=DAY)
    with pytest.raises(NamedQueryError, match="no named query 'nope'; there are: bars"):
        queries.run("nope", store)


# --------------------------------------------------------------------------- bars


def expected_bars(root: Path) -> pd.DataFrame:
    df = trades_from_files(root).sort_values(["ts", "seq"], kind="stable")
    df["bucket"] = df["ts"].dt.floor("1min")
    df["value"] = df["price"] * df["volume"]
    g = df.groupby(["bucket", "symbol", "venue"], sort=True)
    out = g.agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("volume", "sum"),
        value=("value", "sum"),
        trades=("price", "size"),
    ).reset_index()
    out["vwap"] = out["value"] / out["volume"]
    return out


def test_bars_agree_with_pandas_over_the_files(store: Path) -> None:
    got = queries.run("bars", store, **DAY_PARAMS).to_pandas()  # interval defaults to 1 minute
    assert list(got.columns) == [
        "bucket", "symbol", "venue", "open", "high", "low", "close", "volume", "value", "vwap", "trades",
    ]  # fmt: skip
    want = expected_bars(store)[list(got.columns)]
    assert len(got) == 10 * 2 * len(SYMBOLS)  # every minute, symbol and venue traded
    assert got["bucket"].tolist() == want["bucket"].tolist()  # tz-aware: compares instants
    for col in ["symbol", "venue", "open", "high", "low", "close", "volume", "value", "trades"]:
        assert got[col].tolist() == want[col].tolist(), col
    assert got["vwap"].tolist() == pytest.approx(want["vwap"].tolist(), rel=1e-12)
    # bucket edges are whole KST minutes
    assert {(b.hour, b.second) for b in got["bucket"].dt.tz_convert("Asia/Seoul")} == {(9, 0)}


def test_bars_filters_symbol_venue_and_interval(store: Path) -> None:
    five = queries.run("bars", store, symbol="005930", venue="NXT", interval="5 minutes", **DAY_PARAMS)
    rows = five.to_pylist()
    assert [(r["symbol"], r["venue"], r["bucket"].minute) for r in rows] == [
        ("005930", "NXT", 0),
        ("005930", "NXT", 5),
    ]
    one = queries.run("bars", store, symbol="005930", venue="NXT", **DAY_PARAMS).to_pandas()
    assert five.column("volume").to_pylist() == [
        one[one.bucket.dt.minute < 5].volume.sum(),
        one[one.bucket.dt.minute >= 5].volume.sum(),
    ]
    assert queries.run("bars", store, start="2026-07-21", end="2026-07-22").num_rows == 0


def test_parameters_are_bound_not_pasted(store: Path) -> None:
    evil = "005930' OR 1=1 --"
    assert queries.sql(
        store, "SELECT count(*) AS n FROM trades WHERE symbol = $s", {"s": evil}
    ).to_pylist() == [{"n": 0}]
    # Named queries check their filters first: such a value is refused, never run.
    for name in ["bars", "spread", "imbalance", "vwap", "coverage"]:
        with pytest.raises(NamedQueryError, match="not a Kiwoom stock item"):
            queries.run(name, store, symbol=evil, **DAY_PARAMS)
    with pytest.raises(NamedQueryError, match="venue=\"KRX' OR '1'='1\" is not one of KRX, NXT, SOR"):
        queries.run("bars", store, venue="KRX' OR '1'='1", **DAY_PARAMS)


# --------------------------------------------------------------------------- item filters


def nxt_trades_from_files(root: Path, symbol: str) -> pd.DataFrame:
    df = trades_from_files(root)
    return df[(df.symbol == symbol) & (df.venue == "NXT")]


@pytest.mark.parametrize("spelling", [{"symbol": "005930_NX"}, {"symbol": "005930_nx", "venue": "nxt"}])
def test_item_form_selects_exactly_the_nxt_rows(store: Path, spelling: dict[str, str]) -> None:
    want = nxt_trades_from_files(store, "005930")
    assert len(want) > 0 and len(want) < len(trades_from_files(store).query("symbol == '005930'"))
    (vwap,) = queries.run("vwap", store, **spelling, **DAY_PARAMS).to_pylist()
    assert (vwap["symbol"], vwap["venue"]) == ("005930", "NXT")
    assert (vwap["trades"], vwap["volume"]) == (len(want), want.volume.sum())
    bars = queries.run("bars", store, **spelling, **DAY_PARAMS)
    assert set(bars.column("venue").to_pylist()) == {"NXT"}
    assert sum(bars.column("trades").to_pylist()) == len(want)
    assert bars.equals(queries.run("bars", store, symbol="005930", venue="NXT", **DAY_PARAMS))
    for name in ("spread", "imbalance"):
        got = queries.run(name, store, **spelling, **DAY_PARAMS)
        assert got.num_rows > 0 and set(got.column("venue").to_pylist()) == {"NXT"}, name
        assert got.equals(queries.run(name, store, symbol="005930", venue="NXT", **DAY_PARAMS)), name
    (cov,) = queries.run("coverage", store, **spelling, **DAY_PARAMS).to_pylist()
    assert (cov["symbol"], cov["trades"]) == ("005930", len(want))


def test_venue_is_case_insensitive(store: Path) -> None:
    lower = queries.run("vwap", store, venue="nxt", **DAY_PARAMS)
    assert lower.num_rows == len(SYMBOLS) and set(lower.column("venue").to_pylist()) == {"NXT"}
    assert lower.equals(queries.run("vwap", store, venue="NXT", **DAY_PARAMS))
    assert queries.run("vwap", store, venue=" Krx ", **DAY_PARAMS).column("venue").to_pylist() == ["KRX"] * 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"symbol": "5930"}, "symbol='5930': not a Kiwoom stock item"),
        ({"symbol": "005930,000660"}, "give one code or item"),
        ({"symbol": "005930_NX,005930_AL"}, "give one code or item"),
        ({"symbol": "005930_NX", "venue": "KRX"}, "symbol='005930_NX' is on NXT, not KRX"),
        ({"venue": "NYSE"}, "venue='NYSE' is not one of KRX, NXT, SOR"),
    ],
)
def test_filters_that_cannot_match_are_refused(store: Path, params: dict[str, str], message: str) -> None:
    with pytest.raises(NamedQueryError, match=re.escape(message)):
        queries.run("vwap", store, **params, **DAY_PARAMS)


def test_cli_item_form_returns_the_nxt_rows(store: Path) -> None:
    vwap = ["--data-dir", str(store), "--named", "vwap", "--param", f"start={DAY}", "--param", f"end={DAY}"]
    r = invoke(*vwap, "--param", "symbol=005930_NX", "--format", "json")
    assert r.exit_code == 0, r.output
    (row,) = [orjson.loads(line) for line in r.stdout.splitlines()]
    want = nxt_trades_from_files(store, "005930")
    assert (row["symbol"], row["venue"], row["trades"]) == ("005930", "NXT", len(want))
    r = invoke(*vwap, "--param", "venue=sor")
    assert r.exit_code == 0 and "(0 rows)" in r.stdout  # a venue nobody recorded: valid, empty
    r = invoke(*vwap, "--param", "symbol=5930")
    assert r.exit_code == 2 and r.stderr.startswith("error: vwap: symbol='5930'")


# --------------------------------------------------------------------------- coverage


def test_coverage_counts_breaks_and_gaps(tmp_path: Path) -> None:
    # 005930 KRX loses a trade at 09:07 (a break the recorder also logged as 'continuity',
    # which must not excuse it); 035420 NXT loses one at 09:02:10, inside a disconnect that
    # applies to every symbol (excused).
    drops = [drop_first_trade("005930", "090700"), drop_first_trade("035420_NX", "090210")]
    frames = market_frames(lambda e: any([d(e) for d in drops]))
    gaps = [
        Gap(kst("090200"), kst("090230"), "disconnect", "close 1006", (), 1 << 16),
        Gap(kst("090500"), kst("090510"), "reg_rejected", "105115", ("000660_NX",), 2 << 16),
        Gap(kst("090700"), kst("090703"), "continuity", "missed", ("005930",), 3 << 16),
        Gap(kst("090100"), None, "reg_rejected", "open-ended", ("999999", "999999_NX"), 4 << 16),
    ]
    write_store(tmp_path, frames, gaps)
    rows = {r["symbol"]: r for r in queries.run("coverage", tmp_path, **DAY_PARAMS).to_pylist()}
    assert sorted(rows) == [*sorted(SYMBOLS), "999999"]
    assert {s: r["cum_volume_breaks"] for s, r in rows.items()} == {
        "005930": 1,
        "000660": 0,
        "035420": 0,
        "999999": 0,
    }
    assert {s: (r["gaps"], r["gap_seconds"]) for s, r in rows.items()} == {
        "005930": (2, 33.0),
        "000660": (2, 40.0),
        "035420": (1, 30.0),
        "999999": (2, 30.0),  # the open-ended gap counts, adds no seconds
    }
    df = trades_from_files(tmp_path)
    books = sum(pq.read_metadata(f).num_rows for f in tmp_path.glob("orderbook/*/*/*.parquet"))
    for sym in SYMBOLS:
        r = rows[sym]
        assert r["trades"] == (df.symbol == sym).sum()
        assert r["first_ts"] == dt.datetime(2026, 7, 20, 9, 0, tzinfo=KST)  # the first books
        assert r["last_ts"].astimezone(KST).strftime("%H%M") == "0909"
    assert sum(r["orderbook"] for r in rows.values()) == books
    assert rows["999999"]["trades"] == 0 and rows["999999"]["first_ts"] is None
    one = queries.run("coverage", tmp_path, symbol="000660", **DAY_PARAMS).to_pylist()
    assert [(r["symbol"], r["gaps"]) for r in one] == [("000660", 2)]
    # With a venue, a gap that names items counts only on their venue; one naming none, on all.
    krx = queries.run("coverage", tmp_path, symbol="000660", venue="KRX", **DAY_PARAMS).to_pylist()
    nxt = queries.run("coverage", tmp_path, symbol="000660_NX", **DAY_PARAMS).to_pylist()
    assert [(r["gaps"], r["gap_seconds"]) for r in krx] == [(1, 30.0)]
    assert [(r["gaps"], r["gap_seconds"]) for r in nxt] == [(2, 40.0)]
    assert krx[0]["trades"] + nxt[0]["trades"] == rows["000660"]["trades"]
    # 005930's missed trade was on KRX: the break is there, not on NXT.
    breaks = {
        item: queries.run("coverage", tmp_path, symbol=item, **DAY_PARAMS).to_pylist()[0]["cum_volume_breaks"]
        for item in ("005930", "005930_NX")
    }
    assert breaks == {"005930": 1, "005930_NX": 0}
    krx_breaks = queries.run("coverage", tmp_path, symbol="005930", venue="krx", **DAY_PARAMS)
    assert krx_breaks.column("cum_volume_breaks").to_pylist() == [1]


def test_coverage_of_a_clean_store_has_no_breaks(store: Path) -> None:
    rows = queries.run("coverage", store, **DAY_PARAMS).to_pylist()
    assert [(r["symbol"], r["cum_volume_breaks"], r["gaps"]) for r in rows] == [
        (s, 0, 0) for s in sorted(SYMBOLS)
    ]


# --------------------------------------------------------------------------- hand-made books


def book(
    item: str, hhmmss: str, ask: int, ask_qty: int, bid: int, bid_qty: int, tot_ask: int, tot_bid: int
) -> dict:
    values = {"21": hhmmss, "41": str(ask), "61": str(ask_qty), "51": str(bid), "71": str(bid_qty)}
    values.update({"121": str(tot_ask), "125": str(tot_bid)})
    return {"values": values, "type": "0D", "name": "주식호가잔량", "item": item}


def trade(item: str, hhmmss: str, price: int, qty: int, cum: int) -> dict:
    values = {"20": hhmmss, "10": str(price), "15": f"+{qty}", "13": str(cum)}
    return {"values": values, "type": "0B", "name": "주식체결", "item": item}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """005930 on KRX: six snapshots, one of them one-sided, two in the same second; on NXT: one.

    ============  =========  =========  =====================================
    time (KST)    ask/qty    bid/qty    weight in its 1-minute bucket
    ============  =========  =========  =====================================
    09:00:00      101/10     100/30     20 s (until 09:00:20)
    09:00:20 a    105/7      100/7      0 s (b follows in the same second)
    09:00:20 b    103/20     100/20     25 s (until the one-sided book)
    09:00:45      0/0        100/5      excluded (one-sided), ends b
    09:00:50      102/5      101/15     10 s (capped at 09:01:00)
    09:01:10      102/10     101/10     50 s (last: until its bucket ends)
    NXT 09:00:30  100/4      99/6       30 s (its own stream)
    ============  =========  =========  =====================================
    """
    frames = [
        (kst("090000"), [book("005930", "090000", 101, 10, 100, 30, 50, 70)]),
        (kst("090020"), [book("005930", "090020", 105, 7, 100, 7, 7, 7),
                         book("005930", "090020", 103, 20, 100, 20, 40, 40)]),
        (kst("090030"), [book("005930_NX", "090030", 100, 4, 99, 6, 4, 6)]),
        (kst("090045"), [book("005930", "090045", 0, 0, 100, 5, 0, 5)]),
        (kst("090050"), [book("005930", "090050", 102, 5, 101, 15, 10, 30)]),
        (kst("090110"), [book("005930", "090110", 102, 10, 101, 10, 20, 20)]),
        (kst("090001"), [trade("005930", "090001", 100, 10, 1010), trade("005930_NX", "090001", 99, 4, 504)]),
        (kst("090002"), [trade("005930", "090002", 102, 5, 1015), trade("005930", "090002", 101, 5, 1020)]),
    ]  # fmt: skip
    write_store(tmp_path, frames)
    return tmp_path


def test_spread_is_time_weighted_by_hand(tiny: Path) -> None:
    rows = queries.run("spread", tiny, **DAY_PARAMS).to_pylist()
    assert [(r["bucket"].strftime("%H%M"), r["venue"], r["snapshots"], r["seconds"]) for r in rows] == [
        ("0900", "KRX", 4, 55.0),
        ("0900", "NXT", 1, 30.0),
        ("0901", "KRX", 1, 50.0),
    ]
    krx, nxt, late = rows
    assert krx["spread"] == pytest.approx((20 * 1 + 0 * 5 + 25 * 3 + 10 * 1) / 55)
    assert krx["mid"] == pytest.approx((20 * 100.5 + 25 * 101.5 + 10 * 101.5) / 55)
    assert krx["spread_bps"] == pytest.approx((20 / 100.5 + 25 * 3 / 101.5 + 10 / 101.5) * 1e4 / 55)
    assert krx["bid_depth"] == pytest.approx((20 * 30 + 25 * 20 + 10 * 15) / 55)
    assert krx["ask_depth"] == pytest.approx((20 * 10 + 25 * 20 + 10 * 5) / 55)
    assert (nxt["spread"], nxt["mid"], nxt["bid_depth"], nxt["ask_depth"]) == (1.0, 99.5, 6.0, 4.0)
    assert (late["spread"], late["mid"]) == (1.0, 101.5)
    # one 2-minute bucket: the 09:00:50 book now stands until 09:01:10, and the last until 09:02
    (two,) = queries.run("spread", tiny, venue="KRX", interval="2 minutes", **DAY_PARAMS).to_pylist()
    assert two["seconds"] == 20 + 25 + 20 + 50
    assert two["spread"] == pytest.approx((20 * 1 + 25 * 3 + 20 * 1 + 50 * 1) / 115)


def test_imbalance_is_time_weighted_by_hand(tiny: Path) -> None:
    rows = queries.run("imbalance", tiny, symbol="005930", venue="KRX", **DAY_PARAMS).to_pylist()
    krx, late = rows
    assert krx["imbalance_1"] == pytest.approx((20 * 0.5 + 0 * 0 + 25 * 0 + 10 * 0.5) / 55)
    assert krx["imbalance_10"] == pytest.approx((20 * (20 / 120) + 25 * 0 + 10 * 0.5) / 55)
    assert krx["bid_qty_10"] == pytest.approx((20 * 70 + 25 * 40 + 10 * 30) / 55)
    assert (krx["snapshots"], krx["seconds"]) == (4, 55.0)
    assert (late["imbalance_1"], late["imbalance_10"]) == (0.0, 0.0)
    (nxt,) = queries.run("imbalance", tiny, venue="NXT", **DAY_PARAMS).to_pylist()
    assert nxt["imbalance_1"] == pytest.approx(0.2)


def test_vwap_by_hand(tiny: Path) -> None:
    rows = queries.run("vwap", tiny, **DAY_PARAMS).to_pylist()
    assert [(r["venue"], r["trades"], r["volume"], r["value"], r["vwap"]) for r in rows] == [
        ("KRX", 3, 20, 100 * 10 + 102 * 5 + 101 * 5, 2015 / 20),
        ("NXT", 1, 4, 396, 99.0),
    ]
    assert rows[0]["date"] == dt.date(2026, 7, 20)
    (bar,) = queries.run("bars", tiny, venue="KRX", **DAY_PARAMS).to_pylist()
    # 102 and 101 share 09:00:02: seq (order of arrival) decides that 101 is the close
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (100, 102, 100, 101)


# --------------------------------------------------------------------------- pruning


def scan_report(root: Path, query: str, params: dict[str, Any]) -> tuple[str, list[int]]:
    """DuckDB's EXPLAIN ANALYZE of ``query`` and the "Total Files Read" of each Parquet scan."""
    con = queries.connect(root)
    try:
        text = "\n".join(str(v) for _, v in con.execute("EXPLAIN ANALYZE " + query, params).fetchall())
    finally:
        con.close()
    return text, [int(n) for n in re.findall(r"Total Files Read:\s*(\d+)", text)]


def test_date_and_symbol_filters_read_only_their_folder(store: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(store, root)
    for d in ("2026-07-21", "2026-07-22"):  # more days: 3 symbols × 3 days of trades
        shutil.copytree(root / "trades" / f"date={DAY}", root / "trades" / f"date={d}")
    report, files = scan_report(
        root, "SELECT count(*) FROM trades WHERE date = $d::DATE AND symbol = $s", {"d": DAY, "s": "035420"}
    )
    assert files == [1] and "Scanning Files: 1/9" in report
    assert f"date={DAY}/symbol=035420/" in report
    _, files = scan_report(root, "SELECT count(*) FROM trades", {})
    assert files == [9]
    # The same through the named query, whose filter is "$symbol IS NULL OR symbol = $symbol".
    params = {"start": DAY, "end": DAY, "symbol": "035420", "venue": None, "interval": "1 minute"}
    _, files = scan_report(root, queries.get("bars").sql, params)
    assert files == [1]
    _, files = scan_report(root, queries.get("bars").sql, {**params, "symbol": None, "end": "2026-07-21"})
    assert files == [6]


def test_pruned_partitions_are_never_opened(store: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    shutil.copytree(store, root)
    later = root / "trades" / "date=2026-07-21"
    shutil.copytree(root / "trades" / f"date={DAY}", later)
    garbage = [*later.rglob("*.parquet"), *root.glob(f"trades/date={DAY}/symbol=005930/*.parquet")]
    for f in garbage:  # not Parquet at all: reading one fails
        f.write_bytes(b"not parquet " * 100)
    # (The view learns its columns from the first part file in path order, date=2026-07-20/
    # symbol=000660, which stays intact.)
    ok = queries.run("bars", root, symbol="035420", **DAY_PARAMS)
    assert ok.num_rows == 20
    n = queries.sql(root, f"SELECT count(*) AS n FROM trades WHERE date = '{DAY}' AND symbol <> '005930'")
    intact = [f for s in ("000660", "035420") for f in store.glob(f"trades/*/symbol={s}/*.parquet")]
    assert n.to_pylist()[0]["n"] == sum(pq.read_metadata(f).num_rows for f in intact) > 0
    with pytest.raises(QueryError):  # without the filters the garbage is read, and fails
        queries.run("bars", root, start=DAY, end="2026-07-21", symbol="035420")
    with pytest.raises(QueryError):
        queries.run("bars", root, **DAY_PARAMS)


def test_empty_store_gives_empty_results(tmp_path: Path) -> None:
    for name in queries.named():
        assert queries.run(name, tmp_path, **DAY_PARAMS).num_rows == 0, name


# --------------------------------------------------------------------------- CLI


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["query", *args])


def test_cli_named_bars_as_csv(store: Path) -> None:
    r = invoke(
        "--data-dir", str(store), "--named", "bars", "--param", f"start={DAY}", "--param", f"end={DAY}",
        "--param", "symbol=000660", "--param", "interval=5 minutes", "--format", "csv",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    want = queries.run("bars", store, symbol="000660", interval="5 minutes", **DAY_PARAMS).to_pylist()
    assert len(rows) == len(want) == 4
    for got, exp in zip(rows, want, strict=True):
        assert (got["symbol"], got["venue"]) == (exp["symbol"], exp["venue"])
        assert [int(got[c]) for c in ("open", "high", "low", "close", "volume", "value", "trades")] == [
            exp[c] for c in ("open", "high", "low", "close", "volume", "value", "trades")
        ]
        assert float(got["vwap"]) == pytest.approx(exp["vwap"])
        assert got["bucket"].startswith(exp["bucket"].strftime("%Y-%m-%d %H:%M:00"))


def test_cli_lists_named_queries() -> None:
    r = invoke("--named", "--format", "csv")
    assert r.exit_code == 0, r.output
    listing = {row["name"]: row for row in csv.DictReader(io.StringIO(r.stdout))}
    assert list(listing) == ["bars", "coverage", "imbalance", "spread", "vwap"]
    assert "interval interval = '1 minute'" in listing["bars"]["params"]


def test_cli_errors_are_messages_not_tracebacks(store: Path, tmp_path: Path) -> None:
    cases = [
        (["SELEC count(*) FROM trades"], 1, "Parser Error"),
        (["SELECT nope FROM trades"], 1, "nope"),
        (["--named", "bars", "--param", f"start={DAY}"], 2, "missing parameter(s) end"),
        (["--named", "bars", "--param", "start"], 2, "expected K=V"),
        (["--named", "nope"], 2, "no named query 'nope'"),
        (["SELECT 1", "--named", "bars"], 2, "exactly one"),
        ([], 2, "exactly one"),
        (
            ["--named", "vwap", "--param", f"start={DAY}", "--param", f"end={DAY}", "--format", "parquet"],
            2,
            "--out",
        ),
    ]
    for args, code, message in cases:
        r = invoke("--data-dir", str(store), *args)
        assert r.exit_code == code, (args, r.output)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.output and isinstance(r.exception, SystemExit), args


def test_cli_sql_with_bound_param_and_parquet_out(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.parquet"
    r = invoke(
        "--data-dir", str(store), "--named", "vwap", "--param", f"start={DAY}", "--param", f"end={DAY}",
        "--format", "parquet", "--out", str(out),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert pq.read_table(out).equals(queries.run("vwap", store, **DAY_PARAMS))
    r = invoke(
        "--data-dir",
        str(store),
        "SELECT count(*) AS n FROM trades WHERE symbol = $s",
        "--param",
        "s=005930",
        "--format",
        "json",
    )
    assert r.exit_code == 0, r.output
    assert orjson.loads(r.stdout)["n"] == len(
        pq.read_table(next(store.glob("trades/*/symbol=005930/*.parquet")))
    )


def test_book_seconds_stands_until_the_next_snapshot_within_its_bucket(tmp_path: Path) -> None:
    con = queries.connect(tmp_path)
    got = con.execute(
        """
        SELECT book_seconds(TIMESTAMPTZ '2026-07-20 10:00:05+09', next_ts,
                            TIMESTAMPTZ '2026-07-20 10:00:00+09', INTERVAL 1 MINUTE)
        FROM (VALUES (TIMESTAMPTZ '2026-07-20 10:00:20+09'), (NULL), (TIMESTAMPTZ '2026-07-20 10:01:30+09'))
            AS t(next_ts)
        """
    ).fetchall()
    assert [r[0] for r in got] == [15.0, 55.0, 55.0]  # the next one; none (day's last); capped
