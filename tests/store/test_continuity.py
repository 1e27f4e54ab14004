"""The vectorised continuity check agrees with the plain one-row-at-a-time loop."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from recorder.store.continuity import ContinuityChecker

STREAMS = [("005930", "KRX"), ("005930", "NXT"), ("000660", "KRX")]


def batch(rows: list[tuple[int, int, int, int]], first_seq: int) -> pa.Table:
    """Trades from (stream, cum_volume, volume, ts) tuples, seq in list order, rows reversed."""
    cols: dict[str, list] = {"seq": [], "symbol": [], "venue": [], "cum_volume": [], "volume": [], "ts": []}
    for k, (stream, cum, vol, ts) in enumerate(rows):
        cols["seq"].append(first_seq + k)
        cols["symbol"].append(STREAMS[stream][0])
        cols["venue"].append(STREAMS[stream][1])
        cols["cum_volume"].append(cum)
        cols["volume"].append(vol)
        cols["ts"].append(ts)
    types = {n: pa.string() if n in ("symbol", "venue") else pa.int64() for n in cols}
    t = pa.table({n: pa.array(v[::-1], types[n]) for n, v in cols.items()})  # the order must not matter
    return t


INT64 = st.integers(-(2**63), 2**63 - 1)
# (stream, jump, volume, ts): jump 0 continues the stream (cum = previous cum + volume);
# anything else breaks it, huge values included (cum + volume may overflow int64).
STEP = st.tuples(
    st.integers(0, len(STREAMS) - 1),
    st.sampled_from([0, 0, 0, 1, -1]) | INT64,
    st.integers(0, 5) | INT64,
    st.integers(0, 10**18),
)


def trades(steps: list[tuple[int, int, int, int]], cums: dict[int, int]) -> list[tuple[int, int, int, int]]:
    rows = []
    for stream, jump, vol, ts in steps:
        cum = cums.get(stream, 0) + vol + jump
        if not -(2**63) <= cum < 2**63:
            cum = jump
        cums[stream] = cum
        rows.append((stream, cum, vol, ts))
    return rows


@settings(max_examples=300, deadline=None)
@given(batches=st.lists(st.lists(STEP, max_size=12), max_size=4), resets=st.lists(st.booleans(), max_size=4))
def test_vectorised_check_matches_the_loop(
    batches: list[list[tuple[int, int, int, int]]], resets: list[bool]
) -> None:
    fast, slow = ContinuityChecker(), ContinuityChecker()
    seq, cums = 0, {}
    for i, steps in enumerate(batches):
        t = batch(trades(steps, cums), seq)
        seq += len(steps)
        assert fast.check(t) == slow._check_rows(t)
        assert fast.state() == slow.state()
        if i < len(resets) and resets[i]:
            fast.reset()
            slow.reset()
    assert fast.breaks == slow.breaks


def test_a_continuous_stream_has_no_breaks_and_a_hole_has_one() -> None:
    c = ContinuityChecker()
    rows = [(0, 10, 10, 1), (0, 15, 5, 2), (1, 7, 7, 3), (0, 17, 2, 4)]
    assert c.check(batch(rows, 0)) == []
    gaps = c.check(batch([(0, 30, 3, 5), (1, 8, 1, 6)], 100))
    assert [(g.symbols, g.seq, g.start_ns, g.end_ns) for g in gaps] == [(("005930",), 100, 4, 5)]
    assert "10 shares of trades missing" in gaps[0].detail


def test_sums_beyond_int64_are_compared_exactly() -> None:
    c = ContinuityChecker()
    big = 2**63 - 1
    gaps = c.check(batch([(0, big, 1, 1), (0, 3, 5, 2), (0, 8, 5, 3)], 0))  # big + 5 overflows int64
    assert [g.seq for g in gaps] == [1]
    assert c.state() == [["005930", "KRX", 8, 3]]
