"""DuckDB reads an ``s3://`` store's objects in place, through an fsspec filesystem over
pyarrow's S3 one (DuckDB's own httpfs extension is downloaded at run time, so it is not used).

:func:`register_duckdb` gives a connection that filesystem; the query views then read the
same ``read_parquet`` globs with ``hive_partitioning`` as over a local store, and a filter on
``date`` or ``symbol`` opens only those partitions' objects.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

    from recorder.store.objstore import S3Store

#: The URL scheme DuckDB reads the store's objects through (:func:`register_duckdb`). Not
#: ``s3``: DuckDB would hand that to its httpfs extension, which it downloads.
DUCKDB_SCHEME = "recorder-s3"


@functools.cache
def _duckdb_fs_class() -> type:
    import pyarrow.fs as pafs
    from fsspec.implementations.arrow import ArrowFSWrapper

    prefix = f"{DUCKDB_SCHEME}://"

    class ListedS3(ArrowFSWrapper):  # type: ignore[misc]
        """fsspec over the pyarrow S3 filesystem, for DuckDB: one recursive listing per
        folder globbed (not a LIST per partition folder), and sizes from that listing (no
        HEAD before each read)."""

        protocol = DUCKDB_SCHEME
        cachable = False

        def __init__(self, fs: pafs.FileSystem, **kwargs: Any) -> None:
            super().__init__(fs, **kwargs)
            self._sizes: dict[str, int] = {}
            self._mtimes: dict[str, Any] = {}
            self._listed: dict[str, list[str]] = {}
            self._lock = threading.Lock()

        @classmethod
        def _strip_protocol(cls, path: Any) -> Any:
            if isinstance(path, list):
                return [cls._strip_protocol(p) for p in path]
            path = str(path)
            return (path[len(prefix) :] if path.startswith(prefix) else path).rstrip("/")

        def unstrip_protocol(self, name: str) -> str:
            return prefix + name

        def _files_under(self, path: str) -> list[str]:
            with self._lock:
                got = self._listed.get(path)
            if got is None:
                sel = pafs.FileSelector(path, recursive=True, allow_not_found=True)
                infos = [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]
                with self._lock:
                    self._sizes.update((i.path, i.size) for i in infos)
                    self._mtimes.update((i.path, i.mtime) for i in infos)
                    got = self._listed[path] = sorted(i.path for i in infos)
            return got

        def find(
            self,
            path: str,
            maxdepth: int | None = None,
            withdirs: bool = False,
            detail: bool = False,
            **kw: Any,
        ) -> Any:
            path = self._strip_protocol(path)
            base = len(path.split("/"))
            out: dict[str, dict[str, Any]] = {}
            for f in self._files_under(path):
                parts = f.split("/")
                depth = len(parts) - base
                if maxdepth is None or depth <= maxdepth:
                    out[f] = {"name": f, "size": self._sizes[f], "type": "file"}
                if withdirs:
                    for d in range(base + 1, len(parts)):
                        if maxdepth is None or d - base <= maxdepth:
                            name = "/".join(parts[:d])
                            out.setdefault(name, {"name": name, "size": 0, "type": "directory"})
            names = sorted(out)
            return {n: out[n] for n in names} if detail else names

        def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
            path = self._strip_protocol(path)
            size = self._sizes.get(path)
            if size is not None:
                return {"name": path, "size": size, "type": "file"}
            return super().info(path, **kwargs)  # type: ignore[no-any-return]

        def modified(self, path: str) -> Any:
            path = self._strip_protocol(path)
            got = self._mtimes.get(path)
            return got if got is not None else super().modified(path)

        def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
            return super()._open(self._strip_protocol(path), mode, **kwargs)

    return ListedS3


def register_duckdb(con: duckdb.DuckDBPyConnection, store: S3Store) -> str:
    """Let ``con`` read ``store``'s objects; returns the URL of the store's root for SQL
    (``recorder-s3://bucket/prefix``)."""
    con.register_filesystem(_duckdb_fs_class()(store.fs))
    return f"{DUCKDB_SCHEME}://{store.root}"
