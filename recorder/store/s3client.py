"""Deleting objects of an ``s3://`` store without leaving "folder" marker objects behind.

pyarrow's ``S3FileSystem.delete_file`` writes an empty ``<parent>/`` object after each
delete (so that the "directory" seems to survive), and nothing removes it: a compacted or
rebuilt store filled up with zero-byte keys ending in ``/``. Deletes therefore go through
botocore (``DeleteObject``, or ``DeleteObjects`` by the thousand).

The client is configured from the same ``AWS_*`` variables as the pyarrow filesystem
(:func:`recorder.store.objstore.s3_options`); without keys in the environment, botocore's own
chain (``~/.aws``, the instance's role) answers, as pyarrow's does. Keys are never logged nor
put in an error.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from recorder.errors import StoreError

if TYPE_CHECKING:
    from recorder.store.objstore import S3Store

#: Keys in one DeleteObjects request (S3's limit).
BATCH = 1000

_LOCK = threading.Lock()
_CLIENTS: dict[tuple[tuple[str, Any], ...], Any] = {}


def _client() -> Any:
    """A botocore S3 client for the current ``AWS_*`` environment (one per distinct setting)."""
    from recorder.store.objstore import s3_options

    opts = s3_options()
    sig = tuple(sorted(opts.items()))
    with _LOCK:
        client = _CLIENTS.get(sig)
        if client is None:
            import botocore.config
            import botocore.session

            kwargs: dict[str, Any] = {"region_name": opts.get("region") or "us-east-1"}
            style = "auto"
            if "endpoint_override" in opts:
                kwargs["endpoint_url"] = f"{opts['scheme']}://{opts['endpoint_override']}"
                style = "path"  # as pyarrow addresses an endpoint of one's own
            if "access_key" in opts:
                kwargs["aws_access_key_id"] = opts["access_key"]
                kwargs["aws_secret_access_key"] = opts["secret_key"]
                kwargs["aws_session_token"] = opts.get("session_token")
            config = botocore.config.Config(
                connect_timeout=opts["connect_timeout"],
                read_timeout=opts["request_timeout"],
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": style},
                max_pool_connections=32,
            )
            client = _CLIENTS[sig] = botocore.session.get_session().create_client(
                "s3", config=config, **kwargs
            )
    return client


def _fail(store: S3Store, what: str, exc: Exception) -> StoreError:
    from recorder.store.objstore import _clean

    return StoreError(f"cannot delete {what} in {store.url}: {_clean(exc)}")


def delete_one(store: S3Store, rel: str) -> None:
    """Delete the object ``rel`` (relative to the store); one that is not there is no error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _client().delete_object(Bucket=store.bucket, Key=_key(store, rel))
    except (BotoCoreError, ClientError) as exc:
        raise _fail(store, rel, exc) from exc


def delete_many(store: S3Store, rels: Iterable[str]) -> int:
    """Delete the objects ``rels`` (relative to the store), a thousand per request; returns
    how many were asked for. Objects that are not there are no error.

    Raises:
        StoreError: a request failed, or S3 refused to delete some key (the first is named).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    keys = [_key(store, rel) for rel in rels]
    for i in range(0, len(keys), BATCH):
        chunk = keys[i : i + BATCH]
        try:
            if len(chunk) == 1:  # one DELETE, not a POST with a body
                _client().delete_object(Bucket=store.bucket, Key=chunk[0])
                continue
            r = _client().delete_objects(
                Bucket=store.bucket, Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True}
            )
        except (BotoCoreError, ClientError) as exc:
            raise _fail(store, f"{len(chunk)} objects", exc) from exc
        if errors := r.get("Errors"):
            e = errors[0]
            raise StoreError(
                f"cannot delete {e.get('Key')} in {store.url}: {e.get('Code')} {e.get('Message', '')}".strip()
            )
    return len(keys)


def _key(store: S3Store, rel: str) -> str:
    """The S3 key (without the bucket) of ``rel``."""
    return f"{store.prefix}/{rel}" if store.prefix else rel
