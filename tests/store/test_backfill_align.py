"""Aligning recorded trades with the tick chart: exactly the missing trades, proven, or nothing."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.kiwoom.time import NS
from recorder.store.backfill import HEALED, UNHEALABLE, Hole, ItemTrades, Trade, align, find_holes

T0 = 1_784_510_000 * NS  # a KST morning


@dataclass(frozen=True)
class Row:
    ts_ns: int
    price: int
    qty: int


def tape(draw: st.DrawFn, n: int) -> list[Row]:
    """A day's executions: seconds that never go back, often several in one second, few prices."""
    rows, sec = [], 0
    for _ in range(n):
        sec += draw(st.sampled_from([0, 0, 0, 1, 2]))
        rows.append(Row(T0 + sec * NS, draw(st.sampled_from([70100, 70200, 70300])), draw(st.integers(1, 5))))
    return rows


def recorded(rows: list[Row], keep: list[bool], base: int = 1_000) -> ItemTrades:
    """The kept rows of ``rows`` as recorded trades (cum_volume from the whole tape)."""
    out, cum = [], base
    for i, (r, k) in enumerate(zip(rows, keep, strict=True)):
        cum += r.qty
        if k:
            out.append(Trade(r.ts_ns, r.ts_ns, (i + 1) << 16, r.price, r.qty, cum))
    return ItemTrades("005930", out)


Day = tuple[list[Row], list[bool]]  # a tape, and which of its trades were recorded


@st.composite
def day_with_holes(draw: st.DrawFn) -> Day:
    rows = tape(draw, draw(st.integers(8, 60)))
    keep = [True] * len(rows)
    for _ in range(draw(st.integers(1, 4))):  # runs of lost trades, never the first or last
        a = draw(st.integers(1, len(rows) - 2))
        b = draw(st.integers(a, min(a + 6, len(rows) - 2)))
        keep[a : b + 1] = [False] * (b + 1 - a)
    return rows, keep


def holes_of(it: ItemTrades) -> list[Hole]:
    return find_holes({it.item: it}, []).get(it.item, [])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(day_with_holes(), st.integers(0, 5))
def test_every_hole_is_filled_with_exactly_the_lost_trades(
    day: tuple[list[Row], list[bool]], skip: int
) -> None:
    """Whatever the repeats of (second, price, quantity), the fills are the lost runs, in order;
    the chart may start anywhere before the first hole (the walk stops early)."""
    rows, keep = day
    it = recorded(rows, keep)
    holes = holes_of(it)
    assert holes
    first_lost = keep.index(False)
    start = min(skip, first_lost - 1)  # the chart still holds the trade before the first hole
    fills = align(it, holes, rows[start:])
    lost_runs, run = [], []
    for r, k in zip(rows, keep, strict=True):
        if not k:
            run.append(r)
        elif run:
            lost_runs.append(run)
            run = []
    assert [f.outcome for f in fills] == [HEALED] * len(holes)
    assert [f.rows for f in fills] == lost_runs
    assert [f.filled for f in fills] == [h.missing for h in holes]


@settings(max_examples=200, deadline=None, derandomize=True)
@given(day_with_holes(), st.data())
def test_a_chart_missing_a_trade_never_yields_a_wrong_fill(
    day: tuple[list[Row], list[bool]], data: st.DataObject
) -> None:
    """One execution absent from the chart: a hole is healed only with exactly its lost trades."""
    rows, keep = day
    it = recorded(rows, keep)
    holes = holes_of(it)
    gone = data.draw(st.integers(0, len(rows) - 1))
    chart = rows[:gone] + rows[gone + 1 :]
    for f in align(it, holes, chart):
        h = f.hole
        truth = [r for r in rows if h.before.cum < _cum(rows, r) < h.after.cum - h.after.qty + 1]
        if f.outcome == HEALED:
            assert f.rows == truth and f.filled == h.missing
        else:
            assert f.outcome == UNHEALABLE and f.rows == [] and f.detail


def _cum(rows: list[Row], row: Row, base: int = 1_000) -> int:
    cum = base
    for r in rows:
        cum += r.qty
        if r is row:
            return cum
    raise AssertionError


def test_a_chart_that_does_not_reach_back_heals_nothing() -> None:
    rows = [Row(T0 + i * NS, 70100, 1 + i % 3) for i in range(10)]
    keep = [True] * 10
    keep[2] = keep[3] = False
    it = recorded(rows, keep)
    fills = align(it, holes_of(it), rows[2:])
    assert [(f.outcome, f.rows) for f in fills] == [(UNHEALABLE, [])]
    assert "reach back" in fills[0].detail


def test_recorded_trades_the_chart_does_not_know_heal_nothing() -> None:
    rows = [Row(T0 + i * NS, 70100, 2) for i in range(10)]
    keep = [i not in (4, 5) for i in range(10)]
    it = recorded(rows, keep)
    other = [Row(r.ts_ns, 80000, r.qty) for r in rows]  # another item's tape, say
    fills = align(it, holes_of(it), other)
    assert [(f.outcome, f.rows) for f in fills] == [(UNHEALABLE, [])]
    assert "no recorded trade matches" in fills[0].detail
    assert align(it, holes_of(it), [])[0].outcome == UNHEALABLE


def test_a_chart_that_matches_two_ways_heals_nothing() -> None:
    """A tape of identical executions: every offset fits as well as the next, so no proof."""
    rows = [Row(T0, 70100, 1) for _ in range(6)]
    keep = [True, True, False, True, True, True]
    it = recorded(rows, keep)
    # One recorded trade per distinct candidate position cannot be told apart: only a
    # unique best offset is accepted; here the votes tie between shifted alignments.
    fills = align(it, holes_of(it), rows[1:])
    for f in fills:
        assert f.outcome == UNHEALABLE or f.rows == [rows[2]]


def test_no_holes_no_fills() -> None:
    rows = [Row(T0 + i * NS, 70100, 1) for i in range(5)]
    it = recorded(rows, [True] * 5)
    assert holes_of(it) == [] and align(it, [], rows) == []
