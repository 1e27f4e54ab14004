"""``python -m soak.capture_proc``: the capture of a soak run, with the knobs the CLI does not have.

The soak scenarios need a capture with short reconnect backoffs and a slow or held Parquet
writer. ``recorder capture`` has no options for those (they are not for users), so this
module builds the typed :class:`recorder.capture.runner.CaptureRequest` itself and calls the
real library, :func:`recorder.capture.runner.run_capture`, in a real process: the same code
path as the CLI, with a :class:`~recorder.client.session.SessionTuning` and a part-file
writer injected through their typed parameters.

Options: ``--ws-url``, ``--rest-url``, ``--data-dir``, ``--symbols``, ``--writer-id``,
``--flush-age`` and ``--duration`` as for ``recorder capture``; one option per
:class:`SessionTuning` field (``--backoff-base-s 0.05``, ``--reg-batch 4``, ...);
``--throttle SECONDS`` (each part-file write takes that much longer: a slow consumer) and
``--gate-fds ANNOUNCE,RELEASE`` (each write waits for the harness, see :class:`Gate` and
:class:`soak.harness.WriteGate`). Output and exit codes are those of ``recorder capture``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import os
import sys
import threading
import time
from pathlib import Path

import click
import pyarrow as pa

from recorder.capture.runner import CaptureRequest, run_capture
from recorder.cli.common import handle_errors
from recorder.cli.options import parse_duration
from recorder.client.session import SessionTuning
from recorder.errors import StoreError
from recorder.kiwoom.items import parse_items
from recorder.store.fs import DurableBatch
from recorder.store.sink import PartWriter, write_part

_TYPES = {"int": int, "float": float}
TUNING_FIELDS = tuple(f.name for f in dataclasses.fields(SessionTuning))

#: What the harness writes to let writes through: one held write, or every write from now on.
RELEASE_ONE, RELEASE_ALL = b"1", b"*"


class Gate:
    """Holds part-file writes until the harness lets them through (the child's side).

    Before each write it sends the part file's name and a newline on ``announce_fd``, then
    reads one byte from ``release_fd``: :data:`RELEASE_ONE` lets this write through,
    :data:`RELEASE_ALL` this and every later one. Until then writes go one at a time, and
    the next is announced only once the previous one is on disk, so the harness knows
    exactly which part files exist. While a write is held, the capture's decoder cannot
    flush or checkpoint: Parquet lags the journal for as long as the harness likes, a lag
    that does not depend on timing.
    """

    def __init__(self, announce_fd: int, release_fd: int) -> None:
        self._announce, self._release = announce_fd, release_fd
        self._lock = threading.Lock()
        self._open = False

    def write(self, table: pa.Table, final: Path, batch: DurableBatch, write: PartWriter) -> None:
        """``write(table, final, batch)`` once the harness allows it."""
        if self._open:
            write(table, final, batch)
            return
        with self._lock:
            if not self._open:
                os.write(self._announce, final.name.encode() + b"\n")
                got = os.read(self._release, 1)
                if not got:
                    raise StoreError(f"write gate closed by the harness before {final.name} was released")
                self._open = got == RELEASE_ALL
            write(table, final, batch)


def part_writer(throttle_s: float, gate: Gate | None) -> PartWriter | None:
    """The store's part-file writer behind the gate and ``throttle_s`` seconds slower;
    None (the store's own writer) when neither is asked for."""
    if not throttle_s and gate is None:
        return None

    def slow(table: pa.Table, final: Path, batch: DurableBatch) -> None:
        if throttle_s:
            time.sleep(throttle_s)  # the slowness under test, not a synchronisation
        # Behind the gate each file appears on its own, at once, not when the flush commits:
        # a kill between two writes then leaves what a crash amid a commit's renames leaves.
        write_part(table, final, None if gate is not None else batch)

    if gate is None:
        return slow
    return functools.partial(gate.write, write=slow)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m soak.capture_proc", description=__doc__.split("\n")[0])
    p.add_argument("--ws-url", required=True)
    p.add_argument("--rest-url", required=True)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--symbols", required=True)
    p.add_argument("--writer-id", required=True)
    p.add_argument("--flush-age", default="5m")
    p.add_argument("--duration")
    p.add_argument("--force", action="store_true", help="record even on a day the market is closed")
    p.add_argument("--throttle", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--gate-fds", metavar="ANNOUNCE,RELEASE")
    p.add_argument("--disk-check", choices=["refuse", "warn", "off"], default="refuse")
    for f in dataclasses.fields(SessionTuning):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=_TYPES[str(f.type)], dest=f.name)
    return p


def request(argv: list[str] | None = None) -> CaptureRequest:
    """The capture request the command line describes."""
    args = _parser().parse_args(argv)
    tuned = {name: getattr(args, name) for name in TUNING_FIELDS if getattr(args, name) is not None}
    gate = None
    if args.gate_fds:
        announce, release = (int(fd) for fd in args.gate_fds.split(","))
        gate = Gate(announce, release)
    return CaptureRequest(
        data_dir=args.data_dir,
        symbols=parse_items(args.symbols),
        ws_url=args.ws_url,
        rest_url=args.rest_url,
        writer=args.writer_id,
        flush_age_s=parse_duration(args.flush_age),
        duration_s=parse_duration(args.duration) if args.duration else None,
        tuning=SessionTuning(**tuned),
        part_writer=part_writer(args.throttle, gate),
        force=args.force,
        disk_check=args.disk_check,
    )


@handle_errors
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    result = asyncio.run(run_capture(request(argv)))
    click.echo(result.summary())


if __name__ == "__main__":
    main()
