"""Universe → app keys and machines: deterministic, stable, within Kiwoom's 200 codes per key."""

from __future__ import annotations

import random

import pytest

from recorder.capture.assign import assign_keys, key_id, parse_shard, shard_items, shard_of
from recorder.errors import ConfigError


def _universe(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    codes: dict[str, None] = {}
    while len(codes) < n:
        code = f"{rng.randrange(10**6):06d}"
        codes[code] = None
        if rng.random() < 0.25 and len(codes) < n:
            codes[code + "_NX"] = None
    return list(codes)


KEYS = [key_id(f"appkey-{i}") for i in range(17)]


def _owners(assignment: dict[str, list[str]]) -> dict[str, str]:
    return {code: key for key, codes in assignment.items() for code in codes}


def test_every_code_on_exactly_one_key_within_the_limit() -> None:
    items = _universe(3300)
    out = assign_keys(items, KEYS)
    assert sorted(c for codes in out.values() for c in codes) == sorted(items)
    assert max(len(codes) for codes in out.values()) <= 200
    assert set(out) == set(KEYS)


def test_same_universe_same_assignment_whatever_the_order() -> None:
    items = _universe(500)
    first = _owners(assign_keys(items, KEYS[:3]))
    shuffled = items[:]
    random.Random(7).shuffle(shuffled)
    assert _owners(assign_keys(shuffled, list(reversed(KEYS[:3])))) == first


def test_005930_and_005930_nx_are_two_codes() -> None:
    items = [f"{i:06d}" for i in range(100)] + [f"{i:06d}_NX" for i in range(100)]
    assert sum(len(v) for v in assign_keys(items, KEYS[:1]).values()) == 200
    with pytest.raises(ConfigError, match="2 keys are needed"):
        assign_keys([*items, "999999"], KEYS[:1])


def test_too_large_universe_is_refused_with_the_keys_it_needs() -> None:
    with pytest.raises(ConfigError, match="17 keys are needed"):
        assign_keys(_universe(3300), KEYS[:3])


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        assign_keys(["005930"], [KEYS[0], KEYS[0]])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize(("n_remove", "n_add"), [(0, 5), (5, 0), (3, 4)])
def test_changing_a_few_codes_moves_only_those_while_keys_have_room(
    seed: int, n_remove: int, n_add: int
) -> None:
    pool = _universe(700, seed)
    base, spare = pool[:500], pool[500:]
    rng = random.Random(seed)
    removed = set(rng.sample(base, n_remove))
    new = [c for c in base if c not in removed] + spare[:n_add]
    before, after = _owners(assign_keys(base, KEYS[:3])), _owners(assign_keys(new, KEYS[:3]))
    moved = [c for c in new if c in before and before[c] != after[c]]
    # 500 codes on 3 keys leaves room on each key, so nothing else moves.
    assert moved == []


@pytest.mark.parametrize("seed", range(8))
def test_near_full_keys_move_at_most_a_few_others(seed: int) -> None:
    pool = _universe(3400, seed)
    base, spare = pool[:3300], pool[3300:]
    rng = random.Random(seed)
    removed = set(rng.sample(base, 3))
    new = [c for c in base if c not in removed] + spare[:3]
    before, after = _owners(assign_keys(base, KEYS)), _owners(assign_keys(new, KEYS))
    moved = [c for c in new if c in before and before[c] != after[c]]
    # Only as keys fill up do other codes move, never more than one per key in these runs.
    assert len(moved) <= len(KEYS)


def test_shards_cover_the_universe_without_overlap_and_are_stable() -> None:
    items = _universe(2000)
    slices = [shard_items(items, i, 3) for i in (1, 2, 3)]
    assert sorted(c for s in slices for c in s) == sorted(items)
    assert all(500 < len(s) < 850 for s in slices)
    # A code's shard depends on the code alone: adding codes moves nothing else.
    grown = items + _universe(2100, 99)[:100]
    assert all(shard_of(c, 3) == i for i, s in enumerate(slices, 1) for c in s)
    assert [c for c in shard_items(grown, 2, 3) if c in set(items)] == slices[1]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2", ""])
def test_bad_shard_spelling_is_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="--shard"):
        parse_shard(text)


def test_shard_spelling() -> None:
    assert parse_shard(" 2/3 ") == (2, 3)


def test_key_id_does_not_reveal_the_key() -> None:
    kid = key_id("PSabSECRETAPPKEY0001")
    assert len(kid) == 12 and "PSab" not in kid and kid == key_id("PSabSECRETAPPKEY0001")
