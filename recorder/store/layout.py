"""The store's layout: every path, glob, partition and part-file name rule, in one place.

::

    DATA_DIR/
      trades/date=YYYY-MM-DD/symbol=XXXXXX/part-<writer>-<first fno>-<last fno>.parquet
      orderbook/date=YYYY-MM-DD/symbol=XXXXXX/part-….parquet
      gaps/date=YYYY-MM-DD/part-….parquet
      rejects/date=YYYY-MM-DD/part-….parquet
      backfill/date=YYYY-MM-DD/part-….parquet   what each backfill made of each trade hole
      …/.<name>.tmp        a file being written (temp name, renamed into place when complete)
      _journal/<writer>/   one writer's raw frames and its LOCK (:mod:`recorder.store.journal`)
      _compaction/         compaction intents and the LOCK of :mod:`recorder.store.compact`
      _backfill/LOCK       held while a backfill runs (:mod:`recorder.store.backfill`)

``date`` is the KST trading date and ``symbol`` the 6-character code, a string (``005930`` is
not a number). A part file's name says who wrote it and which journal frames its rows come
from: the numbers (fno) of the first and last, zero-padded to 12 digits. Rows inside a file
are sorted by (:data:`SORT_TIME`, ``seq``).

Owns names only: nothing here opens, lists or writes a file, and it imports nothing heavy (no
pyarrow), so the CLI, replay and queries use it at no cost.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from recorder.errors import ConfigError
from recorder.kiwoom.fields import MARKET_TABLES, TABLES

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

JOURNAL_DIR = "_journal"
INTENT_DIR = "_compaction"
INTENT_GLOB = "intent-*.json"
#: The flock'ed file of a journal writer directory and of the compaction directory.
LOCK = "LOCK"

#: ``part-<writer>-<first fno>-<last fno>.parquet``, as the sink names part files.
PART_RE = re.compile(r"part-(?P<writer>.+)-(?P<first>\d{12})-(?P<last>\d{12})\.parquet")
#: A writer id: what part-file names and journal directories allow.
WRITER_RE = re.compile(r"[A-Za-z0-9_.]+(?:-[A-Za-z0-9_.]+)*")
#: The temporary name of a file being written: ``.<final name>.tmp`` (see :func:`temp_path`).
TMP_RE = re.compile(r"\..+\.tmp")
#: The time column each table's files are sorted by (then ``seq``).
SORT_TIME = {
    "trades": "ts",
    "orderbook": "ts",
    "gaps": "start_ts",
    "rejects": "recv_ts",
    "backfill": "start_ts",
}

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class PartPath:
    """What a part file's path says about it.

    ``writer`` is None (and the frame range -1, -1) for a Parquet file in a partition folder
    that the sink did not name: queries read it, compaction leaves it alone.
    """

    table: str
    date: str
    symbol: str | None
    writer: str | None
    first_fno: int
    last_fno: int

    @property
    def where(self) -> str:
        """The partition, for messages (see :func:`partition_label`)."""
        return partition_label(self.table, self.date, self.symbol)


def partition_label(table: str, date: str, symbol: str | None = None) -> str:
    """A partition named for messages: ``trades date=2026-07-20 symbol=005930``."""
    return f"{table} date={date}" + (f" symbol={symbol}" if symbol else "")


def partition_keys(table: str) -> tuple[str, ...]:
    """The Hive partition columns of ``table``: ``date``, then ``symbol`` for market tables.

    Raises:
        ValueError: ``table`` is not a table of the store.
    """
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    return ("date", "symbol") if table in MARKET_TABLES else ("date",)


def hive_types(table: str, date_type: str = "DATE") -> str:
    """DuckDB's ``hive_types`` for ``table``: ``date`` as ``date_type``, ``symbol`` as VARCHAR."""
    types = {"date": date_type, "symbol": "VARCHAR"}
    return "{" + ", ".join(f"'{k}': {types[k]}" for k in partition_keys(table)) + "}"


def partition_dir(root: Path, table: str, date: str, symbol: str | None = None) -> Path:
    """``root/table/date=…[/symbol=…]``; ``symbol`` is given for market tables only."""
    d = root / table / f"date={date}"
    return d / f"symbol={symbol}" if symbol is not None else d


def part_glob(table: str, date: str = "*", symbol: str = "*") -> str:
    """A glob, relative to the store, of ``table``'s part files (of one date or symbol if given).

    It matches every ``*.parquet`` of the partition folders, as queries read them; callers
    that list files pass each one to :func:`parse_part`, which also drops hidden names.
    """
    keys = {"date": date, "symbol": symbol}
    return "/".join([table, *(f"{k}={keys[k]}" for k in partition_keys(table)), "*.parquet"])


def part_name(writer: str, first_fno: int, last_fno: int) -> str:
    """The name of a part file holding the rows of journal frames ``first_fno`` to ``last_fno``."""
    return f"part-{writer}-{first_fno:012d}-{last_fno:012d}.parquet"


def parse_part_name(name: str) -> tuple[str, int, int] | None:
    """``(writer, first fno, last fno)`` of a sink-named part file, or None."""
    m = PART_RE.fullmatch(name)
    return (m["writer"], int(m["first"]), int(m["last"])) if m else None


def parse_part(rel: PurePath | str) -> PartPath | None:
    """A part file's path relative to the store → what it holds; None if outside the layout.

    ``trades/date=2026-07-20/symbol=005930/part-w1-000000000000-000000000041.parquet`` gives
    ``PartPath("trades", "2026-07-20", "005930", "w1", 0, 41)``. A ``.parquet`` file whose
    name starts with ``.`` or ``_`` is not a part file, nor is anything at another depth.
    """
    parts = PurePath(rel).parts
    if not parts or parts[0] not in TABLES:
        return None
    table, name, folders = parts[0], parts[-1], parts[1:-1]
    keys = partition_keys(table)
    if len(folders) != len(keys) or not name.endswith(".parquet") or name[0] in "._":
        return None
    values = []
    for key, folder in zip(keys, folders, strict=True):
        k, eq, v = folder.partition("=")
        if k != key or not eq or not v:
            return None
        values.append(v)
    if not _DATE_RE.fullmatch(values[0]):
        return None
    writer, first, last = parse_part_name(name) or (None, -1, -1)
    return PartPath(table, values[0], values[1] if len(values) > 1 else None, writer, first, last)


def temp_path(final: Path) -> Path:
    """Where ``final`` is written before it is renamed into place: ``.<name>.tmp`` beside it."""
    return final.with_name(f".{final.name}.tmp")


def journal_root(data_dir: Path, writer: str) -> Path:
    """One writer's journal directory: ``data_dir/_journal/<writer>``."""
    return data_dir / JOURNAL_DIR / writer


def intent_path(data_dir: Path, intent_id: str) -> Path:
    """A compaction intent: ``data_dir/_compaction/intent-<id>.json``."""
    return data_dir / INTENT_DIR / f"intent-{intent_id}.json"


def default_writer_id() -> str:
    """This host's name, cleaned to the characters part-file names allow."""
    host = socket.gethostname().split(".")[0] or "host"
    clean = "".join(c if (c.isascii() and c.isalnum()) or c in "_." else "_" for c in host)
    return clean[:40] or "host"


def store_dir(data_dir: str | PurePath, *, must_exist: bool) -> Path:
    """The store's folder from what a user gave: the one rule every command and the API share.

    A URL is refused rather than taken as a local folder named ``s3:``: an ``s3://`` one
    by the callers that need a local folder (see :func:`store_location` for those that take
    an object store too), any other scheme always; so is a path that names a file. With
    ``must_exist`` (commands that only read), a missing folder is an error, never an empty
    answer.

    Raises:
        ConfigError: a URL, a file, or (``must_exist``) a folder that does not exist.
    """
    from recorder.store.objstore import parse_location

    text = str(data_dir)
    if not isinstance(parse_location(text), Path):
        raise ConfigError(f"{text}: this needs a local folder (s3:// stores: see docs/s3.md)")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"no store at {path}: it is a file, not a folder")
    if must_exist and not path.exists():
        raise ConfigError(f"no store at {path}: the folder does not exist")
    return path


def store_location(data_dir: object, *, must_exist: bool) -> Path | S3Store:
    """:func:`store_dir`, or an :class:`~recorder.store.objstore.S3Store` for ``s3://bucket/prefix``.

    With ``must_exist``, an object store must hold something under its prefix (one request).

    Raises:
        ConfigError: a URL of another scheme, a file, or (``must_exist``) nothing there.
        StoreError: the bucket could not be reached.
    """
    from recorder.store.objstore import S3Store, check_exists, parse_location

    if isinstance(data_dir, S3Store):
        loc: Path | S3Store = data_dir
    else:
        loc = parse_location(str(data_dir))
    if isinstance(loc, Path):
        return store_dir(loc, must_exist=must_exist)
    if must_exist:
        check_exists(loc)
    return loc
