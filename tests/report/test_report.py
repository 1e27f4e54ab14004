"""``recorder report``: one self-contained HTML page whose numbers are the store's."""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from recorder import Store
from recorder.cli.main import main
from recorder.report.page import SECTIONS
from tests.report.stores import build_day

DAY = "2026-07-20"


class _Page(HTMLParser):
    """The parts of the page the tests look at."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value) of every src/href
        self.sections: list[str] = []
        self.svg_in: dict[str, int] = {}
        self.headline: dict[str, str] = {}
        self.ids: list[str] = []
        self.urls: list[str] = []  # url(#id) references in attributes
        self._section: str | None = None
        self._key: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.ids += [v for k, v in attrs if k == "id" and v]
        self.urls += re.findall(r"url\(#([^)]+)\)", " ".join(v or "" for _, v in attrs))
        for name, value in attrs:
            if name in ("src", "href", "xlink:href") or name.endswith(":href"):
                self.refs.append((tag, name, value or ""))
        if tag == "section":
            self._section = a.get("id")
            self.sections.append(a.get("id") or "")
        if tag == "svg" and self._section:
            self.svg_in[self._section] = self.svg_in.get(self._section, 0) + 1
        if tag == "td" and "data-key" in a:
            self._key = a["data-key"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        if tag == "td":
            self._key = None

    def handle_data(self, data: str) -> None:
        if self._key:
            self.headline[self._key] = data.strip()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_day(root, DAY)
    return root


@pytest.fixture(scope="module")
def page(store_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> _Page:
    out = tmp_path_factory.mktemp("out") / "report.html"
    result = CliRunner().invoke(
        main, ["report", "--date", DAY, "--data-dir", str(store_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    parsed = _Page()
    parsed.feed(out.read_text(encoding="utf-8"))
    parsed.close()
    return parsed


def test_every_section_has_its_plot(page: _Page) -> None:
    assert page.sections == [key for key, _, _ in SECTIONS]
    assert page.svg_in == {key: 1 for key, _, _ in SECTIONS}
    assert page.tags.count("svg") == len(SECTIONS)


def test_nothing_is_fetched_from_the_network(page: _Page) -> None:
    assert "script" not in page.tags and "link" not in page.tags
    remote = [r for r in page.refs if "://" in r[2] or r[2].startswith("//")]
    assert not remote, remote
    assert all(value.startswith(("data:", "#")) for _, _, value in page.refs), page.refs


def test_the_plots_share_the_page_without_clashing_ids(page: _Page) -> None:
    assert len(page.ids) == len(set(page.ids))
    internal = [v[1:] for _, _, v in page.refs if v.startswith("#")] + page.urls
    assert internal and set(internal) <= set(page.ids)


def test_headline_numbers_are_the_stores(page: _Page, store_dir: Path) -> None:
    store = Store(store_dir)

    def one(sql: str) -> int:
        return int(store.sql(sql, {"d": DAY}).column(0)[0].as_py())

    expected = {
        "trades rows": one("SELECT count(*) FROM trades WHERE date = $d"),
        "orderbook rows": one("SELECT count(*) FROM orderbook WHERE date = $d"),
        "gaps rows": one("SELECT count(*) FROM gaps WHERE date = $d"),
        "rejects rows": one("SELECT count(*) FROM rejects WHERE date = $d"),
        "rejects": one("SELECT count(*) FROM rejects WHERE date = $d"),
        "symbols": one(
            "SELECT count(DISTINCT symbol) FROM (SELECT symbol FROM trades WHERE date = $d "
            "UNION ALL SELECT symbol FROM orderbook WHERE date = $d)"
        ),
        "gaps (other than continuity)": one(
            "SELECT count(*) FROM gaps WHERE date = $d AND kind <> 'continuity'"
        ),
        "continuity breaks": one("SELECT count(*) FROM gaps WHERE date = $d AND kind = 'continuity'"),
    }
    got = {k: int(page.headline[k].replace(",", "")) for k in expected}
    assert got == expected
    # The day was built with a disconnect of 40 s, continuity breaks after it, and 3 rejects.
    assert expected["gaps (other than continuity)"] == 1 and expected["continuity breaks"] > 0
    assert expected["rejects"] == 3 and expected["symbols"] == 6
    assert float(page.headline["gap seconds"]) == pytest.approx(40.0)


def test_a_date_with_nothing_recorded_is_one_line_and_exit_2(store_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(
        main, ["report", "--date", "2026-07-21", "--data-dir", str(store_dir), "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.strip() == f"error: nothing recorded on 2026-07-21 in {store_dir}"
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-dir", "{tmp}/missing", "--out", "{tmp}/r.html"], "missing"),
        (["--out", "{tmp}/no/such/folder/r.html"], "does not exist"),
        (["--date", "2026-13-01", "--out", "{tmp}/r.html"], "is not a date"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    store_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    argv = ["report", "--date", DAY, "--data-dir", str(store_dir)] + [a.format(tmp=tmp_path) for a in args]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "r.html").exists()


def test_many_symbols_show_the_most_active_in_the_heatmap(tmp_path: Path) -> None:
    from recorder.report.data import HEATMAP_SYMBOLS, load

    build_day(tmp_path, DAY, symbols=HEATMAP_SYMBOLS + 15, minutes=2)
    data = load(Store(tmp_path), dt.date.fromisoformat(DAY))
    assert data.headline.symbols == HEATMAP_SYMBOLS + 15
    assert len(data.coverage_ranked) == HEATMAP_SYMBOLS
    assert {r["symbol"] for r in data.coverage} == set(data.coverage_ranked)
    activity = (
        Store(tmp_path)
        .sql(
            "SELECT symbol, count(*) AS n FROM (SELECT symbol FROM trades UNION ALL "
            "SELECT symbol FROM orderbook) GROUP BY symbol ORDER BY n DESC, symbol"
        )
        .to_pylist()
    )
    assert data.coverage_ranked == [r["symbol"] for r in activity[:HEATMAP_SYMBOLS]]
    assert any(str(HEATMAP_SYMBOLS) in note and str(HEATMAP_SYMBOLS + 15) in note for note in data.notes)
    # the active-symbols line counts every symbol, not only the ones in the heatmap
    assert max(r["symbols"] for r in data.active) > HEATMAP_SYMBOLS


def test_a_day_with_only_rejects_still_has_every_plot(tmp_path: Path) -> None:
    from recorder.kiwoom.time import trading_day
    from recorder.store.pipeline import Pipeline
    from recorder.store.sink import Sink

    sink = Sink(tmp_path / "store", "w1")
    pipe = Pipeline(sink, trading_day=trading_day(DAY))
    pipe.feed_frame("not json {", 1_784_505_600_000_000_000, 0)  # 2026-07-20 09:00 KST
    pipe.drain()
    sink.close()
    out = tmp_path / "r.html"
    argv = ["report", "--date", DAY, "--data-dir", str(tmp_path / "store"), "--out", str(out)]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    parsed = _Page()
    parsed.feed(out.read_text(encoding="utf-8"))
    assert parsed.svg_in == {key: 1 for key, _, _ in SECTIONS}
    assert parsed.headline["rejects"] == "1" and parsed.headline["symbols"] == "0"
