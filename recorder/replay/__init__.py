"""Stored rows back out in time order: iterators, NDJSON and the recorded feed for the venue.

Must not decode differently from capture: frames go through :mod:`recorder.kiwoom`.

- :func:`iter_rows` / :func:`aiter_rows`: :class:`ReplayRow` values merged across symbols and
  tables, the latter paced by the recorded receive times (:class:`Pacer`);
- :func:`iter_batches`: the same rows as Arrow record batches;
- :func:`select` resolves dates, symbols (``005930`` or ``005930_NX``) and types into a
  :class:`Selection`;
- :func:`write_ndjson` / :func:`iter_frames`: REAL frames that ``recorder ingest`` reads back;
- :class:`RecordedFeed`: a recorded day served by the embedded Kiwoom-compatible venue;
- :mod:`recorder.replay.scan` and :mod:`recorder.replay.encode`: the bulk encoder behind both,
  DuckDB reading and encoding whole selections into the text ``encode_frame`` would write.

:class:`recorder.Store` wraps the iterators with KST timestamps for everyday use.
"""

from recorder.replay.feed import NdjsonResult, RecordedFeed, iter_frames, write_ndjson
from recorder.replay.read import Dateish, Selection, parse_types, select
from recorder.replay.rows import Pacer, ReplayRow, aiter_rows, iter_batches, iter_rows

__all__ = [
    "Dateish",
    "NdjsonResult",
    "Pacer",
    "RecordedFeed",
    "ReplayRow",
    "Selection",
    "aiter_rows",
    "iter_batches",
    "iter_frames",
    "iter_rows",
    "parse_types",
    "select",
    "write_ndjson",
]
