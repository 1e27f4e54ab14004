"""Kiwoom REST client: tokens (au10001/au10002), the symbol list (ka10099), the tick chart
(ka10079), any paged TR.

Everything a market-data recorder needs from REST, over one :class:`httpx.AsyncClient`:

- :meth:`KiwoomRest.token` caches the token and re-issues it shortly before it expires;
- :meth:`KiwoomRest.request` makes one TR call with the auth headers (§2.3, §5.1),
  re-issuing the token once when Kiwoom says it is invalid (§2.4);
- :meth:`KiwoomRest.pages` follows ``cont-yn``/``next-key`` continuation (§5.1);
- :meth:`KiwoomRest.list_symbols` reads ka10099 for KOSPI, KOSDAQ or both (§5.2);
- :meth:`KiwoomRest.tick_chart` walks ka10079 back from the newest execution, one page
  at a time, as far as the caller asks (§5.3).

One client holds one app key. Its requests are paced client-side to ``rate_per_s`` per
api-id (§5.1: 5/s per app key and TR in production, 1/s on mock). Rate-limit answers,
network failures and HTTP 5xx are retried with jittered exponential backoff.
:attr:`KiwoomRest.counters` counts requests, pages and rate-limit answers (for progress
displays). Callers see only :mod:`recorder.errors`. No message, log line or repr ever
holds the app key, secret key or token.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from recorder.client.credentials import Credentials, mask
from recorder.errors import AuthError, ConfigError, KiwoomError, RateLimitError, TransportError
from recorder.kiwoom.limits import RATE_LIMIT_CODE, TOKEN_ERROR_CODES
from recorder.kiwoom.time import NS, format_kst, parse_kst_stamp

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/json;charset=UTF-8"
STKINFO_PATH = "/api/dostk/stkinfo"
CHART_PATH = "/api/dostk/chart"
TICK_CHART = "ka10079"
MARKETS: dict[str, tuple[str, ...]] = {"kospi": ("0",), "kosdaq": ("10",), "all": ("0", "10")}
MAX_PAGES = 1000
#: §5.3: a liquid name fills up to about 2,000 pages of 900 rows a day; a walk may go back days.
CHART_MAX_PAGES = 20_000
FALLBACK_LIFETIME_NS = 23 * 3600 * NS  # tokens live ~24 h (§2.1); stay an hour short
_DETAIL_CODE = re.compile(r"(?:\[|CODE=)(\d{4})\b")  # "[8005:Token이 ...]" or "CODE=8005"


@dataclass(frozen=True)
class Token:
    """An access token and when it expires (epoch ns). The repr masks the value."""

    value: str
    expires_at_ns: int

    def __repr__(self) -> str:
        return f"Token(value='{mask(self.value)}', expires={format_kst(self.expires_at_ns)!r})"


@dataclass(frozen=True)
class SymbolInfo:
    """One ka10099 row (§5.2), typed. ``raw`` keeps the row exactly as sent.

    Numeric fields that do not parse (``""``, garbage) are ``None``; text fields are kept
    as sent. ``nxt_enable`` is true only for ``"Y"`` (the other value is ``""`` or ``"N"``).
    """

    code: str
    name: str
    market_code: str
    market_name: str
    nxt_enable: bool
    last_price: int | None
    state: str
    list_count: int | None
    audit_info: str
    reg_day: str
    up_name: str
    up_size_name: str
    company_class_name: str
    order_warning: str
    kind: str
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def state_flags(self) -> tuple[str, ...]:
        """``state`` split on ``|``, e.g. ``("증거금100%", "거래정지")``."""
        return tuple(s for s in self.state.split("|") if s)

    @classmethod
    def from_row(cls, row: Any) -> SymbolInfo:
        """Type one row of ka10099's ``list``.

        Raises:
            KiwoomError: the row is not an object or has no ``code``.
        """
        if not isinstance(row, dict) or not isinstance(row.get("code"), str) or not row["code"]:
            raise KiwoomError("bad row", f"row without a code: {_excerpt(repr(row))}", what="ka10099")

        def text(key: str) -> str:
            value = row.get(key)
            return "" if value is None else str(value)

        return cls(
            code=row["code"],
            name=text("name"),
            market_code=text("marketCode"),
            market_name=text("marketName"),
            nxt_enable=text("nxtEnable") == "Y",
            last_price=_int_or_none(row.get("lastPrice")),
            state=text("state"),
            list_count=_int_or_none(row.get("listCount")),
            audit_info=text("auditInfo"),
            reg_day=text("regDay"),
            up_name=text("upName"),
            up_size_name=text("upSizeName"),
            company_class_name=text("companyClassName"),
            order_warning=text("orderWarning"),
            kind=text("kind"),
            raw=dict(row),
        )


@dataclass(frozen=True, slots=True)
class ChartRow:
    """One ka10079 row at ``tic_scope`` 1: one execution (§5.3). ``raw`` keeps the row as sent.

    Attributes:
        ts_ns: the execution's second (``cntr_tm``, KST) as epoch ns; Kiwoom gives no finer time.
        price: ``cur_prc`` without the direction sign (KRW).
        qty: ``trde_qty``, the executed quantity (unsigned).
    """

    ts_ns: int
    price: int
    qty: int
    raw: dict[str, Any] = field(compare=False, repr=False)

    @classmethod
    def from_row(cls, row: Any) -> ChartRow:
        """Type one row of ``stk_tic_chart_qry``.

        Raises:
            KiwoomError: not an object, or ``cntr_tm``, ``cur_prc`` or ``trde_qty`` missing
                or unreadable (nothing is guessed for a row that does not parse).
        """
        if isinstance(row, dict):
            ts_ns = parse_kst_stamp(row.get("cntr_tm"))
            price = _unsigned(row.get("cur_prc"))
            qty = _unsigned(row.get("trde_qty"))
            if ts_ns is not None and price is not None and qty is not None:
                return cls(ts_ns, price, qty, dict(row))
        raise KiwoomError("bad row", f"unreadable tick-chart row: {_excerpt(repr(row))}", what=TICK_CHART)


@dataclass
class RestCounters:
    """What one client has done so far; read it for progress displays.

    Attributes:
        requests: HTTP requests sent (every attempt, token calls and retries included).
        pages: TR answers yielded by :meth:`KiwoomRest.pages` (ka10079 pages among them).
        rate_limited: answers refusing a request for the rate limit (HTTP 429 / return_code 5).
    """

    requests: int = 0
    pages: int = 0
    rate_limited: int = 0


def backoff_delay(attempt: int, rng: random.Random, *, base: float = 0.25, cap: float = 8.0) -> float:
    """Seconds to wait before retry number ``attempt + 1``: exponential, jittered, capped.

    The jitter only adds up to 25 %, so delays grow strictly until they reach ``cap``.
    """
    return min(cap, base * 2.0**attempt * (1.0 + 0.25 * rng.random()))


class KiwoomRest:
    """Async Kiwoom REST client. Use as ``async with KiwoomRest(...) as rest:``.

    Args:
        base_url: one of :data:`recorder.kiwoom.limits.ENDPOINTS` (or a compatible server's URL).
        credentials: the app key pair.
        transport: the httpx transport; httpx's default network transport if None.
        clock: epoch-ns clock for token expiry and pacing.
        sleep: awaited for every backoff and pacing wait.
        refresh_margin_s: re-issue the token when it expires within this many seconds.
        rate_per_s: requests per second per api-id (§5.1: 5 in production, 1 on mock).
        max_retries: retries of one request after a rate limit, network error or HTTP 5xx.
        timeout_s: httpx timeout for each request.
        rng: jitter source for backoff.

    Attributes:
        counters: requests, pages and rate-limit answers so far (:class:`RestCounters`).
    """

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], int] = time.time_ns,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        refresh_margin_s: float = 600.0,
        rate_per_s: float = 5.0,
        max_retries: int = 5,
        timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"REST base URL must be http(s)://…, got {base_url!r}")
        if rate_per_s <= 0 or max_retries < 0:
            raise ConfigError("rate_per_s must be > 0 and max_retries >= 0")
        self._creds = credentials
        self._http = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout_s)
        self._clock = clock
        self._sleep = sleep
        self._margin_ns = int(refresh_margin_s * NS)
        self._interval_ns = int(NS / rate_per_s)
        self._max_retries = max_retries
        self._rng = rng or random.Random()
        self._token: Token | None = None
        self._token_lock = asyncio.Lock()
        self._next_slot: dict[str, int] = {}
        # When each api-id's last answers came back, as many as the limit allows a second.
        self._answered: dict[str, collections.deque[int]] = {}
        self._per_window = max(1, int(rate_per_s))
        self.counters = RestCounters()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client. The token is not revoked (call :meth:`revoke` for that)."""
        await self._http.aclose()

    # ----------------------------------------------------------------------- tokens

    async def issue_token(self) -> Token:
        """au10001: issue a new token and cache it (§2.1).

        Raises:
            AuthError: Kiwoom refused the credentials (any non-zero ``return_code`` other
                than a rate limit).
            RateLimitError, TransportError: as for :meth:`request`.
        """
        body = {
            "grant_type": "client_credentials",
            "appkey": self._creds.appkey,
            "secretkey": self._creds.secretkey,
        }
        data, _ = await self._post("/oauth2/token", "au10001", body, _headers("au10001"))
        if _return_code(data, "au10001") != 0:
            raise AuthError(f"Kiwoom refused the app key/secret key: {self._msg(data)}")
        value = data.get("token")
        if not isinstance(value, str) or not value:
            raise KiwoomError(0, "au10001 answered without a token", what="au10001")
        expires = parse_kst_stamp(data.get("expires_dt"))
        if expires is None:
            expires = self._clock() + FALLBACK_LIFETIME_NS
            log.warning(
                "token expires_dt %r unreadable; assuming 23 h", _excerpt(str(data.get("expires_dt")))
            )
        self._token = Token(value, expires)
        log.info("token issued, expires %s", format_kst(expires))
        return self._token

    async def token(self) -> str:
        """The cached token, re-issued when within ``refresh_margin_s`` of expiry."""
        async with self._token_lock:
            tok = self._token
            if tok is None or self._clock() >= tok.expires_at_ns - self._margin_ns:
                tok = await self.issue_token()
            return tok.value

    async def revoke(self) -> None:
        """au10002: revoke the cached token, if any, and forget it (§2.2).

        Raises:
            KiwoomError: Kiwoom answered with a non-zero ``return_code`` (8015, 8016).
        """
        tok, self._token = self._token, None
        if tok is None:
            return
        body = {"appkey": self._creds.appkey, "secretkey": self._creds.secretkey, "token": tok.value}
        data, _ = await self._post("/oauth2/revoke", "au10002", body, _headers("au10002"))
        code = _return_code(data, "au10002")
        if code != 0:
            raise KiwoomError(code, self._msg(data, tok.value), what="au10002")
        log.info("token revoked")

    # ----------------------------------------------------------------------- TR calls

    async def request(
        self, path: str, api_id: str, body: dict[str, Any], *, next_key: str | None = None
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One TR call: auth headers, one token re-issue on a token error (§2.4).

        Args:
            path: e.g. ``"/api/dostk/stkinfo"``.
            api_id: the TR id, e.g. ``"ka10099"``.
            body: the JSON request body.
            next_key: a continuation key from a previous answer's ``next-key`` header;
                sends ``cont-yn: Y`` and ``next-key`` (§5.1).

        Returns:
            The JSON body (``return_code`` 0) and the response headers, names lower-cased.
            Use :meth:`pages` to follow ``cont-yn``.

        Raises:
            AuthError: the token was refused again right after a re-issue.
            RateLimitError: still rate-limited after ``max_retries`` retries.
            TransportError: network failure or HTTP 5xx after ``max_retries`` retries.
            KiwoomError: any other non-zero ``return_code`` (including 20, "no data"), or a
                body that is not a JSON object.
        """
        for attempt in range(2):
            tok = await self.token()
            headers = _headers(api_id, tok, next_key)
            data, resp_headers = await self._post(path, api_id, body, headers)
            code = _return_code(data, api_id)
            if code == 0:
                return data, resp_headers
            msg = self._msg(data, tok)
            if not _is_token_error(code, msg):
                raise KiwoomError(code, msg, what=api_id)
            if attempt == 1:
                raise AuthError(f"{api_id}: Kiwoom refused a freshly issued token: {msg}")
            log.warning("%s: token refused (%s); re-issuing once", api_id, msg)
            self._drop_token(tok)
        raise AssertionError("unreachable")

    async def pages(
        self, path: str, api_id: str, body: dict[str, Any], *, max_pages: int = MAX_PAGES
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every page of a TR, following ``cont-yn: Y`` / ``next-key`` (§5.1).

        Raises:
            KiwoomError: ``cont-yn: Y`` without a ``next-key``, or more than ``max_pages``.
            Anything :meth:`request` raises.
        """
        next_key: str | None = None
        for _ in range(max_pages):
            data, headers = await self.request(path, api_id, body, next_key=next_key)
            self.counters.pages += 1
            yield data
            if headers.get("cont-yn") != "Y":
                return
            next_key = headers.get("next-key")
            if not next_key:
                raise KiwoomError("paging", "cont-yn: Y without a next-key", what=api_id)
        raise KiwoomError("paging", f"still cont-yn: Y after {max_pages} pages", what=api_id)

    async def list_symbols(self, market: str) -> list[SymbolInfo]:
        """ka10099 for ``"kospi"`` (mrkt_tp 0), ``"kosdaq"`` (10) or ``"all"`` (both) (§5.2).

        mrkt_tp 0 includes ETFs, ETNs and REITs (filter on ``market_code`` if unwanted).
        Rows keep Kiwoom's order; a code seen twice keeps its first row.

        Raises:
            ConfigError: unknown ``market``.
            KiwoomError: a malformed answer; anything :meth:`request` raises.
        """
        if market not in MARKETS:
            raise ConfigError(f"unknown market {market!r}; expected one of {', '.join(MARKETS)}")
        seen: dict[str, SymbolInfo] = {}
        for mrkt_tp in MARKETS[market]:
            async for page in self.pages(STKINFO_PATH, "ka10099", {"mrkt_tp": mrkt_tp}):
                rows = page.get("list") or []
                if not isinstance(rows, list):
                    raise KiwoomError("bad list", "ka10099 list is not an array", what="ka10099")
                for row in rows:
                    info = SymbolInfo.from_row(row)
                    seen.setdefault(info.code, info)
        return list(seen.values())

    async def tick_chart(
        self, item: str, *, max_pages: int = CHART_MAX_PAGES
    ) -> AsyncIterator[list[ChartRow]]:
        """ka10079 at ``tic_scope`` 1: every execution of ``item``, newest first, page by page (§5.3).

        Lazy: the next page is requested only when the caller asks for it, so a caller that
        has gone back far enough just stops iterating (wrap the iterator in
        :func:`contextlib.aclosing` to finish it at once). Pages hold up to 900 rows; the
        walk continues with ``next-key`` while Kiwoom answers ``cont-yn: Y``. A page may be
        empty. Before the day's first trade the first pages are the previous day's tape:
        filter on :attr:`ChartRow.ts_ns`.

        Args:
            item: the code with its venue suffix as Kiwoom takes it (``005930``, ``005930_NX``).
            max_pages: give up after this many pages.

        Raises:
            AuthError: the credentials or a freshly issued token were refused (stop at once).
            RateLimitError: still refused for the rate limit after ``max_retries`` backoffs.
            KiwoomError: a business error (an unknown code, …), a row that does not parse, rows
                not newest first, or more than ``max_pages`` pages.
            TransportError: as for :meth:`request`.
        """
        body = {"stk_cd": item, "tic_scope": "1", "upd_stkpc_tp": "1"}
        newest_allowed: int | None = None
        n = 0
        async for page in self.pages(CHART_PATH, TICK_CHART, body, max_pages=max_pages):
            n += 1
            rows = _chart_rows(page, item, n)
            for row in rows:
                if newest_allowed is not None and row.ts_ns > newest_allowed:
                    raise KiwoomError("order", f"{item} page {n}: rows are not newest first", what=TICK_CHART)
                newest_allowed = row.ts_ns
            yield rows

    # ----------------------------------------------------------------------- internals

    def _drop_token(self, used: str) -> None:
        """Forget the cached token if it is still the one Kiwoom refused (another task may
        already have replaced it)."""
        if self._token is not None and self._token.value == used:
            self._token = None

    def _msg(self, data: dict[str, Any], *extra_secrets: str) -> str:
        """``return_msg`` with every secret we know masked, in case the server echoes one."""
        text = str(data.get("return_msg", ""))
        for secret in (self._creds.appkey, self._creds.secretkey, *extra_secrets):
            if secret:
                text = text.replace(secret, mask(secret))
        return text

    async def _pace(self, api_id: str) -> None:
        """Reserve the next send slot for ``api_id`` and wait for it (§5.1: per-TR limit).

        Slots are ``1/rate_per_s`` apart; reserving before awaiting keeps concurrent
        callers in order. The server counts requests when they arrive, in any one-second
        window, and a request that took longer on the way than the next one would put two
        slots less than the interval apart at the server. So a request also waits until a
        second has passed since the answer to the request ``rate_per_s`` before it (the
        server saw that one no later than its answer came back): latency jitter never
        costs a refusal, at the price of one latency per ``rate_per_s`` requests.
        """
        now = self._clock()
        slot = max(now, self._next_slot.get(api_id, now))
        answered = self._answered.get(api_id)
        if answered is not None and len(answered) == self._per_window:
            slot = max(slot, answered[0] + NS)
        self._next_slot[api_id] = slot + self._interval_ns
        if slot > now:
            await self._sleep((slot - now) / NS)

    async def _post(
        self, path: str, api_id: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """POST with pacing. Rate limits, network errors and HTTP 5xx are retried with
        backoff, then raised; any other JSON object is returned whatever its return_code."""
        for attempt in range(self._max_retries + 1):
            try:
                return await self._attempt(path, api_id, body, headers)
            except RateLimitError as exc:
                self.counters.rate_limited += 1
                if attempt == self._max_retries:
                    msg = f"{exc.msg} (still refused after {attempt} retries with backoff)"
                    raise RateLimitError(exc.code, msg, what=api_id) from exc
                delay = backoff_delay(attempt, self._rng)
                log.warning("%s; retry %d/%d in %.2f s", exc, attempt + 1, self._max_retries, delay)
                await self._sleep(delay)
            except TransportError as exc:
                if attempt == self._max_retries:
                    raise
                delay = backoff_delay(attempt, self._rng)
                log.warning("%s; retry %d/%d in %.2f s", exc, attempt + 1, self._max_retries, delay)
                await self._sleep(delay)
        raise AssertionError("unreachable")

    async def _attempt(
        self, path: str, api_id: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One paced POST. Retryable failures raise RateLimitError or TransportError."""
        await self._pace(api_id)
        self.counters.requests += 1
        try:
            resp = await self._http.post(path, content=orjson.dumps(body), headers=headers)
        except httpx.HTTPError as exc:  # connect, read, write, timeout, protocol
            raise TransportError(f"{api_id}: {type(exc).__name__}: {exc}") from exc
        finally:  # an error too: the server may have counted the request
            answered = self._answered.setdefault(api_id, collections.deque(maxlen=self._per_window))
            answered.append(self._clock())
        status = resp.status_code
        if status >= 500:
            raise TransportError(f"{api_id}: HTTP {status}: {_excerpt(resp.text)}")
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError as exc:
            raise _bad_body(status, "not JSON", resp.text, api_id) from exc
        if not isinstance(data, dict):
            raise _bad_body(status, "not a JSON object", resp.text, api_id)
        if status == 429 or data.get("return_code") == RATE_LIMIT_CODE:  # §5.1
            raise RateLimitError(data.get("return_code", 429), self._msg(data), what=api_id)
        if status >= 400 and not data.get("return_code"):
            raise KiwoomError(f"HTTP {status}", _excerpt(resp.text), what=api_id)
        return data, {k.lower(): v for k, v in resp.headers.items()}


def _headers(api_id: str, token: str | None = None, next_key: str | None = None) -> dict[str, str]:
    """Request headers (§2.3, §5.1); continuation adds ``cont-yn: Y`` and ``next-key``."""
    headers = {"Content-Type": CONTENT_TYPE, "api-id": api_id}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    if next_key is not None:
        headers["cont-yn"] = "Y"
        headers["next-key"] = next_key
    return headers


def _bad_body(status: int, problem: str, text: str, api_id: str) -> KiwoomError:
    """The error for an unreadable body; still a rate limit if the status says so (§5.1)."""
    cls = RateLimitError if status == 429 else KiwoomError
    return cls(f"HTTP {status}", f"{problem}: {_excerpt(text)}", what=api_id)


def _return_code(data: dict[str, Any], api_id: str) -> int:
    """The body's ``return_code`` as an int; a missing one means OK (A omits the envelope)."""
    value = data.get("return_code", 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise KiwoomError("bad return_code", _excerpt(repr(value)), what=api_id) from None


def _is_token_error(code: int, msg: str) -> bool:
    """§2.4: 8005/8031/8103 as the code, or as ``[8005:…]``/``CODE=8005`` in the text."""
    return code in TOKEN_ERROR_CODES or any(int(m) in TOKEN_ERROR_CODES for m in _DETAIL_CODE.findall(msg))


def _chart_rows(page: dict[str, Any], item: str, n: int) -> list[ChartRow]:
    """The typed rows of ka10079 page ``n``; a missing list is an empty page."""
    rows = page.get("stk_tic_chart_qry")
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise KiwoomError("bad list", f"{item} page {n}: stk_tic_chart_qry is not an array", what=TICK_CHART)
    return [ChartRow.from_row(row) for row in rows]


def _unsigned(value: Any) -> int | None:
    """A price or quantity as Kiwoom writes it (``"+251000"``, ``" 0"``, ``"-35"``) → its
    magnitude; anything else → None (§4.3: the sign is a direction, not part of the value)."""
    if not isinstance(value, str):
        return None
    digits = value.strip().removeprefix("+").removeprefix("-")
    return int(digits) if digits.isascii() and digits.isdigit() else None


def _int_or_none(value: Any) -> int | None:
    """Zero-padded numeric text ("00136000") → int; empty or garbage → None."""
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _excerpt(text: str, limit: int = 80) -> str:
    """Whitespace collapsed and cut to ``limit`` characters, for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
