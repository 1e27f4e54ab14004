"""The REST half of the local venue: tokens (au10001/au10002), ka10099 and ka10079 (protocol notes §2, §5).

Business errors come back as HTTP 200 with a non-zero ``return_code`` and a
``return_msg`` embedding ``[NNNN:text]`` (§5.1); only the rate limit uses HTTP 429.
Texts quoted in the protocol note are used verbatim; the others are marked [GUESS].

The tick chart (ka10079, §5.3) is served from the feed's trade tape
(:class:`~recorder.sim.tape.TradeTape`): every execution the market made, sent to a client
or not, newest first, ``chart_page_rows`` rows a page. Its ``next-key`` counts from the
*oldest* trade, so trades made while a client walks back do not shift the later pages.

Nothing here logs an app key, a secret key or a token (docs/architecture.md, invariant 6).
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from recorder.kiwoom.time import NS, format_kst_stamp
from recorder.sim.market import sign_code, signed, signed_price

if TYPE_CHECKING:
    from recorder.sim.tape import TradeTape
    from recorder.sim.venue import Feed, VenueConfig, VenueStats

log = logging.getLogger(__name__)

JSON_TYPE = "application/json;charset=UTF-8"
OK_MSG = "정상적으로 처리되었습니다"

# §2.4: bad or expired token on REST.
BAD_TOKEN = (3, "인증에 실패했습니다[8005:Token이 유효하지 않습니다]")
NO_AUTH_HEADER = (2, "입력 값 오류입니다[1513:Http Header에 authorization 필드가 설정되어 있어야 합니다]")
# The texts below are [GUESS]: the codes are K-SPEC's, the wording is ours.
BAD_AUTH_FORMAT = (2, "입력 값 오류입니다[1514:Http Header의 authorization 필드 형식이 올바르지 않습니다]")
BAD_CREDENTIALS = (3, "인증에 실패했습니다[8002:App Key와 Secret Key 검증에 실패했습니다]")
NO_GRANT_TYPE = (2, "입력 값 오류입니다[8011:grant_type이 입력되지 않았습니다]")
BAD_GRANT_TYPE = (2, "입력 값 오류입니다[8012:grant_type이 올바르지 않습니다]")
NO_KEYS = (2, "입력 값 오류입니다[8020:appkey 또는 secretkey가 입력되지 않았습니다]")
NO_TOKEN = (2, "입력 값 오류입니다[8016:token이 입력되지 않았습니다]")
REVOKE_FAILED = (3, "인증에 실패했습니다[8015:Token 폐기에 실패했습니다]")
BAD_BODY = (2, "입력 값 오류입니다[1511:요청 본문이 올바른 JSON이 아닙니다]")
BAD_API_ID = (2, "입력 값 오류입니다[1504:해당 URI에서는 지원하는 API ID가 아닙니다]")
BAD_MRKT_TP = (2, "입력 값 오류입니다[1511:필수 입력 값(mrkt_tp)이 올바르지 않습니다]")
BAD_NEXT_KEY = (2, "입력 값 오류입니다[1511:next-key 값이 올바르지 않습니다]")
# ka10079 refusals (§5.3): neither the codes nor the texts were measured [GUESS].
BAD_STK_CD = (2, "입력 값 오류입니다[1511:필수 입력 값(stk_cd)이 올바르지 않습니다]")
UNKNOWN_STK_CD = (2, "입력 값 오류입니다[1902:종목 정보가 없습니다]")
# Kiwoom also serves tic_scope 3, 5, 10 and 30 (§5.3); the venue serves one row per execution only.
BAD_TIC_SCOPE = (2, "입력 값 오류입니다[1517:지원하지 않는 tic_scope 값입니다]")

CHART_API_ID = "ka10079"


@dataclass(slots=True)
class _Token:
    appkey: str
    expires_ns: int
    revoked: bool = False


class TokenStore:
    """Tokens the venue issued; both REST and the WebSocket LOGIN check against it.

    Args:
        clock: epoch-ns clock deciding expiry.
        lifetime_s: token lifetime (§2.1: about 24 h).
        revoke_previous: issuing a token invalidates the app key's earlier ones (H-PLAN, §2.1).
    """

    def __init__(self, clock: Callable[[], int], lifetime_s: float, revoke_previous: bool) -> None:
        self._clock = clock
        self._lifetime_ns = int(lifetime_s * NS)
        self._revoke_previous = revoke_previous
        self._tokens: dict[str, _Token] = {}

    def issued(self) -> list[str]:
        """Every token issued so far (tests grep outputs for them: none may leak)."""
        return list(self._tokens)

    def issue(self, appkey: str) -> tuple[str, int]:
        """A new random token for ``appkey`` and its expiry (epoch ns)."""
        if self._revoke_previous:
            for tok in self._tokens.values():
                if tok.appkey == appkey:
                    tok.revoked = True
        token = secrets.token_urlsafe(64)
        expires = self._clock() + self._lifetime_ns
        self._tokens[token] = _Token(appkey, expires)
        return token, expires

    def appkey_of(self, token: Any) -> str | None:
        """The app key a valid (issued, unrevoked, unexpired) token belongs to, else None."""
        tok = self._tokens.get(token) if isinstance(token, str) else None
        if tok is None or tok.revoked or self._clock() >= tok.expires_ns:
            return None
        return tok.appkey

    def revoke(self, token: str) -> bool:
        """Revoke ``token``; False if it was unknown or already unusable."""
        if self.appkey_of(token) is None:
            return False
        self._tokens[token].revoked = True
        return True


class RateLimiter:
    """At most ``limit`` calls per key in any one-second window of the venue clock (§5.1)."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._hits: dict[Hashable, deque[int]] = {}

    def allow(self, key: Hashable, limit: int) -> bool:
        """Record a call under ``key`` and say whether it is within the limit.

        Refused calls are not recorded, so a client that backs off recovers within 1 s.
        """
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - NS:
            hits.popleft()
        if len(hits) >= limit:
            return False
        hits.append(now)
        return True


def _reply(
    code: int,
    msg: str,
    extra: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body = {**(extra or {}), "return_code": code, "return_msg": msg}
    return web.Response(
        status=status, body=orjson.dumps(body), headers={"Content-Type": JSON_TYPE, **(headers or {})}
    )


def _error(err: tuple[int, str]) -> web.Response:
    return _reply(*err)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


class RestApi:
    """aiohttp handlers for ``/oauth2/token``, ``/oauth2/revoke``, ``/api/dostk/stkinfo``
    (ka10099) and ``/api/dostk/chart`` (ka10079)."""

    def __init__(
        self,
        config: VenueConfig,
        tokens: TokenStore,
        feed: Feed,
        stats: VenueStats,
        clock: Callable[[], int],
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._feed = feed
        self._stats = stats
        self._limiter = RateLimiter(clock)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/oauth2/token", self.token),
            web.post("/oauth2/revoke", self.revoke),
            web.post("/api/dostk/stkinfo", self.stkinfo),
            web.post("/api/dostk/chart", self.chart),
        ]

    @property
    def _rate(self) -> int:
        # §1: the mock server allows 1 query per second, production 5 per (key, api-id).
        return 1 if self._config.mock_mode else self._config.rest_rate_limit

    def _throttled(self, key: str, api_id: str) -> web.Response | None:
        """HTTP 429 with return_code 5 once (key, api-id) exceeds the rate (§5.1)."""
        if self._limiter.allow((key, api_id), self._rate):
            return None
        self._stats.rest_throttled += 1
        msg = (
            "허용된 요청 개수를 초과하였습니다[1700:허용된 API 요청 개수를 초과하였습니다. "
            f"유량={self._rate}, API ID={api_id}]"
        )
        return _reply(5, msg, status=429)

    def _check_keys(self, body: dict[str, Any]) -> tuple[int, str] | None:
        appkey, secretkey = body.get("appkey"), body.get("secretkey")
        if not isinstance(appkey, str) or not isinstance(secretkey, str) or not appkey or not secretkey:
            return NO_KEYS
        cfg = self._config
        if cfg.keys:
            return None if dict(cfg.keys).get(appkey) == secretkey else BAD_CREDENTIALS
        if cfg.appkey is not None and appkey != cfg.appkey:
            return BAD_CREDENTIALS
        if cfg.secretkey is not None and secretkey != cfg.secretkey:
            return BAD_CREDENTIALS
        return None

    async def token(self, request: web.Request) -> web.Response:
        """au10001 (§2.1): credentials in, a bearer token with a KST ``expires_dt`` out."""
        self._stats.rest_requests += 1
        body = await _json_body(request)
        if body is None:
            return _error(BAD_BODY)
        if "grant_type" not in body:
            return _error(NO_GRANT_TYPE)
        if body["grant_type"] != "client_credentials":
            return _error(BAD_GRANT_TYPE)
        problem = self._check_keys(body)
        if problem:
            log.info("au10001 refused: %s", problem[1])
            return _error(problem)
        if limited := self._throttled(body["appkey"], "au10001"):
            return limited
        token, expires = self._tokens.issue(body["appkey"])
        self._stats.tokens_issued += 1
        extra = {"expires_dt": format_kst_stamp(expires), "token_type": "bearer", "token": token}
        return _reply(0, OK_MSG, extra)

    async def revoke(self, request: web.Request) -> web.Response:
        """au10002 (§2.2): revoke a token; it no longer works on REST or for LOGIN."""
        self._stats.rest_requests += 1
        body = await _json_body(request)
        if body is None:
            return _error(BAD_BODY)
        problem = self._check_keys(body)
        if problem:
            return _error(problem)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            return _error(NO_TOKEN)
        if limited := self._throttled(body["appkey"], "au10002"):
            return limited
        if not self._tokens.revoke(token):
            return _error(REVOKE_FAILED)
        return _reply(0, OK_MSG)

    def _authorize(self, request: web.Request) -> tuple[str | None, tuple[int, str] | None]:
        """§2.3/§2.4: ``authorization: Bearer <token>``; returns (token, error)."""
        header = request.headers.get("authorization")
        if header is None:
            return None, NO_AUTH_HEADER
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, BAD_AUTH_FORMAT
        token = token.strip()
        if self._tokens.appkey_of(token) is None:
            return None, BAD_TOKEN
        return token, None

    async def stkinfo(self, request: web.Request) -> web.Response:
        """``/api/dostk/stkinfo``; only api-id ka10099 (§5.2), paged when configured."""
        self._stats.rest_requests += 1
        token, problem = self._authorize(request)
        if problem or token is None:
            return _error(problem or BAD_TOKEN)
        api_id = request.headers.get("api-id", "")
        if limited := self._throttled(token, api_id):
            return limited
        if api_id != "ka10099":
            return _error(BAD_API_ID)
        body = await _json_body(request)
        mrkt_tp = body.get("mrkt_tp") if body is not None else None
        if not isinstance(mrkt_tp, str) or not mrkt_tp:
            return _error(BAD_MRKT_TP)
        rows = [r for r in self._feed.symbols_info() if r.get("marketCode") == mrkt_tp]
        return self._page(request, rows, api_id)

    def _page(self, request: web.Request, rows: list[dict[str, Any]], api_id: str) -> web.Response:
        """§5.1 paging: ``cont-yn: Y`` plus an opaque ``next-key`` while rows remain."""
        size = self._config.ka10099_page_size
        start = 0
        if request.headers.get("cont-yn") == "Y":
            key = request.headers.get("next-key", "")
            if not key.isdigit() or int(key) > len(rows):
                return _error(BAD_NEXT_KEY)
            start = int(key)
        end = len(rows) if size is None else min(len(rows), start + size)
        more = end < len(rows)
        headers = {"cont-yn": "Y" if more else "N", "next-key": str(end) if more else "", "api-id": api_id}
        return _reply(0, OK_MSG, {"list": rows[start:end]}, headers=headers)

    async def chart(self, request: web.Request) -> web.Response:
        """``/api/dostk/chart``; only api-id ka10079 with ``tic_scope`` 1 (§5.3).

        Authorised like the other TRs (§2.4), rate-limited per (app key, api-id) (§5.1).
        """
        self._stats.rest_requests += 1
        self._stats.chart_requests += 1
        token, problem = self._authorize(request)
        appkey = self._tokens.appkey_of(token)
        if problem or appkey is None:
            return _error(problem or BAD_TOKEN)
        api_id = request.headers.get("api-id", "")
        if limited := self._throttled(appkey, api_id):
            self._stats.chart_throttled += 1
            return limited
        if api_id != CHART_API_ID:
            return _error(BAD_API_ID)
        body = await _json_body(request)
        if body is None:
            return _error(BAD_BODY)
        stk_cd = body.get("stk_cd")
        if not isinstance(stk_cd, str) or not stk_cd:
            return _error(BAD_STK_CD)
        if body.get("tic_scope") != "1":
            return _error(BAD_TIC_SCOPE)
        tick_tape = getattr(self._feed, "tick_tape", None)  # FeedHooks, optional
        if tick_tape is None:  # a recorded feed keeps no executions beyond what it replays
            return _error(BAD_API_ID)
        tape: TradeTape | None = tick_tape(stk_cd)
        if tape is None:
            return _error(UNKNOWN_STK_CD)
        return self._chart_page(request, tape, stk_cd)

    def _chart_page(self, request: web.Request, tape: TradeTape, stk_cd: str) -> web.Response:
        """One page of the tape, newest first; ``next-key`` is the number of older trades left.

        Counting from the oldest end keeps a walk stable while the market trades on: a new
        trade only ever lands above the first page.
        """
        end = len(tape)
        if request.headers.get("cont-yn") == "Y":
            key = request.headers.get("next-key", "")
            if not key.isascii() or not key.isdigit() or not 0 < int(key) <= end:
                return _error(BAD_NEXT_KEY)
            end = int(key)
        start = max(0, end - self._config.chart_page_rows)
        rows = [_chart_row(tape, i) for i in range(end - 1, start - 1, -1)]
        self._stats.chart_pages += 1
        more = start > 0
        headers = {"cont-yn": "Y" if more else "N", "next-key": str(start) if more else ""}
        headers["api-id"] = CHART_API_ID
        # last_tic_cnt: the executions in the newest row, always 1 at tic_scope 1 [GUESS].
        extra = {"stk_cd": stk_cd, "last_tic_cnt": "1" if rows else "", "stk_tic_chart_qry": rows}
        return _reply(0, OK_MSG, extra, headers=headers)


def _chart_row(tape: TradeTape, i: int) -> dict[str, str]:
    """Trade ``i`` of ``tape`` as a ka10079 row (§5.3): signed price, open/high/low equal to it."""
    sec, price, qty = tape.trade(i)
    prev = tape.prev_close
    cur = signed_price(price, prev)
    return {
        "cur_prc": cur,
        "trde_qty": str(qty),
        "cntr_tm": format_kst_stamp(sec * NS),
        "open_pric": cur,
        "high_pric": cur,
        "low_pric": cur,
        "pred_pre": signed(price - prev),
        "pred_pre_sig": sign_code(price, prev),
    }
