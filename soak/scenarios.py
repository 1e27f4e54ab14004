"""The soak scenarios: scripted faults against the real ``recorder capture`` CLI (a
subprocess; :mod:`soak.capture_proc` where a scenario needs short backoffs or a slow or
held writer) and the embedded venue (a thread of this process), each ending with the
ground-truth comparison of :mod:`soak.truth`.

Every scenario returns an :class:`Outcome`: one line of figures
(``name sent=… recorded=… missing=… duplicated=… gaps=… rejects=… peak_rss_mb=… [extra]``)
and the list of checks that failed. Figures:

- ``sent``: REAL entries the venue wrote; ``received``: those in frames that reached the
  journal (the rest, ``unreceived``, were in flight when a connection was aborted or a
  process killed, and are covered by gaps); ``recorded``: market rows in Parquet;
- ``missing``: rows the journal decodes to, or entries of journaled frames (by value),
  that the store lacks; ``duplicated``: stored rows beyond what the journal decodes to;
- ``gaps``/``rejects``: rows of those tables; ``peak_rss_mb``: the highest resident set
  size of any capture process of the scenario (psutil samples and the kernel's VmHWM).

Randomness is seeded (``seed`` arguments); waits are on venue conditions, process exits,
PING barriers and the write gate, never on sleeps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import shutil
import signal
import subprocess
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import queries
from recorder.sim.venue import VenueConfig
from recorder.store.journal import EVENT, JournalTail, read_checkpoint, read_records
from recorder.store.layout import journal_root
from soak import truth
from soak.frames import ALL, Injected, Knobs, generate
from soak.harness import (
    CLI_CAPTURE,
    MB,
    RECORDER,
    SOAK_CAPTURE,
    WRITER,
    CaptureProc,
    RssMonitor,
    SoakError,
    VenueThread,
    WriteGate,
    soak_env,
)
from soak.many_keys import many_keys

CORE = ("sent", "recorded", "missing", "duplicated", "gaps", "rejects", "peak_rss_mb")
ENOSPC_TEXT = "No space left on device"


@dataclass
class Outcome:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        if self.skipped:
            return f"{self.name} SKIPPED: {self.skipped}"
        f = self.figures
        parts = [self.name, *(f"{k}={_fmt(f.get(k))}" for k in CORE)]
        parts += [f"{k}={_fmt(v)}" for k, v in f.items() if k not in CORE]
        parts += [f"seconds={self.seconds:.0f}", "PASS" if self.ok else f"FAIL({len(self.failures)})"]
        return " ".join(parts)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    if isinstance(v, dict):
        return ",".join(f"{k}:{_fmt(x)}" for k, x in v.items()) or "-"
    return str(v)


def tuning_opts(**kw: float) -> list[str]:
    """:mod:`soak.capture_proc` options for :class:`~recorder.client.session.SessionTuning` fields."""
    return [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def venue_config(seed: int, **kw: Any) -> VenueConfig:
    base: dict[str, Any] = {
        "n_symbols": 4,
        "tick_interval": 0.02,
        "trade_rate": 10.0,
        "book_rate": 5.0,
        "ping_interval": 1.0,
        "seed": seed,
    }
    base.update(kw)
    return VenueConfig(**base)


class Run:
    """One scenario's venue, store, capture subprocesses and RSS monitor."""

    def __init__(
        self, work: Path, name: str, venue: VenueConfig, data_dir: Path | None = None, feed: Any = None
    ) -> None:
        self.dir = work / name
        self.data = data_dir or self.dir / "store"
        self.logs = self.dir / "logs"
        self.data.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.vt = VenueThread(venue, feed)
        self.monitor = RssMonitor().start()
        self.procs: list[CaptureProc] = []
        self.started = time.monotonic()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def capture(
        self, *extra: str, program: tuple[str, ...] = CLI_CAPTURE, gate: WriteGate | None = None
    ) -> CaptureProc:
        """Start a capture: ``recorder capture``, or ``program`` (e.g. :data:`SOAK_CAPTURE`)."""
        name = f"capture-{len(self.procs) + 1}"
        proc = CaptureProc(self.vt, self.data, self.logs, tuple(extra), name, program, gate)
        proc.start()
        self.monitor.watch(proc.pid)
        self.procs.append(proc)
        return proc

    def login(self, n: int, proc: CaptureProc, timeout: float = 30.0) -> None:
        """Until the venue has seen ``n`` LOGINs; a capture that died meanwhile is reported."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.vt.wait(lambda: self.vt.venue.stats.logins >= n, 1.0, f"LOGIN #{n}")
                return
            except SoakError as exc:
                # A bounded poll: there is no single event for "logged in or the child died".
                if not proc.alive():
                    rc = proc.wait(1)
                    raise SoakError(f"{proc.name} exited ({rc}) before LOGIN #{n}: {proc.tail()}") from exc
                if time.monotonic() > deadline:
                    raise

    def more_entries(self, n: int, timeout: float = 30.0) -> None:
        """Until the venue has written ``n`` more REAL entries."""
        self.vt.wait_entries(self.vt.entries_sent() + n, timeout)

    def peak_mb(self) -> float:
        return self.monitor.peak() / MB

    def verify(self, **kw: Any) -> truth.Verdict:
        frames, sent = self.vt.run(lambda: (list(self.vt.venue.frames), list(self.vt.venue.sent)))
        return truth.verify(self.data, frames, sent, **kw)

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                with contextlib.suppress(Exception):
                    p.kill()
            if p.gate is not None:
                p.gate.close()
        self.monitor.stop()
        self.vt.close()


def _stop(
    run: Run, proc: CaptureProc, sig: int = signal.SIGTERM, timeout: float = 60.0
) -> tuple[int, dict[int, int]]:
    """PING barrier (what the capture has surely journaled), signal, exit code; waits for the
    venue to see the connection go."""
    at_least = run.vt.barrier()
    rc = proc.stop(sig, timeout)
    run.vt.wait_no_connections()
    return rc, at_least


def _common_checks(
    v: truth.Verdict, out: list[str], *, rejects: int | None = 0, continuity: bool = True
) -> collections.Counter[str]:
    """What every scenario requires; returns the gap kinds."""
    out.extend(v.failures)
    f = v.figures
    if f["missing"] or f["duplicated"]:
        out.append(
            f"missing={f['missing']} duplicated={f['duplicated']}: the store is not exactly the journal"
        )
    if not f["recorded"]:
        out.append("nothing was recorded")
    kinds = collections.Counter(g["kind"] for g in v.gaps)
    if continuity and kinds["continuity"]:
        out.append(f"{kinds['continuity']} continuity gaps: trades were lost inside a connection")
    if kinds["stale"]:
        out.append(f"{kinds['stale']} stale gaps")
    open_gaps = [g for g in v.gaps if g["kind"] in ("disconnect", "kicked", "restart") and not g["closed"]]
    if open_gaps:
        out.append(
            f"{len(open_gaps)} disconnect/kicked/restart gaps are not closed (end_ts < start_ts or null)"
        )
    if rejects is not None and len(v.rejects) != rejects:
        out.append(f"{len(v.rejects)} rejects where {rejects} were expected: {v.rejects[:2]}")
    return kinds


def _outcome(
    name: str, run: Run | None, v: truth.Verdict | None, failures: list[str], **extra: Any
) -> Outcome:
    figures: dict[str, Any] = dict(v.figures) if v is not None else {}
    figures["peak_rss_mb"] = run.peak_mb() if run is not None else None
    figures.update(extra)
    seconds = time.monotonic() - run.started if run is not None else 0.0
    return Outcome(name, figures, failures, seconds)


# =========================================================================== 1. drops

FAULTS = ("close", "abort", "heartbeat", "kick")


def drops(
    work: Path,
    *,
    seconds: float = 180.0,
    seed: int = 1,
    min_faults: int = 4,
    pace: tuple[int, int] = (30, 300),
) -> Outcome:
    """A fault every few seconds for ``seconds``: clean closes (1000), TCP aborts, heartbeat-
    miss closes (SYSTEM R10002 + close) and kicks (SYSTEM R10001 + close 1000 "Bye").
    Between faults the venue sends ``pace`` REAL entries (at ~120/s: 0.25-2.5 s)."""
    rng = random.Random(seed)
    failures: list[str] = []
    with Run(work, "drops", venue_config(seed)) as run:
        proc = run.capture(
            "--flush-age",
            "1s",
            *tuning_opts(backoff_base_s=0.05, backoff_cap_s=0.5, kicked_backoff_s=0.3),
            program=SOAK_CAPTURE,
        )
        venue = run.vt.venue
        counts: collections.Counter[str] = collections.Counter()
        aborted: set[int] = set()
        logins = 1
        run.login(logins, proc)
        t0 = time.monotonic()
        faults: list[str] = []
        while time.monotonic() - t0 < seconds or sum(counts.values()) < min_faults:
            run.more_entries(rng.randint(*pace))
            if not faults:
                faults = list(FAULTS)
                rng.shuffle(faults)
            fault = faults.pop()
            conns = run.vt.connection_ids()
            actions: dict[str, Callable[[], Any]] = {
                "close": lambda: venue.close_all(),
                "abort": lambda: venue.drop_all(),
                "heartbeat": lambda: venue.heartbeat_close_all(),
                "kick": lambda: venue.kick_all(),
            }
            run.vt.call(actions[fault]())
            if fault == "abort":
                aborted.update(conns)
            counts[fault] += 1
            logins += 1
            run.login(logins, proc)
        run.more_entries(50)
        rc, at_least = _stop(run, proc)
        if rc != 0:
            failures.append(f"capture exited {rc} after SIGTERM: {proc.tail()}")
        v = run.verify(prefix_ok=aborted | set(at_least), at_least=at_least)
        kinds = _common_checks(v, failures)
        lost_conn = counts["close"] + counts["abort"] + counts["heartbeat"]
        if kinds["disconnect"] != lost_conn or kinds["kicked"] != counts["kick"]:
            failures.append(
                f"gaps: {kinds['disconnect']} disconnect and {kinds['kicked']} kicked for "
                f"{lost_conn} closes/aborts/heartbeat closes and {counts['kick']} kicks"
            )
        if kinds["restart"]:
            failures.append(f"{kinds['restart']} restart gaps in a run that never restarted")
        systems = collections.Counter(
            str(e.get("detail", ""))[:13]
            for _, e in truth.journal_events(run.data)
            if e.get("kind") in ("system", "kicked") and e.get("end_ns") is None
        )
        if systems["SYSTEM R10002"] != counts["heartbeat"] or systems["SYSTEM R10001"] != counts["kick"]:
            failures.append(
                f"journaled SYSTEM notices {dict(systems)} do not match the faults {dict(counts)}"
            )
        return _outcome(
            "drops",
            run,
            v,
            failures,
            faults=dict(counts),
            unreceived=v.figures["unreceived"],
            conns=v.figures["conns"],
        )


# =========================================================================== 2. refused REGs

RATE, LIMIT = (105110, "허용 요청 건수 초과"), (105115, "등록 가능한 종목 수를 초과하였습니다")


def refused_regs(
    work: Path,
    *,
    seconds: float = 60.0,
    seed: int = 2,
    min_cycles: int = 4,
    pace: tuple[int, int] = (30, 200),
) -> Outcome:
    """Across reconnects, REGs refused at random: 105110 (rate; must be resent and then
    accepted) or 105115 (limit; the batch is given up, with a ``reg_rejected`` gap naming its
    items, while the other batches record)."""
    rng = random.Random(seed)
    failures: list[str] = []
    batch = 4
    with Run(work, "refused_regs", venue_config(seed, n_symbols=6)) as run:
        proc = run.capture(
            "--flush-age",
            "1s",
            *tuning_opts(reg_batch=batch, reg_retry_s=0.2, backoff_base_s=0.05, backoff_cap_s=0.3),
            program=SOAK_CAPTURE,
        )
        venue = run.vt.venue
        items = list(venue.feed.items)  # type: ignore[attr-defined]
        batches = [items[i : i + batch] for i in range(0, len(items), batch)]
        every = frozenset((i, t) for i in items for t in ("0B", "0D"))
        aborted: set[int] = set()
        counts: collections.Counter[str] = collections.Counter()
        refused_batches: list[list[str]] = []
        injected = collections.Counter[int]()
        logins = 1
        run.login(logins, proc)
        _wait_subscribed(run, every, refused=0)
        t0 = time.monotonic()
        plans: list[str] = []
        while time.monotonic() - t0 < seconds or sum(counts.values()) < min_cycles:
            run.more_entries(rng.randint(*pace))
            if not plans:
                plans = ["rate", "limit", "none", "rate", "limit"]
                rng.shuffle(plans)
            plan = plans.pop()
            b = rng.randrange(len(batches))
            times = rng.randint(1, 3) if plan == "rate" else 1
            base_regs, base_refused = run.vt.run(lambda: (venue.stats.regs, venue.stats.refused_regs))
            armed = None
            if plan != "none":
                code, msg = RATE if plan == "rate" else LIMIT
                # Armed on the venue's loop once batch b-1 of the next connection is accepted,
                # so it hits batch b exactly (the venue takes refusals in REG order).
                armed = asyncio.run_coroutine_threadsafe(
                    _arm(venue, base_regs + b, code, msg, times), run.vt.loop
                )
                if b == 0:
                    armed.result(10)
            fault = rng.choice(["close", "abort"])
            conns = run.vt.connection_ids()
            run.vt.call(venue.close_all() if fault == "close" else venue.drop_all())
            if fault == "abort":
                aborted.update(conns)
            logins += 1
            run.login(logins, proc)
            want = every - {(i, t) for i in batches[b] for t in ("0B", "0D")} if plan == "limit" else every
            _wait_subscribed(run, want, refused=base_refused + (times if plan != "none" else 0))
            if armed is not None:
                armed.result(10)
            counts[plan] += 1
            if plan != "none":
                injected[RATE[0] if plan == "rate" else LIMIT[0]] += times
            if plan == "limit":
                refused_batches.append(batches[b])
        run.more_entries(50)
        rc, at_least = _stop(run, proc)
        if rc != 0:
            failures.append(f"capture exited {rc} after SIGTERM: {proc.tail()}")
        v = run.verify(prefix_ok=aborted | set(at_least), at_least=at_least)
        kinds = _common_checks(v, failures)
        rejected = [g for g in v.gaps if g["kind"] == "reg_rejected"]
        if [list(g["symbols"]) for g in rejected] != refused_batches:
            failures.append(
                f"reg_rejected gaps name {[g['symbols'] for g in rejected]}; "
                f"the refused batches were {refused_batches}"
            )
        if any(str(RATE[0]) in g["detail"] for g in rejected) or not all(
            str(LIMIT[0]) in g["detail"] for g in rejected
        ):
            failures.append(
                "a reg_rejected gap is for 105110 (which must be retried) or does not name 105115"
            )
        total_refused = run.vt.run(lambda: venue.stats.refused_regs)
        if total_refused != sum(injected.values()):
            failures.append(
                f"the venue refused {total_refused} REGs; {sum(injected.values())} refusals were injected"
            )
        if kinds["disconnect"] != sum(counts.values()):
            failures.append(f"{kinds['disconnect']} disconnect gaps for {sum(counts.values())} reconnects")
        return _outcome(
            "refused_regs",
            run,
            v,
            failures,
            cycles=dict(counts),
            refused_105110=injected[RATE[0]],
            refused_105115=injected[LIMIT[0]],
            reg_rejected_gaps=len(rejected),
        )


async def _arm(venue: Any, regs: int, code: int, msg: str, times: int) -> None:
    await venue.wait_for(lambda: venue.stats.regs >= regs, 30)
    venue.refuse_next_reg(code, msg, times)


def _wait_subscribed(run: Run, want: frozenset[tuple[str, str]], refused: int) -> None:
    """Until the newest connection is subscribed to exactly ``want`` and the venue has
    refused ``refused`` REGs in all (so every batch of this connection has been answered)."""
    venue = run.vt.venue

    def done() -> bool:
        if not venue.connections or venue.stats.refused_regs < refused:
            return False
        return venue.connections[max(venue.connections)].subscriptions == want

    run.vt.wait(done, 30, "the REGs of the new connection")


# =========================================================================== 3. SIGKILL


def sigkill(work: Path, *, kills: int = 12, seed: int = 3) -> Outcome:
    """SIGKILL at random moments after LOGIN (from at once to a few seconds in, so some land
    mid-flush), each followed by a restart on the same store."""
    rng = random.Random(seed)
    failures: list[str] = []
    with Run(work, "sigkill", venue_config(seed)) as run:
        killed: set[int] = set()
        for k in range(kills):
            proc = run.capture("--flush-age", "0.3s")
            run.login(k + 1, proc)
            run.more_entries(rng.choice([0, rng.randint(1, 60), rng.randint(60, 600)]))
            killed.update(run.vt.connection_ids())
            rc = proc.kill()
            if rc != -signal.SIGKILL:
                failures.append(f"kill #{k + 1}: exit {rc}, not -SIGKILL")
            run.vt.wait_no_connections()
        final = run.capture("--flush-age", "0.3s")
        run.login(kills + 1, final)
        run.more_entries(100)
        rc, at_least = _stop(run, final)
        if rc != 0:
            failures.append(f"the final capture exited {rc} after SIGTERM: {final.tail()}")
        v = run.verify(prefix_ok=killed | set(at_least), at_least=at_least)
        kinds = _common_checks(v, failures)
        if kinds["restart"] != kills:
            failures.append(f"{kinds['restart']} restart gaps for {kills} kills")
        tmp = sum(1 for p in run.data.rglob(".*.tmp"))
        return _outcome(
            "sigkill",
            run,
            v,
            failures,
            kills=kills,
            restart_gaps=kinds["restart"],
            leftover_tmp=tmp,
            unreceived=v.figures["unreceived"],
        )


# =========================================================================== 4. SIGTERM / SIGINT


def signals(work: Path, *, rounds: int = 6, seed: int = 4) -> Outcome:
    """SIGTERM and SIGINT, alternately: each run exits 0 with everything flushed (the last
    journal record is the clean-stop event, the checkpoint is the last record, and the
    store equals the journal), and each restart leaves a ``restart`` gap over the hole."""
    rng = random.Random(seed)
    failures: list[str] = []
    sigs = [signal.SIGTERM if i % 2 == 0 else signal.SIGINT for i in range(max(rounds, 2))]
    exit_s: list[float] = []
    with Run(work, "signals", venue_config(seed)) as run:
        at_least_all: dict[int, int] = {}
        for i, sig in enumerate(sigs):
            proc = run.capture("--flush-age", rng.choice(["0.3s", "5m"]))
            run.login(i + 1, proc)
            run.more_entries(rng.randint(50, 400))
            at_least = run.vt.barrier()
            t = time.monotonic()
            rc = proc.stop(sig)
            exit_s.append(time.monotonic() - t)
            run.vt.wait_no_connections()
            at_least_all.update(at_least)
            name = signal.Signals(sig).name
            if rc != 0:
                failures.append(f"round {i + 1}: {name} → exit {rc}: {proc.tail()}")
            if "captured" not in proc.stdout():
                failures.append(f"round {i + 1}: {name}: no summary line on stdout")
            failures.extend(f"round {i + 1} ({name}): {f}" for f in _flushed(run.data))
        v = run.verify(prefix_ok=set(at_least_all), at_least=at_least_all)
        kinds = _common_checks(v, failures)
        stops = [g for g in v.gaps if g["kind"] == "restart" and "stopped" in g["detail"]]
        if kinds["restart"] != len(sigs) - 1 or len(stops) != kinds["restart"]:
            failures.append(
                f"{kinds['restart']} restart gaps ({len(stops)} after a clean stop) for "
                f"{len(sigs) - 1} restarts after a clean stop"
            )
        if kinds["disconnect"]:
            failures.append(f"clean stops left {kinds['disconnect']} disconnect gaps")
        return _outcome(
            "signals",
            run,
            v,
            failures,
            rounds=len(sigs),
            sigterm=sigs.count(signal.SIGTERM),
            sigint=sigs.count(signal.SIGINT),
            max_exit_s=max(exit_s),
        )


def _flushed(data: Path) -> list[str]:
    """After a clean exit: the journal ends with the clean-stop event, the checkpoint covers
    it, and the store holds exactly what the journal decodes to."""
    root = journal_root(data, WRITER)
    last = None
    for rec in read_records(root):
        last = rec
    out = []
    if last is None or last.kind != EVENT or last.event().get("kind") != "stopped":
        out.append("the journal does not end with the clean-stop event")
    elif read_checkpoint(root) != last.fno:
        out.append(f"checkpoint {read_checkpoint(root)} is not the last journal record {last.fno}")
    sc = truth.store_vs_journal(data, truth.decode_journal(truth.journal_frames(data)))
    out.extend(sc.failures)
    return out


# =========================================================================== 5. malformed input


def malformed(
    work: Path,
    *,
    n_frames: int = 2000,
    seed: int = 5,
    knobs: Knobs = ALL,
    chunk: int = 50,
    huge: int | None = None,
    frames: list[Injected] | None = None,
) -> Outcome:
    """A flood of malformed frames from the hypothesis grammar of :mod:`soak.frames`
    (or the given ``frames``), interleaved with the live feed: the capture must survive all
    of it, and each frame must leave exactly the rejects (and rows) the grammar says."""
    failures: list[str] = []
    if frames is None:
        frames = generate(n_frames, seed, knobs=knobs, huge=max(2, n_frames // 500) if huge is None else huge)
    with Run(work, "malformed", venue_config(seed, n_symbols=3)) as run:
        proc = run.capture("--flush-age", "0.5s")
        venue = run.vt.venue
        run.login(1, proc)
        run.more_entries(50)
        died_at = None
        for i in range(0, len(frames), chunk):
            part = [f.data for f in frames[i : i + chunk]]

            async def send(part: list[str | bytes] = part) -> None:
                for data in part:
                    await venue.send_raw_all(data)

            run.vt.call(send())
            run.vt.barrier(60)  # the capture has read (and journaled) every frame sent so far
            if not proc.alive():
                died_at = i
                break
        at_least: dict[int, int] = {}
        rc: int | None
        if proc.alive():
            rc, at_least = _stop(run, proc)
        else:
            rc = proc.wait(10)
            run.vt.wait_no_connections()
        survived = rc == 0
        restart = None
        if not survived:
            where = f" within injected frames {died_at}..{died_at + chunk}" if died_at is not None else ""
            failures.append(f"the capture died on input (exit {rc}){where}: {_last_error(proc.stderr())}")
            restart = _restart_after_crash(run)
            if restart != "recovered":
                failures.append(f"restart after the crash: {restart}")
        v = run.verify(
            prefix_ok=set(run.vt.run(lambda: {f.conn_id for f in venue.frames})), at_least=at_least
        )
        _common_checks(v, failures, rejects=None, continuity=False)  # valid injected trades break it
        expect = _expected_by_frame(frames)
        found, mismatched, examples = _match_injected(run.data, v, expect)
        want_journaled = len(frames) if survived else None
        if want_journaled is not None and found != want_journaled:
            failures.append(f"{found} of {want_journaled} injected frames are in the journal")
        if mismatched:
            failures.append(
                f"{mismatched} injected frames do not have the rejects/rows the grammar says, e.g. {examples}"
            )
        expected_rejects = sum(f.rejects for f in frames)
        labels = collections.Counter(f.label.split(":")[0] for f in frames)
        return _outcome(
            "malformed",
            run,
            v,
            failures,
            injected=len(frames),
            journaled_injected=found,
            expected_rejects=expected_rejects,
            mismatched=mismatched,
            capture_survived="yes" if survived else "NO",
            restart_after_crash=restart,
            kinds=dict(labels.most_common()),
        )


def _expected_by_frame(frames: list[Injected]) -> dict[bytes, tuple[int, int]]:
    return {truth._b(f.data): (f.rows, f.rejects) for f in frames}


def _match_injected(
    data: Path, v: truth.Verdict, expect: dict[bytes, tuple[int, int]]
) -> tuple[int, int, list[str]]:
    """Journal frames that are injected ones (same bytes), and how many of them have other
    rejects/market-row counts in the store than expected."""
    rejects_by_fno = collections.Counter(r["seq"] >> 16 for r in v.rejects)
    rows_by_fno = truth.market_seqs(data)
    found = mismatched = 0
    examples: list[str] = []
    for fno, _recv, raw in v.journal:
        want = expect.get(truth._b(raw))
        if want is None:
            continue
        found += 1
        got = (rows_by_fno[fno], rejects_by_fno[fno])
        if got != want:
            mismatched += 1
            if len(examples) < 3:
                examples.append(f"fno {fno}: rows,rejects {got} != {want}: {truth._b(raw)[:160]!r}")
    return found, mismatched, examples


def _last_error(stderr: str) -> str:
    """The line that says why a process died: the last line of a traceback or the error line."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:") or "Error" in ln.split(":")[0]:
            return ln[:300]
    return lines[-1][:300] if lines else "(no output)"


def _restart_after_crash(run: Run) -> str:
    """Start the capture again on the same store: does recovery get past the bad frame?"""
    proc = run.capture("--flush-age", "0.5s")
    logins = run.vt.run(lambda: run.vt.venue.stats.logins)
    try:
        run.login(logins + 1, proc, timeout=30)
    except SoakError:
        return f"crashed again in recovery: {_last_error(proc.stderr())}"
    rc, _ = _stop(run, proc)
    return "recovered" if rc == 0 else f"exit {rc}"


# =========================================================================== 6. slow consumer


def slow_consumer(
    work: Path,
    *,
    seconds: float = 40.0,
    throttle: float = 0.5,
    n_symbols: int = 10,
    seed: int = 6,
    bound_mb: float = 400.0,
    held_entries: int = 100,
) -> Outcome:
    """A slow consumer: every part-file write takes ``throttle`` s longer
    (:mod:`soak.capture_proc` ``--throttle``), and the first one is held behind the write
    gate while the venue sends ``held_entries`` more entries. Frames keep going to the journal
    while Parquet lags (proven by the gate and a PING barrier, not by timing: the checkpoint
    cannot move while the write is held); memory stays bounded independently of run length
    (a run twice as long does not have a higher peak); after SIGTERM the store equals the
    journal."""
    failures: list[str] = []
    legs: dict[int, dict[str, Any]] = {}
    verdicts: list[truth.Verdict] = []
    started = time.monotonic()
    for mult in (1, 2):
        cfg = venue_config(seed, n_symbols=n_symbols, trade_rate=10.0, book_rate=10.0)
        with Run(work, f"slow_consumer_{mult}x", cfg) as run:
            rate = len(run.vt.venue.feed.items) * (cfg.trade_rate + cfg.book_rate)  # type: ignore[attr-defined]
            gate = WriteGate()
            proc = run.capture(
                "--flush-age", "0.5s", "--throttle", str(throttle), program=SOAK_CAPTURE, gate=gate
            )
            run.login(1, proc)
            t0 = time.monotonic()
            lag = _held_lag(run, gate, held_entries)
            if lag["checkpoint_moved"] or lag["records"] < 1:
                failures.append(
                    f"{mult}x: no sign of Parquet lagging the journal while a write was held "
                    f"(the journal grew by {lag['records']} records; the checkpoint "
                    f"{'moved' if lag['checkpoint_moved'] else 'stayed'})"
                )
            gate.open()
            run.more_entries(int(rate * seconds * mult), timeout=seconds * mult * 3 + 30)
            ran = time.monotonic() - t0
            at_least = run.vt.barrier()
            t = time.monotonic()
            rc = proc.stop(signal.SIGTERM, timeout=300)
            exit_s = time.monotonic() - t
            run.vt.wait_no_connections()
            if rc != 0:
                failures.append(f"{mult}x: capture exited {rc} after SIGTERM: {proc.tail()}")
            v = run.verify(prefix_ok=set(at_least), at_least=at_least)
            _common_checks(v, failures)
            if v.figures["conns"] != 1:
                failures.append(
                    f"{mult}x: {v.figures['conns']} connections: the venue dropped the slow client"
                )
            verdicts.append(v)
            legs[mult] = {
                "seconds": ran,
                "peak": run.peak_mb(),
                "lag": lag["records"],
                "lag_s": lag["seconds"],
                "exit_s": exit_s,
                "sent": v.figures["sent"],
                "recorded": v.figures["recorded"],
            }
    p1, p2 = legs[1]["peak"], legs[2]["peak"]
    if p2 > bound_mb or p1 > bound_mb:
        failures.append(f"peak RSS {max(p1, p2):.0f} MB exceeds the bound of {bound_mb:.0f} MB")
    if p2 > p1 * 1.25 + 25:
        failures.append(f"peak RSS grows with run length: {p1:.0f} MB for 1x, {p2:.0f} MB for 2x")
    figures = {
        "sent": sum(leg["sent"] for leg in legs.values()),
        "recorded": sum(leg["recorded"] for leg in legs.values()),
        "missing": sum(v.figures["missing"] for v in verdicts),
        "duplicated": sum(v.figures["duplicated"] for v in verdicts),
        "gaps": sum(v.figures["gaps"] for v in verdicts),
        "rejects": sum(v.figures["rejects"] for v in verdicts),
        "peak_rss_mb": max(p1, p2),
        "bound_mb": bound_mb,
        "peak_1x_mb": p1,
        "peak_2x_mb": p2,
        "run_s": f"{legs[1]['seconds']:.0f}/{legs[2]['seconds']:.0f}",
        "throttle_s_per_file": throttle,
        "held_lag_records": min(legs[1]["lag"], legs[2]["lag"]),
        "held_lag_s": max(legs[1]["lag_s"], legs[2]["lag_s"]),
        "shutdown_s": max(legs[1]["exit_s"], legs[2]["exit_s"]),
    }
    return Outcome("slow_consumer", figures, failures, time.monotonic() - started)


def _held_lag(run: Run, gate: WriteGate, entries: int) -> dict[str, Any]:
    """With the capture's first part-file write held: let the venue send ``entries`` more
    entries and wait (PING barrier) until the capture has journaled them. Returns how many
    records the journal grew by meanwhile, how far (in receive time) it is then ahead of
    the checkpoint, and whether the checkpoint moved (it must not: Parquet is stalled)."""
    root = journal_root(run.data, WRITER)
    gate.held()
    checkpoint = read_checkpoint(root)
    tail = JournalTail(root, 0)
    try:
        recv = [r.recv_ts_ns for r in _read_all(tail)]
        held_at = len(recv)
        run.more_entries(entries)
        run.vt.barrier()
        recv += [r.recv_ts_ns for r in _read_all(tail)]
    finally:
        tail.close()
    behind = recv[-1] - recv[checkpoint + 1] if checkpoint + 1 < len(recv) else 0
    return {
        "records": len(recv) - held_at,
        "seconds": behind / 1e9,
        "checkpoint_moved": read_checkpoint(root) != checkpoint,
    }


def _read_all(tail: JournalTail) -> list[Any]:
    out: list[Any] = []
    while batch := tail.read_available(100_000):
        out += batch
    return out


# =========================================================================== 7. disk full


def _mount_tmpfs(path: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of ``size_mb`` on ``path``; None, or why it cannot be done."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    return None if r.returncode == 0 else (r.stderr.strip() or f"mount exited {r.returncode}")


def _remount(path: Path, size_mb: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_mb}m", str(path)], check=True, capture_output=True)


def _umount(path: Path) -> None:
    r = subprocess.run(["umount", str(path)], capture_output=True)
    if r.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def can_mount(work: Path) -> str | None:
    """None when a small tmpfs can be mounted here, else the reason."""
    probe = work / ".mount-probe"
    why = _mount_tmpfs(probe, 1)
    if why is None:
        _umount(probe)
    with contextlib.suppress(OSError):
        probe.rmdir()
    return why


PHASES = ("parquet_full", "journal_full", "both_full")


def disk_full(
    work: Path,
    *,
    size_mb: int = 4,
    seed: int = 7,
    phases: Iterable[str] = PHASES,
    hang_timeout: float = 30.0,
) -> Outcome:
    """The disk fills: a ``size_mb`` tmpfs is mounted as the store. The capture must stop
    with a non-zero exit and a last line naming the disk problem, the store must stay
    queryable, and once space is freed (remounted larger) a restart or ``recorder
    rebuild`` must recover everything that reached the journal.

    Phases (each on a fresh store):

    - ``parquet_full``: ``_journal`` is a symlink to a directory on the big disk, so only
      Parquet part files fill the tmpfs (the Sink's StoreError path); recovery: restart.
    - ``journal_full``: one disk, flush age 10 min: the journal append meets ENOSPC first
      (the JournalError path); recovery: ``recorder rebuild``.
    - ``both_full``: one disk, flush age 0.3 s: whichever write comes first; recovery: restart.
    """
    started = time.monotonic()
    why = can_mount(work)
    if why is not None:
        return Outcome("disk_full", skipped=f"cannot mount a tmpfs ({why}); needs root", seconds=0.0)
    failures: list[str] = []
    summary: dict[str, Any] = {}
    verdicts: list[truth.Verdict] = []
    peaks: list[float] = []
    for phase in phases:
        base = work / f"disk_full_{phase}"
        mnt = base / "store"
        why = _mount_tmpfs(mnt, size_mb)
        if why is not None:
            failures.append(f"{phase}: mount failed: {why}")
            continue
        try:
            if phase == "parquet_full":
                elsewhere = base / "journal-on-the-big-disk"
                elsewhere.mkdir(parents=True, exist_ok=True)
                (mnt / "_journal").symlink_to(elsewhere, target_is_directory=True)
            cfg = venue_config(seed, n_symbols=5, trade_rate=40.0, book_rate=40.0)
            with Run(work, f"disk_full_{phase}", cfg, data_dir=mnt) as run:
                found: list[str] = []
                v, summary[phase] = _disk_full_phase(run, phase, hang_timeout, found)
                failures.extend(f"{phase}: {x}" for x in found)
                peaks.append(run.peak_mb())
            verdicts.append(v)
        finally:
            _umount(mnt)
    figures: dict[str, Any] = {k: sum(v.figures[k] for v in verdicts) for k in CORE[:-1]} if verdicts else {}
    figures["peak_rss_mb"] = max(peaks, default=None)
    figures["tmpfs_mb"] = size_mb
    figures.update(summary)
    return Outcome("disk_full", figures, failures, time.monotonic() - started)


def _disk_full_phase(
    run: Run, phase: str, hang_timeout: float, failures: list[str]
) -> tuple[truth.Verdict, str]:
    """One phase; returns the verdict and a compact summary such as
    ``exit=1@2.5s,msg=ENOSPC,queryable,restart=0,restart_gaps=1``."""
    notes: list[str] = []
    # --disk-check off: the point is a disk that fills while recording, not one refused at the start
    proc = run.capture("--flush-age", "10m" if phase == "journal_full" else "0.3s", "--disk-check", "off")
    run.login(1, proc)
    t = time.monotonic()
    rc = proc.wait(hang_timeout)  # a bounded wait on exit: the disk fills within seconds here
    if rc is None:
        noticed = ENOSPC_TEXT in proc.stderr()
        failures.append(
            f"the capture did not exit within {hang_timeout:g} s of the disk filling"
            + (" (it logged the ENOSPC error, then hung in shutdown)" if noticed else "")
            + "; killed it"
        )
        proc.kill()
        notes.append("exit=HUNG")
    else:
        notes.append(f"exit={rc}@{time.monotonic() - t:.1f}s")
        if rc == 0:
            failures.append("the capture exited 0 on a full disk")
        last = [ln for ln in proc.stderr().splitlines() if ln.startswith("error:")]
        if last and ENOSPC_TEXT in last[-1]:
            what = "journal" if "journal" in last[-1] else "parquet" if ".parquet" in last[-1] else "?"
            notes.append(f"msg={what}:ENOSPC")
        else:
            failures.append(f"no final error line naming the disk problem: {proc.tail(300)}")
            notes.append("msg=NONE")
    run.vt.wait_no_connections()
    try:  # the store stays readable while the disk is full
        n = {
            table: queries.sql(run.data, f"SELECT count(*) AS n FROM {table}").to_pylist()[0]["n"]
            for table in ("trades", "orderbook", "gaps", "rejects")
        }
        notes.append(f"queryable({n['trades']}+{n['orderbook']}rows)")
    except Exception as exc:
        failures.append(f"the store cannot be queried while the disk is full: {exc}")
        notes.append("queryable=NO")
    _remount(run.data, 256)  # space freed
    at_least: dict[int, int] = {}
    if phase == "journal_full":
        r = subprocess.run(
            [*RECORDER, "rebuild", "--data-dir", str(run.data)],
            env=soak_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        notes.append(f"rebuild={r.returncode}")
        if r.returncode != 0:
            failures.append(f"recorder rebuild exited {r.returncode}: {r.stderr[-300:]}")
        want_restarts = 0
    else:
        again = run.capture("--flush-age", "0.3s", "--disk-check", "off")
        run.login(2, again)
        run.more_entries(100)
        rc2, at_least = _stop(run, again)
        notes.append(f"restart={rc2}")
        if rc2 != 0:
            failures.append(f"the restart exited {rc2}: {again.tail()}")
        want_restarts = 1  # the failed run could not journal its clean stop
    conns = set(run.vt.run(lambda: {f.conn_id for f in run.vt.venue.frames}))
    v = run.verify(prefix_ok=conns, at_least=at_least)
    kinds = _common_checks(v, failures)
    if kinds["restart"] != want_restarts:
        failures.append(f"{kinds['restart']} restart gaps, expected {want_restarts}")
    notes.append(f"restart_gaps={kinds['restart']}")
    return v, ",".join(notes)


# =========================================================================== registry

SCENARIOS: dict[str, Callable[..., Outcome]] = {
    "drops": drops,
    "refused_regs": refused_regs,
    "sigkill": sigkill,
    "signals": signals,
    "malformed": malformed,
    "slow_consumer": slow_consumer,
    "disk_full": disk_full,
    "many_keys": many_keys,
}


def plan(minutes: float) -> dict[str, dict[str, Any]]:
    """Arguments of each scenario for a run of about ``minutes`` (``drops`` lasts that long;
    the others scale with it)."""
    return {
        "drops": {"seconds": 60.0 * minutes},
        "refused_regs": {"seconds": 20.0 * minutes},
        "sigkill": {"kills": max(10, int(4 * minutes))},
        "signals": {"rounds": max(4, int(2 * minutes))},
        "malformed": {"n_frames": max(500, int(700 * minutes))},
        "slow_consumer": {"seconds": max(10.0, 12.0 * minutes)},
        "disk_full": {},
        "many_keys": {"seconds": 40.0 * minutes},
    }


def run_scenario(name: str, work: Path, **kwargs: Any) -> Outcome:
    """Run one scenario; an exception becomes a failed outcome, never a crash of the run."""
    work.mkdir(parents=True, exist_ok=True)
    t = time.monotonic()
    try:
        out = SCENARIOS[name](work, **kwargs)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(exc)).strip()
        out = Outcome(name, {}, [f"scenario aborted: {detail}"], time.monotonic() - t)
        out.figures["trace"] = traceback.format_exc(limit=4).strip().splitlines()[-3:]
    out.seconds = time.monotonic() - t
    return out


def clean(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
