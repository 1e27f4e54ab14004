"""A real S3-compatible server on loopback for the object-storage tests: moto in server mode
(``ThreadedMotoServer`` on 127.0.0.1, any free port), started once per session.

The recorder reaches it only through the standard variables (``AWS_ENDPOINT_URL``,
``AWS_REGION``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``), as a user's does; every test
gets a bucket of its own. :class:`S3Server` counts the requests the server answered, by method.
``built`` and ``pair`` give a journaled store of two writers, locally and published to a bucket.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from recorder.store import objstore
from recorder.store.objstore import S3Store, s3_options
from tests.store.test_compact import build_store

KEY_ID = "AKIATESTKEYID0000000"
SECRET = "test-secret-never-printed-0000000000000"
_REQUEST_RE = re.compile(r"(GET|PUT|POST|HEAD|DELETE) /")


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.mutex = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if m := _REQUEST_RE.search(record.getMessage()):
            with self.mutex:
                self.counts[m.group(1)] += 1


@dataclass
class S3Server:
    endpoint: str
    env: dict[str, str]
    counter: _Counter
    _names: Iterator[int] = field(default_factory=itertools.count)

    def bucket(self, prefix: str = "store") -> S3Store:
        """A new empty bucket, and a store under ``prefix`` in it."""
        name = f"test-{os.getpid()}-{next(self._names)}"
        import pyarrow.fs as pafs

        opts = s3_options()
        pafs.S3FileSystem(**opts, allow_bucket_creation=True).create_dir(name)
        return S3Store(name, prefix)

    def assert_no_folder_markers(self, store: S3Store) -> None:
        """The bucket holds objects, and none is a zero-byte "folder/" marker (pyarrow's deletes
        leave one behind; the store's do not)."""
        keys = self.raw_keys(store)
        assert keys and all(not k.endswith("/") and size > 0 for k, size in keys), keys

    def raw_keys(self, store: S3Store) -> list[tuple[str, int]]:
        """Every key of the store's bucket and its size, listed with botocore (not through the
        recorder, whose listings skip "folder" markers)."""
        import botocore.session

        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )
        out = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket):
            out.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
        return out

    def requests(self) -> Counter[str]:
        with self.counter.mutex:
            return Counter(self.counter.counts)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    counter = _Counter()
    wlog = logging.getLogger("werkzeug")
    wlog.addHandler(counter)
    wlog.setLevel(logging.INFO)
    wlog.propagate = False  # the access log is counted, not printed
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    saved = {k: os.environ.get(k) for k in [*env, "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION"]}
    os.environ.pop("AWS_ENDPOINT_URL_S3", None)
    os.environ.update(env)
    try:
        yield S3Server(endpoint, env, counter)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
        wlog.removeHandler(counter)


@pytest.fixture
def s3(s3_server: S3Server) -> S3Store:
    """A store in a fresh bucket of the loopback S3 server."""
    return s3_server.bucket()


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("built") / "data"
    build_store(data)  # two writers, journals, three flushes each: several files per partition
    return data


@pytest.fixture
def pair(s3_server: S3Server, s3: S3Store, built: Path, tmp_path: Path) -> tuple[Path, S3Store, Path]:
    """(a local store, the same store on S3, the S3 store's local journal folder)."""
    local, state = tmp_path / "local", tmp_path / "state"
    shutil.copytree(built, local)
    shutil.copytree(built, state)
    r = objstore.publish(s3, state)  # the journal checkpoints cover every file: all go up
    assert r.files == len(objstore.scan(s3).parts) > 0 and r.waiting == 0
    assert not [p for p in state.rglob("*.parquet")]
    return local, s3, state
