"""Spreading a universe over app keys and machines: deterministic, stable, stateless.

Kiwoom allows one WebSocket session per app key and 200 distinct codes on it (protocol
notes §3.4), so a market-wide capture runs one session per key and each code must go to
exactly one key. Two rules, both rendezvous (highest-random-weight) hashing:

- :func:`shard_of` puts each code on one of ``N`` machines (``--shard I/N``). A code's shard
  depends on the code and ``N`` only, so machines agree without talking to each other, and
  adding or removing codes never moves any other code.
- :func:`assign_keys` puts each code of a machine's slice on one of its app keys, at most
  ``per_key`` codes each. Every code ranks the keys by a hash of (code, key) and takes the
  best one that still has room, codes taken in a fixed pseudo-random order. The same
  universe and keys give the same assignment every day, whatever the order of the keys in
  the file or of the codes on the command line. Adding or removing a few codes moves only
  those codes while no key is full; when keys are nearly full, a handful of others may move
  with them (each such move follows from a key filling up: with 3,300 codes on 17 keys,
  between 0 and 9 others over 150 trials, 2-3 typically).

Keys are named by a digest of the app key, never by the app key itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from recorder.errors import ConfigError
from recorder.kiwoom.limits import MAX_CODES_PER_KEY, check_codes


def _weight(code: str, node: str) -> int:
    digest = hashlib.blake2b(f"{code}\x00{node}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def key_id(appkey: str) -> str:
    """A short, stable, non-secret name for an app key (a digest; the key cannot be read back)."""
    return hashlib.sha256(appkey.encode()).hexdigest()[:12]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` → ``(2, 3)``: this machine is shard 2 of 3 (1-based).

    Raises:
        ConfigError: not ``I/N`` with ``1 <= I <= N``.
    """
    i, sep, n = text.strip().partition("/")
    try:
        shard, count = int(i), int(n)
    except ValueError:
        shard = count = 0
    if not sep or not 1 <= shard <= count:
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/3")
    return shard, count


def shard_of(code: str, count: int) -> int:
    """The shard (1-based, of ``count``) that records ``code``."""
    return 1 + max(range(count), key=lambda s: _weight(code, f"shard:{s}"))


def shard_items(items: Iterable[str], shard: int, count: int) -> list[str]:
    """The items of ``items`` that shard ``shard`` of ``count`` records, in their given order."""
    return [item for item in items if shard_of(item, count) == shard]


def assign_keys(
    items: Sequence[str], keys: Sequence[str], per_key: int = MAX_CODES_PER_KEY
) -> dict[str, list[str]]:
    """Each key id of ``keys`` → the items its session registers (in the order of ``items``).

    Args:
        items: the codes to record (``005930`` and ``005930_NX`` are two codes).
        keys: key ids (:func:`key_id`), distinct.
        per_key: the most codes one key may carry.

    Raises:
        ConfigError: duplicate keys, or more codes than the keys can carry (with the number
            of keys needed), before any network call.
    """
    if len(set(keys)) != len(keys):
        raise ConfigError("the same app key appears twice in the keys file")
    distinct = list(dict.fromkeys(items))
    check_codes(len(distinct), keys=len(keys), per_key=per_key)
    load = dict.fromkeys(keys, 0)
    owner: dict[str, str] = {}
    for code in sorted(distinct, key=lambda c: _weight(c, "order")):
        ranked = sorted(keys, key=lambda k: _weight(code, k), reverse=True)
        best = next(k for k in ranked if load[k] < per_key)
        owner[code] = best
        load[best] += 1
    out: dict[str, list[str]] = {k: [] for k in keys}
    for code in distinct:
        out[owner[code]].append(code)
    return out
