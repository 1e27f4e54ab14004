"""The store on object storage: ``--data-dir s3://bucket/prefix``.

A data dir is a local folder or an ``s3://bucket/prefix`` URL (:func:`parse_location`); any
other scheme (``gs://``, ``http://``, …) is refused with one line. The bucket is reached
through :class:`pyarrow.fs.S3FileSystem`, configured from the standard variables
(:func:`s3_options`): ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``), ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``), ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` /
``AWS_SESSION_TOKEN``, else pyarrow's own chain (``~/.aws``, instance metadata). Keys are
never logged nor put in an error.

Writing. Capture, ingest and backfill write through the local code into a *local store*
(the ``--journal-dir``, default :func:`default_local_dir`): the journal under ``_journal/``
and part files staged under the table folders. :func:`publish` uploads each complete part
file (a visible name; the sink writes under a dot-temporary name and renames) as one whole
object (a PUT, or a multipart upload completed at once: an object appears complete or not
at all), then deletes the local copy. A file of a writer with a journal is published only
once the journal checkpoint covers its last frame: a file past the checkpoint belongs to a
flush a crash interrupted, and recovery (which drops the rows such a file holds) must find
it. Every start publishes what a crash left staged; a file already uploaded (the crash fell
between the PUT and the local delete), or merged since by a compaction, is found covered by
an object of the same writer and dropped, not uploaded twice.

Reading. ``query`` reads the objects in place: :func:`recorder.store.s3duckdb.register_duckdb` gives DuckDB a
filesystem (fsspec over the pyarrow one) so the views are the same ``read_parquet`` globs
with ``hive_partitioning``; a filter on ``date`` or ``symbol`` opens only those partitions'
objects (one listing of the table's keys, then ranged GETs of the files kept). ``ls``
reads footers only. ``replay``, ``report``, ``backfill`` and ``verify`` read whole
partitions anyway: :func:`local_view` mirrors the selected partitions into a temporary
folder and the local code reads that. Compaction goes through :class:`S3Files`.

Imports nothing heavy at module level: the CLI parses ``--data-dir`` at no cost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from recorder.errors import ConfigError, StoreError
from recorder.store.layout import (
    INTENT_DIR,
    INTENT_GLOB,
    JOURNAL_DIR,
    TMP_RE,
    parse_part,
    parse_part_name,
    partition_dir,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs

    from recorder.store.inventory import Part, Scan
    from recorder.store.verify import VerifyReport

log = logging.getLogger(__name__)

#: ``scheme://rest``: what a data dir that is a URL looks like.
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)", re.S)
#: S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
#: Transfers in flight at once (uploads, downloads, deletes): S3 latency, not bandwidth, bounds
#: a flush of thousands of small part files.
TRANSFERS = 16
_CHUNK = 8 << 20


# --------------------------------------------------------------------------- locations


@dataclass(frozen=True, slots=True)
class S3Store:
    """A store under ``s3://bucket/prefix`` (``prefix`` without leading or trailing ``/``)."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __str__(self) -> str:
        return self.url

    @property
    def root(self) -> str:
        """The store's path for pyarrow's filesystem: ``bucket/prefix``."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def key(self, rel: str) -> str:
        """The pyarrow path of ``rel`` (a path relative to the store)."""
        return f"{self.root}/{rel}" if rel else self.root

    def rel(self, key: str) -> str:
        """``key`` relative to the store."""
        return key[len(self.root) + 1 :]

    @property
    def fs(self) -> pafs.S3FileSystem:
        return s3_filesystem()


#: A data dir: a local folder or an object store.
Location = Path | S3Store


def parse_location(text: str | os.PathLike[str]) -> Location:
    """A ``--data-dir`` value → a local :class:`~pathlib.Path` or an :class:`S3Store`; no I/O.

    Raises:
        ConfigError: a URL of another scheme than ``s3``, or an ``s3://`` URL without a valid
            bucket name.
    """
    text = os.fspath(text)
    m = _URL_RE.fullmatch(text)
    if m is None:
        if "://" in text:
            raise ConfigError(f"{text}: not a folder nor a URL; give a local folder or s3://bucket/prefix")
        return Path(text)
    scheme = m["scheme"].lower()
    if scheme != "s3":
        raise ConfigError(
            f"{text}: the {scheme}:// scheme is not supported; give a local folder or s3://bucket/prefix"
        )
    bucket, _, prefix = m["rest"].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.fullmatch(bucket):
        raise ConfigError(f"{text}: {bucket!r} is not an S3 bucket name")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"{text}: the prefix has an empty, '.' or '..' part")
    return S3Store(bucket, prefix)


def check_exists(store: S3Store) -> None:
    """Raise ConfigError unless the bucket exists and holds something under the prefix."""
    import pyarrow.fs as pafs

    info = _call(store, "look at", lambda: store.fs.get_file_info(store.root))
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"no store at {store.url}: nothing is stored under that prefix")


def default_local_dir(store: S3Store, env: Mapping[str, str] = os.environ) -> Path:
    """Where a remote store's journal and staged part files live by default:
    ``$XDG_STATE_HOME/kiwoom-recorder/<bucket>/<prefix>`` (``~/.local/state`` when unset)."""
    base = Path(env.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "kiwoom-recorder" / store.bucket / store.prefix


def local_dir_for(data_dir: Location, journal_dir: Path | None) -> Path | None:
    """The local store of ``data_dir``: itself when local, else ``journal_dir`` or the default.

    Raises:
        ConfigError: ``journal_dir`` given with a local data dir (its journal is ``_journal/``).
    """
    if isinstance(data_dir, Path):
        if journal_dir is not None:
            raise ConfigError(
                "--journal-dir is for an s3:// --data-dir; a local store keeps its journal in _journal/"
            )
        return data_dir
    return journal_dir if journal_dir is not None else default_local_dir(data_dir)


# --------------------------------------------------------------------------- the filesystem


def s3_options(env: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """Arguments of :class:`pyarrow.fs.S3FileSystem` from the standard ``AWS_*`` variables.

    pyarrow does not read ``AWS_ENDPOINT_URL`` itself, hence this. Without a region, an
    endpoint of one's own gets ``us-east-1`` (S3-compatible servers ignore it).
    """
    # allow_delayed_open: a file smaller than a multipart part goes up in one PUT, not three.
    opts: dict[str, Any] = {"connect_timeout": 10.0, "request_timeout": 60.0, "allow_delayed_open": True}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if endpoint:
        u = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        opts["endpoint_override"] = u.netloc + u.path.rstrip("/")
        opts["scheme"] = u.scheme or "https"
        region = region or "us-east-1"
    if region:
        opts["region"] = region
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        opts["access_key"], opts["secret_key"] = key, secret
        if token := env.get("AWS_SESSION_TOKEN"):
            opts["session_token"] = token
    return opts


_FS_LOCK = threading.Lock()
_FS_CACHE: dict[tuple[tuple[str, Any], ...], Any] = {}


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem for the current ``AWS_*`` environment (one per distinct setting)."""
    import pyarrow.fs as pafs

    opts = s3_options()
    sig = tuple(sorted(opts.items()))
    with _FS_LOCK:
        fs = _FS_CACHE.get(sig)
        if fs is None:
            fs = _FS_CACHE[sig] = pafs.S3FileSystem(**opts)
    return fs


def _clean(exc: BaseException) -> str:
    """An error's message on one line (pyarrow's AWS errors span several)."""
    return " ".join(str(exc).split())


def _call(store: S3Store, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreError(f"cannot {what} {store.url}: {_clean(exc)}") from exc


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Obj:
    """One object of the store: its path relative to the store and its size."""

    rel: str
    size: int


def list_objects(store: S3Store, rel_dir: str = "") -> list[Obj]:
    """Every object under ``rel_dir`` (recursive, sorted by key); none if there is none."""
    import pyarrow.fs as pafs

    sel = pafs.FileSelector(store.key(rel_dir), recursive=True, allow_not_found=True)
    infos = _call(store, "list", lambda: store.fs.get_file_info(sel))
    n = len(store.root) + 1
    return sorted(
        (Obj(i.path[n:], i.size) for i in infos if i.type == pafs.FileType.File), key=lambda o: o.rel
    )


def scan(store: S3Store, tables: Iterable[str] | None = None, date: str | None = None) -> Scan:
    """:func:`recorder.store.inventory.scan` of an object store: parts, temps and strays.

    Part paths are ``Path("bucket/prefix/…")``: keys, not local files. ``date`` lists one
    date's partitions only.
    """
    from recorder.kiwoom.fields import TABLES
    from recorder.store.inventory import Part, Scan

    out = Scan()
    for table in tables or TABLES:
        for o in list_objects(store, partition_dir(Path(), table, date).as_posix() if date else table):
            path = Path(store.key(o.rel))
            if TMP_RE.fullmatch(path.name):
                out.temps.append(path)
            elif (p := parse_part(o.rel)) is None:
                out.strays.append(path)
            else:
                out.parts.append(
                    Part(p.table, p.date, p.symbol, p.writer, p.first_fno, p.last_fno, path, o.size)
                )
    return out


# --------------------------------------------------------------------------- transfers


def put_file(store: S3Store, local: Path, rel: str) -> None:
    """Upload ``local`` as the object ``rel``, whole (it appears complete or not at all).
    No ``compression`` (here and in reads): pyarrow would (de)compress a ``.zst`` key."""

    def go() -> None:
        with open(local, "rb") as src, store.fs.open_output_stream(store.key(rel), compression=None) as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)

    _call(store, f"upload {local} to", go)


def put_bytes(store: S3Store, rel: str, data: bytes) -> None:
    def go() -> None:
        with store.fs.open_output_stream(store.key(rel), compression=None) as dst:
            dst.write(data)

    _call(store, f"write {rel} in", go)


def get_bytes(store: S3Store, rel: str) -> bytes:
    def go() -> bytes:
        with store.fs.open_input_stream(store.key(rel), compression=None) as src:
            return bytes(src.read())

    return _call(store, f"read {rel} in", go)  # type: ignore[no-any-return]


def get_file(store: S3Store, obj: Obj, local: Path) -> None:
    """Download ``obj`` to ``local`` (written under a temporary name, then renamed)."""

    def go() -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.tmp")
        with store.fs.open_input_stream(store.key(obj.rel), compression=None) as src, open(tmp, "wb") as dst:
            while chunk := src.read(_CHUNK):
                dst.write(chunk)
        os.replace(tmp, local)

    _call(store, f"download {obj.rel} from", go)


def delete(store: S3Store, rel: str) -> None:
    """Delete one object (not pyarrow's delete_file: it leaves a folder marker; see s3client)."""
    from recorder.store.s3client import delete_one

    delete_one(store, rel)


def head_size(store: S3Store, rel: str) -> int | None:
    """The object's size, or None if there is no such object."""
    import pyarrow.fs as pafs

    info = _call(store, "look at", lambda: store.fs.get_file_info(store.key(rel)))
    return info.size if info.type == pafs.FileType.File else None


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    from concurrent.futures import ThreadPoolExecutor

    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(TRANSFERS, len(items)), thread_name_prefix="s3") as pool:
        return list(pool.map(fn, items))


# --------------------------------------------------------------------------- publishing


@dataclass(slots=True)
class PublishResult:
    """What :func:`publish` did: files uploaded, bytes, and files found already there."""

    files: int = 0
    bytes: int = 0
    covered: int = 0  # staged files an object already held (uploaded before a crash, or merged)
    waiting: int = 0  # files past their writer's journal checkpoint, left for recovery


def publish(store: S3Store, local: Path, *, check_existing: bool = True, tidy: bool = False) -> PublishResult:
    """Upload the complete part files staged in ``local`` as whole objects, then delete them.

    A file of a writer with a journal in ``local`` waits until the checkpoint covers its last
    frame (see the module docstring). With ``check_existing`` (every start), a file that an
    object of the same writer already covers (same key, or a compaction's merged object) is
    not uploaded again, only deleted. ``tidy`` removes emptied partition folders (only when
    nothing writes into ``local``).

    Raises:
        StoreError: an upload or a local file failed; what was uploaded stays uploaded, the
            rest stays staged for the next start.
    """
    from recorder.store.inventory import scan as scan_local
    from recorder.store.journal import list_writers, read_checkpoint
    from recorder.store.layout import journal_root

    res = PublishResult()
    if not local.is_dir():
        return res
    checkpoints = {w: read_checkpoint(journal_root(local, w)) for w in list_writers(local / JOURNAL_DIR)}
    ready = []
    for p in scan_local(local).parts:
        if p.writer is None:
            continue
        if p.writer in checkpoints and p.last_fno > checkpoints[p.writer]:
            res.waiting += 1
            continue
        ready.append(p)
    if not ready:
        if tidy:
            _tidy(local)
        return res
    covered: set[Path] = set()
    if check_existing:
        covered = _covered(store, local, ready)

    def one(p: Part) -> int:
        rel = p.path.relative_to(local).as_posix()
        if p.path not in covered:
            try:
                put_file(store, p.path, rel)
            except FileNotFoundError:  # a concurrent publish of the same folder took it
                return 0
        try:
            p.path.unlink()
        except FileNotFoundError:  # a concurrent publish of the same staging folder took it
            pass
        except OSError as exc:
            raise StoreError(f"cannot remove the staged {p.path}: {exc}") from exc
        return 0 if p.path in covered else p.size

    sizes = _parallel(one, ready)
    res.files = sum(1 for p in ready if p.path not in covered)
    res.bytes = sum(sizes)
    res.covered = len(covered)
    if res.files or res.covered:
        log.info("published %d part files (%d bytes) to %s", res.files, res.bytes, store.url)
    if tidy:
        _tidy(local)
    return res


def _covered(store: S3Store, local: Path, parts: list[Part]) -> set[Path]:
    """The staged parts an object of the same writer already covers, one listing per partition."""
    import pyarrow.fs as pafs

    by_dir: dict[Path, list[Part]] = defaultdict(list)
    for p in parts:
        by_dir[p.path.parent].append(p)

    def check(folder: Path) -> list[Path]:
        rel = folder.relative_to(local).as_posix()
        sel = pafs.FileSelector(store.key(rel), recursive=False, allow_not_found=True)
        infos = _call(store, "list", lambda: store.fs.get_file_info(sel))
        ranges = [r for i in infos if (r := parse_part_name(i.base_name))]
        out = []
        for p in by_dir[folder]:
            if any(w == p.writer and a <= p.first_fno and p.last_fno <= b for w, a, b in ranges):
                out.append(p.path)
        return out

    return {path for paths in _parallel(check, sorted(by_dir)) for path in paths}


def _tidy(local: Path) -> None:
    """Remove empty partition folders under the table folders of ``local`` (bottom up)."""
    from recorder.kiwoom.fields import TABLES

    for table in TABLES:
        base = local / table
        if not base.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(base), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)


class Uploader:
    """Publishes a capture's staged part files every ``every_s`` seconds on a thread of its own.

    :meth:`stop` ends it; a failed upload is logged and tried again at the next round (the
    files stay staged), so a slow or unreachable bucket never stops the capture.
    """

    def __init__(self, store: S3Store, local: Path, every_s: float = 5.0) -> None:
        self.store, self.local, self.every_s = store, local, every_s
        self.published = PublishResult()
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3-uploader", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                r = publish(self.store, self.local, check_existing=False)
            except Exception as exc:  # logged; the files wait for the next round
                self.failures += 1
                log.warning("upload to %s failed (again in %.0f s): %s", self.store.url, self.every_s, exc)
                continue
            self.published.files += r.files
            self.published.bytes += r.bytes

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# --------------------------------------------------------------------------- mirroring


def mirror(
    store: S3Store,
    dest: Path,
    *,
    tables: Iterable[str] | None = None,
    dates: Iterable[str] | None = None,
    date_range: tuple[str, str] | None = None,
    symbols: Iterable[str] | None = None,
) -> int:
    """Download the part files of a selection into ``dest``, same relative paths; returns
    how many. ``dates`` lists those dates' partitions only; ``date_range`` (inclusive) keeps
    dates in it from a listing of the whole table; ``symbols`` keeps those codes' partitions
    of market tables."""
    from recorder.kiwoom.fields import TABLES

    wanted_syms = set(symbols) if symbols is not None else None
    objs: list[Obj] = []
    for table in tables or TABLES:
        listings = (
            [partition_dir(Path(), table, d).as_posix() for d in dates] if dates is not None else [table]
        )
        for rel_dir in listings:
            for o in list_objects(store, rel_dir):
                p = parse_part(o.rel)
                if p is None:
                    continue
                if date_range is not None and not date_range[0] <= p.date <= date_range[1]:
                    continue
                if wanted_syms is not None and p.symbol is not None and p.symbol not in wanted_syms:
                    continue
                objs.append(o)
    _parallel(lambda o: get_file(store, o, dest / o.rel), objs)
    return len(objs)


@contextlib.contextmanager
def local_view(
    data_dir: Location,
    *,
    scratch_dir: Path | None = None,
    **selection: Any,
) -> Iterator[Path]:
    """A local folder to read ``data_dir`` from: itself when local, else a temporary mirror
    of the selection (arguments of :func:`mirror`), removed when the block ends."""
    if isinstance(data_dir, Path):
        yield data_dir
        return
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="recorder-s3-", dir=scratch_dir))
    try:
        n = mirror(data_dir, tmp, **selection)
        log.info("read %d objects of %s into %s", n, data_dir.url, tmp)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- compaction


class S3Files:
    """:class:`recorder.store.compact.StoreFiles` of an object store.

    Paths are ``Path("bucket/prefix/…")``. A write is one whole object; there is no directory
    to sync and no lock (one compaction per prefix at a time is the operator's job); the
    writers' journals are on their own hosts, so no writer lock either: a capture uploading
    into the prefix meanwhile adds files past every merged range, which compaction never
    touches.
    """

    #: Groups compacted at once: each is a chain of requests, and S3 answers in tens of ms.
    parallel = TRANSFERS

    def __init__(self, store: S3Store) -> None:
        self.store = store
        self.root = Path(store.root)
        self._listed: set[Path] | None = None

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def parts(self) -> list[Part]:
        found = scan(self.store)
        self._listed = {p.path for p in found.parts}
        return found.parts

    def read(self, path: Path) -> pa.Table:
        """The whole object in one GET (no HEAD), then decoded."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = get_bytes(self.store, self._rel(path))
        try:
            return pq.read_table(pa.BufferReader(data))
        except pa.ArrowException as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc

    def exists(self, path: Path) -> bool:
        """From the listing :meth:`parts` made when there is one (compaction lists, then asks
        about names it would write), else one HEAD."""
        if self._listed is not None and path.name.startswith("part-"):
            return path in self._listed
        return head_size(self.store, self._rel(path)) is not None

    def size(self, path: Path) -> int | None:
        return head_size(self.store, self._rel(path))

    def write_part(self, t: pa.Table, path: Path) -> int:
        import tempfile

        from recorder.store.encoding import write_compacted

        with tempfile.TemporaryDirectory(prefix="recorder-s3-") as tmp:
            local = Path(tmp) / path.name
            write_compacted(t, local)
            size = local.stat().st_size
            put_file(self.store, local, self._rel(path))
        if self._listed is not None:
            self._listed.add(path)
        return size

    def remove(self, path: Path) -> None:
        delete(self.store, self._rel(path))  # S3 deletes what is not there without complaint
        if self._listed is not None:
            self._listed.discard(path)

    def sync_dir(self, folder: Path) -> None:
        pass  # an object is durable once its PUT or DELETE returns

    def footer_rows(self, path: Path) -> int:
        import pyarrow.parquet as pq

        fs = self.store.fs
        md = _call(self.store, f"read {path} in", lambda: pq.read_metadata(str(path), filesystem=fs))
        return int(md.num_rows)

    def intents(self) -> list[Path]:
        import fnmatch

        objs = list_objects(self.store, INTENT_DIR)
        return [Path(self.store.key(o.rel)) for o in objs if fnmatch.fnmatch(Path(o.rel).name, INTENT_GLOB)]

    def read_bytes(self, path: Path) -> bytes:
        return get_bytes(self.store, self._rel(path))

    def write_bytes(self, path: Path, data: bytes) -> None:
        put_bytes(self.store, self._rel(path), data)

    @contextlib.contextmanager
    def lock(self, busy: str) -> Iterator[None]:
        yield

    def writer_lock(self, writer: str, busy: str) -> contextlib.AbstractContextManager[None] | None:
        return None


# --------------------------------------------------------------------------- commands


def open_store(data_dir: Location, journal_dir: Path | None = None) -> tuple[Location, Path | None]:
    """At the start of a command that changes a store: on S3, finish interrupted compactions
    and rebuilds and publish what a crash left staged locally. Returns ``(data_dir, local)``."""
    local = local_dir_for(data_dir, journal_dir)
    if isinstance(data_dir, S3Store):
        from recorder.store.compact import finish_compactions
        from recorder.store.s3rebuild import finish_rebuilds

        assert local is not None
        finish_compactions(data_dir)  # logs what it did
        finish_rebuilds(data_dir, local)
        publish(data_dir, local, check_existing=True)
    return data_dir, local


def verify_remote(
    store: S3Store, *, journal_dir: Path | None, scratch_dir: Path | None, tmp_age_s: float = 600.0
) -> VerifyReport:
    """``recorder verify`` of an object store: finish interrupted compactions, publish what a
    crash left staged, copy every part file into ``scratch_dir`` and verify that copy against
    the journals of the local store (this host's writers; others are reported as having no
    journal here). The copy is removed afterwards."""
    from recorder.errors import RecorderError
    from recorder.store.compact import finish_compactions
    from recorder.store.s3rebuild import finish_rebuilds
    from recorder.store.verify import VerifyReport, verify

    try:
        finished = finish_compactions(store) + finish_rebuilds(store, journal_dir or default_local_dir(store))
        _, local = open_store(store, journal_dir)
        with local_view(store, scratch_dir=scratch_dir) as copy:
            if local is not None and (local / JOURNAL_DIR).is_dir():
                (copy / JOURNAL_DIR).symlink_to((local / JOURNAL_DIR).resolve(), target_is_directory=True)
            rep = verify(copy, scratch_dir=scratch_dir, tmp_age_s=tmp_age_s)
            rep.warnings[:0] = finished
            return rep
    except RecorderError as exc:
        rep = VerifyReport(unreadable=True)
        rep.problems.append(str(exc))
        return rep
