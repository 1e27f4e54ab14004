"""Where Arrow's JSON parser is laxer than strict JSON, and how to find those frames fast (pure).

The recorder has one decoded form, defined by the strict JSON grammar (RFC 8259) as orjson
reads it: a frame orjson refuses goes whole to ``rejects`` with orjson's message, whichever
decoder meets it. :mod:`recorder.kiwoom.decode_arrow` parses batches with ``pyarrow.json``,
which accepts more than that (measured on pyarrow 26, tests/kiwoom/test_strict_json.py):

- the literals ``NaN``, ``Inf`` and ``Infinity``, each also with a leading ``-``;
- numbers past the range of a double (an integer part of 310 digits, ``1.8e308``), which
  orjson refuses as infinite;
- nesting deeper than orjson's limit of 1024 arrays and objects;
- invalid UTF-8 in strings (``decode_arrow`` validates every buffer itself).

Nothing else that Arrow accepts does orjson refuse (the other way round, Arrow refuses a
duplicate of a key it reads, which orjson takes, the last one winning: such frames simply go
to the reference decoder). A value typed as a string in Arrow's explicit schema refuses all of
the above ("changed from string to number"), so they can hide only in fields outside the
schema. ``decode_arrow`` therefore first parses a batch with every field a REAL frame carries
in its schema and any other field refused, which needs no screening; only when that fails does
it parse leniently, after :func:`suspects` has marked the frames that might hold one of them
and :func:`refused` has asked orjson about each (a false positive costs one orjson parse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import orjson

if TYPE_CHECKING:
    import pyarrow as pa

#: orjson refuses arrays and objects nested deeper than this.
MAX_DEPTH = 1024
# 10**308 < the largest double < 10**309: an integer part of 309 digits may already round to
# infinity, which orjson refuses. The integer part of any finite JSON number orjson accepts
# without an exponent is shorter than that, or has exactly 309 digits.
_LONG = 309
# Runs of digits are found by sampling every _STEP-th byte: a run of _LONG digits covers at
# least _RUN consecutive samples, hence a window of _WINDOW digits starting at a sample.
_STEP = 32
_RUN = _LONG // _STEP
_WINDOW = (_RUN - 1) * _STEP + 1
_CHUNK = 4096  # candidate windows checked at once (bounds the temporary array)
_ZERO, _NINE = ord("0"), ord("9")


def refused(frame: bytes | memoryview) -> bool:
    """Whether orjson refuses ``frame`` (the reference decoder then rejects it whole)."""
    try:
        orjson.loads(frame)
    except orjson.JSONDecodeError:
        return True
    return False


def suspects(buf: bytes | memoryview | pa.Buffer, starts: np.ndarray) -> list[int]:
    """Lines of ``buf`` that may hold JSON Arrow accepts and orjson refuses (besides bad UTF-8).

    Args:
        buf: lines of JSON text, one frame each.
        starts: the offset of each line in ``buf``, ascending, the first 0.

    Returns:
        Ascending line numbers: every line holding ``NaN`` or ``Inf``, a digit followed by
        ``e`` or ``E`` (an exponent), a run of at least 257 digits, or more than
        :data:`MAX_DEPTH` ``[`` and ``{`` in all. That takes in every line with a
        literal, number or nesting from the module docstring's list; strings that merely
        look alike are false positives.
    """
    a = np.frombuffer(buf, np.uint8)
    if not len(a):
        return []
    at = np.concatenate([_literals(a), _exponents(a), _digit_runs(a)])
    lines = set((np.searchsorted(starts, at, side="right") - 1).tolist())
    lines.update(_deep(a, starts).tolist())
    return sorted(lines)


def _is_digit(a: np.ndarray) -> np.ndarray:
    return (a >= _ZERO) & (a <= _NINE)


def _followed_by(a: np.ndarray, at: np.ndarray, text: bytes) -> np.ndarray:
    """The positions in ``at`` (where ``text[0]`` is) that start ``text``."""
    at = at[at + len(text) <= len(a)]
    ok = np.ones(len(at), bool)
    for i, c in enumerate(text[1:], 1):
        ok &= a[at + i] == c
    return at[ok]  # type: ignore[no-any-return]


def _literals(a: np.ndarray) -> np.ndarray:
    """Where ``NaN`` or ``Inf`` (the start of ``Infinity`` too) begins."""
    nan = _followed_by(a, np.flatnonzero(a == ord("N")), b"NaN")
    inf = _followed_by(a, np.flatnonzero(a == ord("I")), b"Inf")
    return np.concatenate([nan, inf])


def _exponents(a: np.ndarray) -> np.ndarray:
    """Where an ``e`` or ``E`` follows a digit: the only way to write an exponent in JSON."""
    e = np.flatnonzero((a[1:] | 0x20) == ord("e")) + 1  # | 0x20 folds E into e
    return e[_is_digit(a[e - 1])]  # type: ignore[no-any-return]


def _digit_runs(a: np.ndarray) -> np.ndarray:
    """Where a window of ``_WINDOW`` digits starts at a sampled byte (every run of ``_LONG`` has one)."""
    sampled = _is_digit(a[::_STEP])
    total = np.concatenate([[0], np.cumsum(sampled, dtype=np.int64)])
    first = np.flatnonzero(total[_RUN:] - total[:-_RUN] == _RUN) * _STEP
    first = first[first + _WINDOW <= len(a)]
    offsets = np.arange(_WINDOW)
    found = [np.empty(0, np.int64)]
    for i in range(0, len(first), _CHUNK):
        at = first[i : i + _CHUNK]
        found.append(at[_is_digit(a[at[:, None] + offsets]).all(axis=1)])
    return np.concatenate(found)


def _deep(a: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Lines with more than :data:`MAX_DEPTH` opening brackets (deeper nesting needs that many)."""
    opens = np.flatnonzero((a | 0x20) == ord("{"))  # | 0x20 folds [ into {
    if len(opens) <= MAX_DEPTH:
        return np.empty(0, np.int64)
    per_line = np.diff(np.searchsorted(opens, np.append(starts, len(a))))
    return np.flatnonzero(per_line > MAX_DEPTH)
