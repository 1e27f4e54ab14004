"""Ground truth: what the venue wrote ↔ what the journal holds ↔ what the store holds.

Three comparisons, as ``tests/test_capture.py`` makes them, generalised to many
connections and many capture processes:

1. **Transport** (:func:`align`): the journal's frames are, connection after connection,
   exactly the frames the venue wrote: all of them for a connection the server closed
   cleanly, a prefix for one that was aborted, killed or closed by the client (at least
   what a PING barrier proved received). Nothing the venue never sent.
2. **Store = journal** (:func:`store_vs_journal`): the market rows in Parquet are exactly
   the rows the journal decodes to, each once (none missing, none duplicated).
3. **Values** (:func:`value_check`): independent of the decoder, every trade and order-book
   entry the venue wrote in a frame that reached the journal is in the store, by value.
"""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import queries
from recorder.kiwoom.decode import SEQ_SHIFT, Decoder
from recorder.kiwoom.frames import row_columns
from recorder.sim.venue import SentEntry, SentFrame
from recorder.store.journal import EVENT, read_records
from recorder.store.layout import journal_root
from soak.harness import WRITER

log = logging.getLogger(__name__)

Frame = tuple[int, int, str | bytes]  # (fno, recv_ts_ns, frame as received)
MARKET = ("trades", "orderbook")


def _b(data: str | bytes) -> bytes:
    return data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)


def journal_frames(data_dir: Path, writer: str = WRITER) -> list[Frame]:
    """Every frame record of the writer's journal (events left out), in fno order."""
    return [
        (r.fno, r.recv_ts_ns, r.frame())
        for r in read_records(journal_root(data_dir, writer))
        if r.kind != EVENT
    ]


def journal_events(data_dir: Path, writer: str = WRITER) -> list[tuple[int, dict[str, Any]]]:
    return [(r.fno, r.event()) for r in read_records(journal_root(data_dir, writer)) if r.kind == EVENT]


# --------------------------------------------------------------------------- 1. transport


@dataclass
class Transport:
    """The alignment of journal frames to venue frames."""

    journaled: dict[int, int] = field(default_factory=dict)  # conn → frames journaled (a prefix)
    sent: dict[int, int] = field(default_factory=dict)  # conn → frames the venue wrote
    origin: list[tuple[int, int]] = field(default_factory=list)  # journal frame i → (conn, index)
    failures: list[str] = field(default_factory=list)

    @property
    def unreceived_frames(self) -> int:
        return sum(self.sent[c] - self.journaled.get(c, 0) for c in self.sent)


def align(
    frames: Sequence[SentFrame],
    journal: Sequence[Frame],
    *,
    prefix_ok: Iterable[int] = (),
    at_least: dict[int, int] | None = None,
    only_conns: Iterable[int] | None = None,
) -> Transport:
    """Split the journal into per-connection prefixes of what the venue wrote.

    Connections are taken in id order (one session at a time, so the journal holds them in
    that order). A connection in ``prefix_ok`` may have only a prefix journaled, at least
    ``at_least[conn]`` frames; every other connection must be complete. Frames that are
    the same bytes (PINGs, REG acks) make a greedy match ambiguous, so the split is searched:
    a prefix connection may end at any point where the rest still aligns.
    """
    want_conns = set(only_conns) if only_conns is not None else None
    by_conn: dict[int, list[bytes]] = collections.defaultdict(list)
    for f in frames:
        if want_conns is None or f.conn_id in want_conns:
            by_conn[f.conn_id].append(_b(f.data))
    conns = sorted(by_conn)
    got = [_b(raw) for _, _, raw in journal]
    prefix, floor = set(prefix_ok), dict(at_least or {})
    out = Transport(sent={c: len(by_conn[c]) for c in conns})

    n_conn = len(conns)
    firsts = {by_conn[c][0] for c in conns if by_conn[c]}  # where a connection can start

    def candidates(i: int, pos: int) -> list[int]:
        """How many frames connection i may take from journal position ``pos``, best first."""
        sent = by_conn[conns[i]]
        n = 0
        while n < len(sent) and pos + n < len(got) and got[pos + n] == sent[n]:
            n += 1
        if conns[i] not in prefix:
            return [n] if n == len(sent) else []
        low = floor.get(conns[i], 0)
        # A shorter prefix only makes sense where another connection's first frame follows.
        return [k for k in range(n, low - 1, -1) if k == n or pos + k == len(got) or got[pos + k] in firsts]

    def solve() -> list[int] | None:
        """Depth-first over the choices, with dead ends remembered; no recursion."""
        if n_conn == 0:
            return [] if not got else None
        dead: set[tuple[int, int]] = set()
        path: list[int] = []
        stack = [(0, 0, iter(candidates(0, 0)))]
        while stack:
            i, pos, choices = stack[-1]
            k = next(choices, None)
            if k is None:
                stack.pop()
                dead.add((i, pos))
                if path:
                    path.pop()
                continue
            if i + 1 == n_conn:
                if pos + k == len(got):
                    return [*path, k]
                continue
            if (i + 1, pos + k) in dead:
                continue
            path.append(k)
            stack.append((i + 1, pos + k, iter(candidates(i + 1, pos + k))))
        return None

    path = solve()
    if path is None:
        out.failures.append(_diagnose(conns, by_conn, got, prefix, floor))
        return out
    pos = 0
    for c, k in zip(conns, path, strict=True):
        out.journaled[c] = k
        out.origin.extend((c, j) for j in range(k))
        pos += k
    return out


def _diagnose(
    conns: list[int],
    by_conn: dict[int, list[bytes]],
    got: list[bytes],
    prefix: set[int],
    floor: dict[int, int],
) -> str:
    """A greedy pass, to say where the journal and the venue disagree."""
    pos = 0
    for c in conns:
        sent = by_conn[c]
        n = 0
        while n < len(sent) and pos + n < len(got) and got[pos + n] == sent[n]:
            n += 1
        if c not in prefix and n < len(sent):
            return f"connection {c} closed cleanly but only {n} of its {len(sent)} frames were journaled"
        if n < floor.get(c, 0):
            return (
                f"connection {c}: {n} frames journaled, fewer than the {floor[c]} a PING barrier proved read"
            )
        pos += n
    if pos < len(got):
        return (
            f"the journal holds {len(got) - pos} frames the venue never sent (first at journal frame {pos})"
        )
    return "the journal does not align with what the venue sent"


# --------------------------------------------------------------------------- 2. store = journal


def _stored_select(table: str) -> str:
    """The store's rows of ``table``: symbol, venue, seq, ts (µs), then every value column."""
    cols = ", ".join(["symbol", "venue", "seq", "epoch_us(ts) AS ts", *row_columns(table)[5:]])
    return f"SELECT {cols} FROM {table}"


def stored_rows(data_dir: Path, table: str) -> list[tuple[Any, ...]]:
    """Rows of ``table`` ordered by seq (as :func:`_stored_select`)."""
    return [
        tuple(r.values()) for r in queries.sql(data_dir, f"{_stored_select(table)} ORDER BY seq").to_pylist()
    ]


@dataclass
class Decoded:
    rows: dict[str, list[tuple[Any, ...]]]
    rejects: list[tuple[int, int, str, str]]
    crashes: list[tuple[int, str]]  # (fno, error) of frames the decoder raised on


def decode_journal(journal: Sequence[Frame]) -> Decoded:
    """What the journal decodes to (the reference decoder, batch by batch; a frame that makes
    the decoder raise is set aside and reported instead of stopping the check)."""
    rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in MARKET}
    rejects: list[tuple[int, int, str, str]] = []
    crashes: list[tuple[int, str]] = []

    def run(batch: Sequence[Frame]) -> None:
        dec = Decoder()
        for fno, recv, raw in batch:
            dec.add(raw, recv, fno)
        res = dec.finish()
        rejects.extend(res.rejects)
        for table in MARKET:
            if table in res.tables:
                rows[table].extend(_layout(table, res.tables[table].columns))

    for i in range(0, len(journal), 2000):
        batch = journal[i : i + 2000]
        try:
            run(batch)
        except Exception:
            for frame in batch:
                try:
                    run([frame])
                except Exception as exc:
                    crashes.append((frame[0], f"{type(exc).__name__}: {exc}"))
    for table in MARKET:
        rows[table].sort(key=lambda r: r[2])
    return Decoded(rows, rejects, crashes)


def _layout(table: str, cols: dict[str, list[Any]]) -> Iterable[tuple[Any, ...]]:
    return zip(
        cols["symbol"],
        cols["venue"],
        cols["seq"],
        [t // 1000 for t in cols["ts"]],
        *(cols[n] for n in row_columns(table)[5:]),
        strict=True,
    )


@dataclass
class StoreCheck:
    stored: dict[str, int]
    expected: dict[str, int]
    missing: int  # rows the journal decodes to that the store lacks
    duplicated: int  # stored rows beyond what the journal decodes to (duplicates or strays)
    failures: list[str]


def store_vs_journal(data_dir: Path, decoded: Decoded) -> StoreCheck:
    stored, expected, failures = {}, {}, []
    missing = duplicated = 0
    for table in MARKET:
        got = stored_rows(data_dir, table)
        want = decoded.rows[table]
        stored[table], expected[table] = len(got), len(want)
        if got == want:
            continue
        g, w = collections.Counter(got), collections.Counter(want)
        lost, extra = sum((w - g).values()), sum((g - w).values())
        missing += lost
        duplicated += extra
        failures.append(f"{table}: {lost} journaled rows missing from the store, {extra} extra stored rows")
    if decoded.crashes:
        fno, err = decoded.crashes[0]
        failures.append(f"the decoder raises on {len(decoded.crashes)} journal frames, first {fno}: {err}")
    return StoreCheck(stored, expected, missing, duplicated, failures)


def store_vs_journal_at_scale(data_dir: Path, work: Path, writer: str = WRITER) -> StoreCheck:
    """:func:`store_vs_journal` for runs too long to hold in memory (an hour of 500 codes is
    millions of rows): the journal is read and decoded by the reference decoder in batches,
    its rows go into a DuckDB table spilled under ``work``, and DuckDB compares them with
    the store's (``EXCEPT ALL`` both ways). The same verdict in bounded memory."""
    import pyarrow as pa

    con = queries.connect(data_dir)
    con.execute(f"SET temp_directory = '{work}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET memory_limit = '1GB'")  # beyond it DuckDB spills to temp_directory
    selects = {t: _stored_select(t) for t in MARKET}
    names = {t: ["symbol", "venue", "seq", "ts", *row_columns(t)[5:]] for t in MARKET}
    for table, select in selects.items():
        con.execute(f"CREATE TEMP TABLE want_{table} AS {select} WHERE false")
    crashes: list[tuple[int, str]] = []
    frames = (
        (r.fno, r.recv_ts_ns, r.frame())
        for r in read_records(journal_root(data_dir, writer))
        if r.kind != EVENT
    )
    while batch := list(itertools.islice(frames, 20_000)):
        decoded = decode_journal(batch)
        crashes.extend(decoded.crashes)
        for table in MARKET:
            if rows := decoded.rows[table]:
                con.register("batch", pa.table(dict(zip(names[table], zip(*rows, strict=True), strict=True))))
                con.execute(f"INSERT INTO want_{table} SELECT * FROM batch")
                con.unregister("batch")
    stored, expected, failures = {}, {}, []
    missing = duplicated = 0
    for table, select in selects.items():
        want = f"SELECT * FROM want_{table}"
        stored[table] = con.execute(f"SELECT count(*) FROM ({select})").fetchone()[0]  # type: ignore[index]
        expected[table] = con.execute(f"SELECT count(*) FROM want_{table}").fetchone()[0]  # type: ignore[index]
        lost = con.execute(f"SELECT count(*) FROM ({want} EXCEPT ALL {select})").fetchone()[0]  # type: ignore[index]
        extra = con.execute(f"SELECT count(*) FROM ({select} EXCEPT ALL {want})").fetchone()[0]  # type: ignore[index]
        missing += lost
        duplicated += extra
        if lost or extra:
            failures.append(
                f"{table}: {lost} journaled rows missing from the store, {extra} extra stored rows"
            )
    con.close()
    if crashes:
        fno, err = crashes[0]
        failures.append(f"the decoder raises on {len(crashes)} journal frames, first {fno}: {err}")
    return StoreCheck(stored, expected, missing, duplicated, failures)


# --------------------------------------------------------------------------- 3. values


def _trade_key(e: dict[str, Any]) -> tuple[Any, ...]:
    v = e["values"]
    return (e["item"][:6], abs(int(v["10"])), abs(int(v["15"])), int(v["13"]))


def _book_key(e: dict[str, Any]) -> tuple[Any, ...]:
    v = e["values"]
    return (e["item"][:6], abs(int(v["41"])), int(v["61"]), abs(int(v["51"])), int(v["71"]))


def value_check(
    data_dir: Path, sent: Sequence[SentEntry], journaled: dict[int, int]
) -> tuple[int, int, list[str]]:
    """Entries the venue wrote in journaled frames, looked up in the store by value.

    Returns (entries received, entries missing from the store, failures).
    """
    want: dict[str, collections.Counter[tuple[Any, ...]]] = {
        "trades": collections.Counter(),
        "orderbook": collections.Counter(),
    }
    received = 0
    for s in sent:
        if s.frame_index >= journaled.get(s.conn_id, 0):
            continue
        received += 1
        if s.entry["type"] == "0B":
            want["trades"][_trade_key(s.entry)] += 1
        elif s.entry["type"] == "0D":
            want["orderbook"][_book_key(s.entry)] += 1
    sql = {
        "trades": "SELECT symbol, price, volume, cum_volume FROM trades",
        "orderbook": "SELECT symbol, ask_px_1, ask_qty_1, bid_px_1, bid_qty_1 FROM orderbook",
    }
    failures, missing = [], 0
    for table, q in sql.items():
        have = collections.Counter(tuple(r.values()) for r in queries.sql(data_dir, q).to_pylist())
        lost = want[table] - have
        if lost:
            n = sum(lost.values())
            missing += n
            failures.append(
                f"{n} {table} entries the venue sent on journaled frames are not stored (by value)"
            )
    return received, missing, failures


# --------------------------------------------------------------------------- gaps and rejects


def gaps(data_dir: Path) -> list[dict[str, Any]]:
    return queries.sql(
        data_dir,
        "SELECT kind, detail, symbols, seq, start_ts, end_ts, end_ts >= start_ts AS closed "
        "FROM gaps ORDER BY seq",
    ).to_pylist()


def rejects(data_dir: Path) -> list[dict[str, Any]]:
    return queries.sql(data_dir, "SELECT seq, reason, raw FROM rejects ORDER BY seq").to_pylist()


def market_seqs(data_dir: Path) -> collections.Counter[int]:
    """Stored market rows per journal frame number."""
    out: collections.Counter[int] = collections.Counter()
    for table in MARKET:
        for r in queries.sql(data_dir, f"SELECT seq FROM {table}").to_pylist():
            out[r["seq"] >> SEQ_SHIFT] += 1
    return out


# --------------------------------------------------------------------------- everything


@dataclass
class Verdict:
    """The figures of one comparison and what failed."""

    figures: dict[str, Any]
    failures: list[str]
    transport: Transport
    journal: list[Frame]
    gaps: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    decoded: Decoded


def verify(
    data_dir: Path,
    frames: Sequence[SentFrame],
    sent: Sequence[SentEntry],
    *,
    prefix_ok: Iterable[int] = (),
    at_least: dict[int, int] | None = None,
    only_conns: Iterable[int] | None = None,
    writer: str = WRITER,
) -> Verdict:
    """All three comparisons; ``figures`` holds sent/recorded/missing/duplicated/gaps/rejects."""
    journal = journal_frames(data_dir, writer)
    tr = align(frames, journal, prefix_ok=prefix_ok, at_least=at_least, only_conns=only_conns)
    decoded = decode_journal(journal)
    sc = store_vs_journal(data_dir, decoded)
    conns = set(only_conns) if only_conns is not None else None
    sent_here = [s for s in sent if conns is None or s.conn_id in conns]
    received, value_missing, vfail = (
        value_check(data_dir, sent_here, tr.journaled) if not tr.failures else (0, 0, [])
    )
    g, r = gaps(data_dir), rejects(data_dir)
    figures = {
        "sent": len(sent_here),
        "recorded": sum(sc.stored.values()),
        "missing": sc.missing + value_missing,
        "duplicated": sc.duplicated,
        "gaps": len(g),
        "rejects": len(r),
        "received": received,
        "unreceived": len(sent_here) - received if not tr.failures else None,
        "conns": len(tr.sent),
    }
    failures = [*tr.failures, *sc.failures, *vfail]
    return Verdict(figures, failures, tr, journal, g, r, decoded)
