"""Named queries: ``*.sql`` files shipped in this package, run with bound parameters.

Each file starts with a header of ``--`` comments::

    -- bars: OHLCV bars per time bucket for each symbol and venue.
    -- params: start date, end date, symbol varchar = NULL, interval interval = '1 minute'

The first line is ``name: description`` (the name must match the file name). The
``params`` line declares each parameter as ``name type [= default]``; a parameter without
a default is required. Defaults are SQL literals: ``NULL``, a quoted string, a number,
``TRUE``/``FALSE``.

Contracts, checked when the files are loaded (a broken file fails loudly, not at run time):

- every ``$name`` in the SQL is declared, and every declared parameter is used;
- every use is written ``$name::TYPE`` with the declared type, so DuckDB never has to guess
  a parameter's type from context (``'2026-07-20'`` is a DATE because the file says so).

Values are always *bound* as DuckDB prepared-statement parameters, never pasted into the SQL
text. Before running, each value is cast to its declared type on its own, so a bad value is
reported with the parameter's name instead of as an error somewhere inside the query.

Filters speak the recorder's item vocabulary (:mod:`recorder.kiwoom.items`), as capture and
replay do: ``symbol`` takes a code (``005930``: every venue) or an item (``005930_NX``: the
code on NXT, that is ``symbol=005930, venue=NXT``), and ``venue`` takes ``KRX``, ``NXT`` or
``SOR`` in any case. Anything else is refused, never an empty answer.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from recorder.errors import ConfigError, RecorderError
from recorder.kiwoom.items import VENUES, parse_filter


def duckdb_message(exc: BaseException) -> str:
    """DuckDB's message. A failure of a filesystem written in Python (an ``s3://`` store's)
    comes with that Python traceback: only the exception's own line is kept."""
    text = str(exc).strip()
    if "Traceback (most recent call last)" not in text:
        return text
    errors = [ln.strip() for ln in text.splitlines() if _EXC_LINE.match(ln)]
    return " ".join(errors[-1].split()) if errors else " ".join(text.split())


_EXC_LINE = re.compile(r"\s*[A-Za-z_][\w.]*(Error|Exception)\b")


class QueryError(RecorderError):
    """DuckDB refused a query (its message is kept); see also :class:`NamedQueryError`."""


class NamedQueryError(QueryError, ConfigError):
    """A named query was misused: no such name, or parameters unknown, missing or not of
    their declared type.

    Also a :class:`~recorder.errors.ConfigError`: it is a usage error (the CLI exits 2).
    """


# Types a parameter may declare. The type name is put into the validation SQL (never a
# value), so only these known names are accepted.
TYPES = frozenset(
    {"DATE", "VARCHAR", "INTERVAL", "INTEGER", "BIGINT", "DOUBLE", "BOOLEAN", "TIMESTAMPTZ", "TIMESTAMP"}
)

_REQUIRED = object()  # sentinel: no default
_HEADER_RE = re.compile(r"--\s*(?P<name>[a-z_][a-z0-9_]*)\s*:\s*(?P<desc>.*)")
_PARAMS_RE = re.compile(r"--\s*params\s*:(?P<spec>.*)")
_PARAM_RE = re.compile(
    r"\s*(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>[a-z]+)"
    r"(?:\s*=\s*(?P<default>NULL|TRUE|FALSE|'(?:[^']|'')*'|-?\d+(?:\.\d+)?))?\s*(?:,|$)",
    re.IGNORECASE,
)
# Left to right, a comment or a string literal swallows any '$' inside it; only the
# matches with a ``name`` group are parameter uses in code.
_TOKEN_RE = re.compile(
    r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\""
    r"|\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:::(?P<type>[A-Za-z]+))?",
    re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Param:
    """One declared parameter of a named query.

    Attributes:
        name: bound as ``$name``.
        type: the DuckDB type the value is cast to (upper case, one of :data:`TYPES`).
        default: the value used when the caller gives none (``None`` is SQL NULL); absent
            (``required`` is True) when the caller must give one.
    """

    name: str
    type: str
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def __str__(self) -> str:
        if self.required:
            return f"{self.name} {self.type.lower()}"
        d = "NULL" if self.default is None else repr(self.default)
        return f"{self.name} {self.type.lower()} = {d}"


@dataclass(frozen=True, slots=True)
class NamedQuery:
    """A parsed ``.sql`` file: its name, one-line description, parameters and SQL text."""

    name: str
    description: str
    params: tuple[Param, ...]
    sql: str

    @property
    def signature(self) -> str:
        """``start date, end date, symbol varchar = NULL, …`` as in the file's header."""
        return ", ".join(str(p) for p in self.params)

    def bind(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The full parameter dict for DuckDB: ``values`` checked, defaults filled in.

        Raises:
            NamedQueryError: a name is not a parameter of this query, or a required one is
                missing (or given as None).
        """
        known = {p.name for p in self.params}
        unknown = sorted(set(values) - known)
        if unknown:
            raise NamedQueryError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; it takes: {self.signature}"
            )
        values = self._filters(values)
        out: dict[str, Any] = {}
        missing = []
        for p in self.params:
            v = values.get(p.name, p.default)
            if v is _REQUIRED or (v is None and p.required):
                missing.append(p.name)
            out[p.name] = v
        if missing:
            raise NamedQueryError(
                f"{self.name}: missing parameter(s) {', '.join(missing)}; it takes: {self.signature}"
            )
        return out

    def _filters(self, values: Mapping[str, Any]) -> Mapping[str, Any]:
        """``symbol`` and ``venue`` in the item vocabulary → the stored columns' values.

        Raises:
            NamedQueryError: a symbol that is not one item, a venue that is not KRX, NXT or
                SOR, or an item whose venue contradicts ``venue``.
        """
        out = dict(values)
        venue = out.get("venue")
        if isinstance(venue, str):
            out["venue"] = venue.strip().upper()
            if out["venue"] not in VENUES:
                raise NamedQueryError(f"{self.name}: venue={venue!r} is not one of {', '.join(VENUES)}")
        symbol = out.get("symbol")
        if not isinstance(symbol, str):
            return out
        try:
            wanted = parse_filter(symbol)
        except ConfigError as exc:
            raise NamedQueryError(f"{self.name}: symbol={symbol!r}: {exc}") from None
        if wanted is None or len(wanted) != 1 or len(next(iter(wanted.values())) or ()) > 1:
            raise NamedQueryError(f"{self.name}: symbol={symbol!r}: give one code or item, e.g. 005930_NX")
        ((code, venues),) = wanted.items()
        out["symbol"] = code
        if venues is None:
            return out
        (item_venue,) = venues
        if "venue" not in {p.name for p in self.params}:
            raise NamedQueryError(
                f"{self.name}: symbol={symbol!r}: this query has no venue filter; give the code {code}"
            )
        if out.get("venue") not in (None, item_venue):
            raise NamedQueryError(f"{self.name}: symbol={symbol!r} is on {item_venue}, not {out['venue']}")
        out["venue"] = item_venue
        return out

    def check_types(self, con: duckdb.DuckDBPyConnection, bound: Mapping[str, Any]) -> None:
        """Cast each bound value to its declared type alone, to name the culprit on failure.

        Raises:
            NamedQueryError: a value does not convert (DuckDB's message is included).
        """
        for p in self.params:
            v = bound[p.name]
            if v is None:
                continue
            try:
                # p.type is one of TYPES (checked at load); the value itself is bound.
                con.execute(f"SELECT CAST($v AS {p.type})", {"v": v}).fetchall()
            except (duckdb.Error, TypeError, ValueError) as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise NamedQueryError(
                    f"{self.name}: parameter {p.name}={v!r} is not a valid {p.type.lower()}: {msg}"
                ) from exc

    def execute(self, con: duckdb.DuckDBPyConnection, values: Mapping[str, Any] | None = None) -> pa.Table:
        """Run on ``con`` (which must have the store's views, see :func:`queries.connect`).

        Raises:
            NamedQueryError: bad parameters (see :meth:`bind` and :meth:`check_types`).
            QueryError: DuckDB failed while running the query.
        """
        bound = self.bind(values or {})
        self.check_types(con, bound)
        try:
            rel = con.sql(self.sql, params=bound)  # a relation: Arrow without an extra copy
            assert rel is not None  # a named query is one SELECT
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"{self.name}: {duckdb_message(exc)}") from exc


def _literal(text: str | None) -> Any:
    """A default's SQL literal → its Python value (``NULL`` → None)."""
    if text is None:
        return _REQUIRED
    up = text.upper()
    if up == "NULL":
        return None
    if up in ("TRUE", "FALSE"):
        return up == "TRUE"
    if text.startswith("'"):
        return text[1:-1].replace("''", "'")
    return float(text) if "." in text else int(text)


def _parse_params(name: str, spec: str) -> tuple[Param, ...]:
    params: list[Param] = []
    pos, spec = 0, spec.strip()
    while pos < len(spec):
        m = _PARAM_RE.match(spec, pos)
        if m is None:
            raise ValueError(f"{name}.sql: cannot parse parameters at {spec[pos:]!r}")
        type_ = m["type"].upper()
        if type_ not in TYPES:
            raise ValueError(f"{name}.sql: parameter {m['name']} has unsupported type {m['type']!r}")
        params.append(Param(m["name"], type_, _literal(m["default"])))
        pos = m.end()
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}.sql: a parameter is declared twice: {names}")
    return tuple(params)


def parse(name: str, text: str) -> NamedQuery:
    """Parse one named query file (``name`` is the file name without ``.sql``).

    Raises:
        ValueError: the header is missing or malformed, or the SQL's ``$name`` uses do
            not match the declared parameters (see the module docstring).
    """
    lines = text.splitlines()
    head = _HEADER_RE.fullmatch(lines[0].strip()) if lines else None
    if head is None or head["name"] != name:
        raise ValueError(f"{name}.sql: the first line must be '-- {name}: description'")
    spec = next((m["spec"] for ln in lines if (m := _PARAMS_RE.fullmatch(ln.strip()))), None)
    params = _parse_params(name, spec) if spec is not None else ()
    declared = {p.name: p.type for p in params}
    used: set[str] = set()
    for m in _TOKEN_RE.finditer(text):
        if m["name"] is None:  # a comment or a quoted string
            continue
        pname, ptype = m["name"], (m["type"] or "").upper()
        if pname not in declared:
            raise ValueError(f"{name}.sql: ${pname} is used but not declared in '-- params:'")
        if ptype != declared[pname]:
            raise ValueError(
                f"{name}.sql: write ${pname}::{declared[pname]} (its declared type) at every use"
            )
        used.add(pname)
    unused = [p for p in declared if p not in used]
    if unused:
        raise ValueError(f"{name}.sql: declared but unused parameter(s) {unused}")
    return NamedQuery(name, head["desc"].strip(), params, text)


@functools.cache
def _load() -> dict[str, NamedQuery]:
    out: dict[str, NamedQuery] = {}
    for res in importlib.resources.files("queries").iterdir():
        if res.name.endswith(".sql") and res.is_file():
            name = res.name[: -len(".sql")]
            out[name] = parse(name, res.read_text(encoding="utf-8"))
    return dict(sorted(out.items()))


def named() -> dict[str, NamedQuery]:
    """Every named query shipped with the package, by name (sorted)."""
    return dict(_load())


def get(name: str) -> NamedQuery:
    """The named query ``name``.

    Raises:
        NamedQueryError: there is no such query (the message lists the ones there are).
    """
    q = _load().get(name)
    if q is None:
        raise NamedQueryError(f"no named query {name!r}; there are: {', '.join(_load())}")
    return q
