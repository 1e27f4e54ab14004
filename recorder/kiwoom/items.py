"""The item grammar: Kiwoom stock codes with their venue suffixes (protocol notes §4.2), pure.

An *item* is what Kiwoom registers and sends: a 6-character code, plain for KRX, with
``_NX`` for NXT or ``_AL`` for SOR (the consolidated book). The store partitions by the
*symbol* (the code alone) and keeps the venue as a column. This module is the one place
that knows the spelling; capture, replay and query filters all go through it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from recorder.errors import ConfigError

#: Venue of each item suffix; a plain code is KRX.
SUFFIX_VENUE = {"": "KRX", "_NX": "NXT", "_AL": "SOR"}
VENUE_SUFFIX = {v: k for k, v in SUFFIX_VENUE.items()}
VENUES = tuple(SUFFIX_VENUE.values())

#: A stock code: 6 characters, digits or capitals (some newer KRX codes carry a letter).
CODE_PATTERN = "[0-9A-Z]{6}"
ITEM_PATTERN = CODE_PATTERN + "(?:_NX|_AL)?"
_CODE_RE = re.compile(CODE_PATTERN)
_ITEM_RE = re.compile(ITEM_PATTERN)

#: A filter on stored rows: code → the venues wanted, or None for every venue.
ItemFilter = dict[str, frozenset[str] | None]


def split_item(item: Any) -> tuple[str, str] | None:
    """``"005930_NX"`` → ``("005930", "NXT")``; None for anything but a stock item."""
    if not isinstance(item, str):
        return None
    code, sep, suffix = item.partition("_")
    venue = SUFFIX_VENUE.get(sep + suffix)
    if venue is None or not _CODE_RE.fullmatch(code):
        return None
    return code, venue


def item_of(code: str, venue: str) -> str:
    """``("005930", "NXT")`` → ``"005930_NX"``: the item Kiwoom streams a symbol's venue under."""
    return code + VENUE_SUFFIX[venue]


def is_item(text: str) -> bool:
    return _ITEM_RE.fullmatch(text) is not None


def _texts(items: str | Iterable[str]) -> list[str]:
    parts = items.split(",") if isinstance(items, str) else list(items)
    return [s.strip().upper() for s in parts if s.strip()]


def parse_items(items: str | Iterable[str]) -> list[str]:
    """``"005930,000660,005930_NX"`` (or a sequence) → distinct items, in order.

    Raises:
        ConfigError: a word that is not an item.
    """
    texts = _texts(items)
    bad = [s for s in texts if not is_item(s)]
    if bad:
        raise ConfigError(
            f"not a Kiwoom stock item: {', '.join(bad[:5])} (expected e.g. 005930 or 005930_NX)"
        )
    return list(dict.fromkeys(texts))


def parse_filter(items: str | Iterable[str] | None) -> ItemFilter | None:
    """Items as a filter on stored rows: ``005930`` means every venue of the symbol,
    ``005930_NX`` its NXT rows only. Both together: the plain code wins. None: no filter.

    Raises:
        ConfigError: a word that is not an item.
    """
    if items is None:
        return None
    out: ItemFilter = {}
    for item in parse_items(items):
        code, venue = split_item(item) or ("", "")
        if "_" not in item:
            out[code] = None
        elif code not in out or out[code] is not None:
            out[code] = (out.get(code) or frozenset()) | {venue}
    return out


def codes_of(items: Iterable[str]) -> set[str]:
    """Distinct items count separately toward Kiwoom's per-key limit (``005930`` and
    ``005930_NX`` are two codes, §3.4), so this is simply the set of items."""
    return set(items)
