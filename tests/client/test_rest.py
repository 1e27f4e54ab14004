"""Tests for recorder.client.rest against a fake Kiwoom REST server (an httpx.MockTransport handler).

No network, no patching: the fake server, a fake clock and a fake sleep go in through
KiwoomRest's constructor. The fake sleep advances the fake clock, so pacing and backoff are
measured in fake seconds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import random
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from recorder.client.credentials import Credentials, load_credentials, mask
from recorder.client.rest import (
    STKINFO_PATH,
    KiwoomRest,
    SymbolInfo,
    Token,
    backoff_delay,
)
from recorder.errors import AuthError, ConfigError, KiwoomError, RateLimitError, TransportError
from recorder.kiwoom.time import KST, NS, format_kst
from recorder.kiwoom.time import parse_kst_stamp as parse_expires_dt

T = TypeVar("T")

APPKEY = "PSabAPPKEYxxxxxxxxxxxxxxxxxxxxxxxxxx0001"
SECRET = "SECRETkeyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy0002"
CREDS = Credentials(APPKEY, SECRET)
BASE = "https://api.kiwoom.test"
DAY_S = 86_400
# 2026-11-24 08:37:13 KST
T0_NS = int(dt.datetime(2026, 11, 24, 8, 37, 13, tzinfo=KST).timestamp()) * NS

RATE_MSG = (
    "허용된 요청 개수를 초과하였습니다[1700:허용된 API 요청 개수를 초과하였습니다. 유량=5, API ID=ka10099]"
)
TOKEN_MSG = "인증에 실패했습니다[8005:Token이 유효하지 않습니다]"


def row(code: str, name: str, market: str = "0", **extra: str) -> dict[str, str]:
    base = {
        "code": code,
        "name": name,
        "listCount": "0000000026034239",
        "auditInfo": "정상",
        "regDay": "19750611",
        "lastPrice": "00136000",
        "state": "증거금20%|담보대출|신용가능",
        "marketCode": market,
        "marketName": "거래소" if market == "0" else "코스닥",
        "upName": "전기전자",
        "upSizeName": "대형주",
        "companyClassName": "",
        "orderWarning": "0",
        "nxtEnable": "Y",
        "kind": "A",
    }
    return base | extra


KOSPI = [row(f"00{i:04d}", f"KOSPI {i}") for i in range(1, 6)]
KOSDAQ = [row("000003", "listed on both"), *[row(f"10{i:04d}", f"KOSDAQ {i}", "10") for i in range(1, 4)]]


class FakeTime:
    """A clock that only moves when told to, or when something sleeps on it."""

    def __init__(self, start_ns: int = T0_NS) -> None:
        self.now_ns = start_ns
        self.sleeps: list[float] = []

    def clock(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_ns += round(seconds * NS)

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * NS)


class FakeKiwoom:
    """A small Kiwoom REST (§2, §5, §8.2): tokens, ka10099 with optional paging, faults.

    ``faults`` is consumed one entry per TR request: "429" (HTTP 429, return_code 5),
    "rc5" (HTTP 200, return_code 5), "8005" (invalidate all tokens, then refuse),
    "net" / "timeout" (raise), "500", "html" (non-JSON body), "rc2" (business error).
    """

    def __init__(self, ft: FakeTime, *, lifetime_s: int = DAY_S) -> None:
        self.ft = ft
        self.lifetime_s = lifetime_s
        self.valid: set[str] = set()
        self.issued = 0
        self.revoked: list[str] = []
        self.tr_requests: list[httpx.Request] = []
        self.tr_times: list[int] = []
        self.markets = {"0": KOSPI, "10": KOSDAQ}
        self.page_size: int | None = None
        self.endless = False
        self.faults: list[str] = []
        self.expires_dt: str | None = None  # override to send garbage

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if request.url.path == "/oauth2/token":
            return self.issue(body)
        if request.url.path == "/oauth2/revoke":
            self.revoked.append(body["token"])
            self.valid.discard(body["token"])
            return reply({"return_code": 0, "return_msg": "정상적으로 처리되었습니다"})
        self.tr_requests.append(request)
        self.tr_times.append(self.ft.now_ns)
        if self.faults:
            return self.fault(self.faults.pop(0), request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid:
            return reply({"return_code": 3, "return_msg": TOKEN_MSG})
        if request.url.path == STKINFO_PATH and request.headers["api-id"] == "ka10099":
            return self.stkinfo(request, body)
        return reply({"return_code": 0, "return_msg": "OK", "echo": body})

    def issue(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("appkey") != APPKEY or body.get("secretkey") != SECRET:
            # Echo the key back, to check that the client masks whatever the server says.
            msg = f"인증에 실패했습니다[8001:App Key({body.get('appkey')}) 검증에 실패했습니다]"
            return reply({"return_code": 3, "return_msg": msg})
        self.issued += 1
        token = f"TOKEN{self.issued:04d}" + "x" * 40
        self.valid = {token}  # H-PLAN: a new token invalidates the previous one (§2.1)
        expires = dt.datetime.fromtimestamp(self.ft.now_ns // NS + self.lifetime_s, KST)
        expires_dt = self.expires_dt if self.expires_dt is not None else expires.strftime("%Y%m%d%H%M%S")
        return reply({"expires_dt": expires_dt, "token_type": "bearer", "token": token, "return_code": 0})

    def stkinfo(self, request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        rows = self.markets[body["mrkt_tp"]]
        if self.endless:
            return reply({"return_code": 0, "list": rows[:1]}, {"cont-yn": "Y", "next-key": "again"})
        if self.page_size is None:
            return reply({"return_code": 0, "list": rows}, {"cont-yn": "N"})
        start = int(request.headers.get("next-key", "0")) if request.headers.get("cont-yn") == "Y" else 0
        end = start + self.page_size
        more = end < len(rows)
        headers = {"cont-yn": "Y" if more else "N", "next-key": str(end) if more else ""}
        return reply({"return_code": 0, "list": rows[start:end]}, headers)

    def fault(self, kind: str, request: httpx.Request) -> httpx.Response:
        if kind == "net":
            raise httpx.ConnectError("connection refused", request=request)
        if kind == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if kind == "8005":
            self.valid.clear()
            return reply({"return_code": 3, "return_msg": TOKEN_MSG})
        responses = {
            "429": (429, orjson.dumps({"return_code": 5, "return_msg": RATE_MSG})),
            "rc5": (200, orjson.dumps({"return_code": 5, "return_msg": RATE_MSG})),
            "500": (500, b"Internal Server Error"),
            "429text": (429, b"Too Many Requests"),
            "html": (200, b"<html><body>Gateway says hello</body></html>"),
            "rc2": (200, orjson.dumps({"return_code": 2, "return_msg": "입력 값 오류입니다[1511:필수]"})),
        }
        status, content = responses[kind]
        return httpx.Response(status, content=content)


def reply(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, content=orjson.dumps(body), headers={"api-id": "x", **(headers or {})})


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make(fake: FakeKiwoom, creds: Credentials = CREDS, **kw: Any) -> KiwoomRest:
    kw.setdefault("rate_per_s", 1000.0)
    return KiwoomRest(
        BASE,
        creds,
        transport=httpx.MockTransport(fake),
        clock=fake.ft.clock,
        sleep=fake.ft.sleep,
        rng=random.Random(7),
        **kw,
    )


@pytest.fixture
def fake() -> FakeKiwoom:
    return FakeKiwoom(FakeTime())


# --------------------------------------------------------------------------- tokens


def test_issue_token_and_cache(fake: FakeKiwoom) -> None:
    async def scenario() -> tuple[Token, str, str]:
        async with make(fake) as rest:
            tok = await rest.issue_token()
            return tok, await rest.token(), await rest.token()

    tok, first, second = run(scenario())
    assert fake.issued == 1
    assert first == second == tok.value
    assert tok.expires_at_ns == T0_NS + DAY_S * NS


def test_token_reissued_within_refresh_margin(fake: FakeKiwoom) -> None:
    async def scenario() -> list[str]:
        async with make(fake, refresh_margin_s=600) as rest:
            seen = [await rest.token()]
            fake.ft.advance(DAY_S - 601)
            seen.append(await rest.token())
            fake.ft.advance(2)  # now 599 s before expiry
            seen.append(await rest.token())
            return seen

    seen = run(scenario())
    assert seen[0] == seen[1] != seen[2]
    assert fake.issued == 2


def test_garbage_expires_dt_assumes_23_hours(fake: FakeKiwoom, caplog: pytest.LogCaptureFixture) -> None:
    fake.expires_dt = "tomorrow-ish"

    async def scenario() -> Token:
        async with make(fake) as rest:
            return await rest.issue_token()

    with caplog.at_level(logging.WARNING, logger="recorder.client.rest"):
        tok = run(scenario())
    assert tok.expires_at_ns == T0_NS + 23 * 3600 * NS
    assert "assuming 23 h" in caplog.text


@pytest.mark.parametrize(
    "creds",
    [Credentials(APPKEY, "wrong-secret-value-0123456789"), Credentials("PSabWRONGKEY000000000000", SECRET)],
)
def test_wrong_credentials_raise_auth_error_without_secrets(
    fake: FakeKiwoom, creds: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with make(fake, creds) as rest:
            await rest.token()

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as info:
        run(scenario())
    text = str(info.value) + repr(info.value) + caplog.text
    assert "Kiwoom refused the app key/secret key" in str(info.value)
    assert "8001" in str(info.value)
    for secret in (creds.appkey, creds.secretkey, APPKEY, SECRET):
        assert secret not in text
    assert fake.issued == 0


def test_revoke_sends_token_and_forgets_it(fake: FakeKiwoom) -> None:
    async def scenario() -> tuple[str, str]:
        async with make(fake) as rest:
            first = await rest.token()
            await rest.revoke()
            await rest.revoke()  # nothing cached: no call
            return first, await rest.token()

    first, second = run(scenario())
    assert fake.revoked == [first]
    assert second != first


# --------------------------------------------------------------------------- TR calls


def test_request_sends_auth_headers(fake: FakeKiwoom) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, str], str]:
        async with make(fake) as rest:
            body, headers = await rest.request("/api/dostk/mrkcond", "ka10004", {"stk_cd": "005930"})
            return body, headers, await rest.token()

    body, headers, token = run(scenario())
    assert body["echo"] == {"stk_cd": "005930"}
    assert headers["api-id"] == "x"
    sent = fake.tr_requests[0].headers
    assert sent["authorization"] == f"Bearer {token}"
    assert sent["api-id"] == "ka10004"
    assert sent["content-type"] == "application/json;charset=UTF-8"
    assert "cont-yn" not in sent and "next-key" not in sent


def test_list_symbols_single_page(fake: FakeKiwoom) -> None:
    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("kospi")

    symbols = run(scenario())
    assert [s.code for s in symbols] == [r["code"] for r in KOSPI]
    first = symbols[0]
    assert first.last_price == 136000 and first.list_count == 26034239
    assert first.nxt_enable is True and first.market_code == "0" and first.market_name == "거래소"
    assert first.state_flags == ("증거금20%", "담보대출", "신용가능")
    assert first.raw == KOSPI[0]
    assert orjson.loads(fake.tr_requests[0].content) == {"mrkt_tp": "0"}


def test_symbol_info_lenient_fields() -> None:
    info = SymbolInfo.from_row(row("900110", "x", "10", lastPrice="", nxtEnable="N", listCount="abc"))
    assert info.last_price is None and info.list_count is None and info.nxt_enable is False
    with pytest.raises(KiwoomError):
        SymbolInfo.from_row({"name": "no code"})


def test_list_symbols_follows_continuation(fake: FakeKiwoom) -> None:
    fake.page_size = 2

    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("kospi")

    symbols = run(scenario())
    assert [s.code for s in symbols] == [r["code"] for r in KOSPI]
    sent = [(r.headers.get("cont-yn"), r.headers.get("next-key")) for r in fake.tr_requests]
    assert sent == [(None, None), ("Y", "2"), ("Y", "4")]
    assert all(orjson.loads(r.content) == {"mrkt_tp": "0"} for r in fake.tr_requests)


def test_list_symbols_all_merges_markets_in_order(fake: FakeKiwoom) -> None:
    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("all")

    symbols = run(scenario())
    assert [s.code for s in symbols] == [r["code"] for r in KOSPI] + ["100001", "100002", "100003"]
    assert symbols[2].name == "KOSPI 3"  # a code in both lists keeps its first row
    assert [orjson.loads(r.content)["mrkt_tp"] for r in fake.tr_requests] == ["0", "10"]


def test_list_symbols_unknown_market(fake: FakeKiwoom) -> None:
    async def scenario() -> None:
        async with make(fake) as rest:
            await rest.list_symbols("nasdaq")

    with pytest.raises(ConfigError, match="nasdaq"):
        run(scenario())


def test_endless_continuation_is_cut_off(fake: FakeKiwoom) -> None:
    fake.endless = True

    async def scenario() -> int:
        n = 0
        async with make(fake) as rest:
            async for _ in rest.pages(STKINFO_PATH, "ka10099", {"mrkt_tp": "0"}, max_pages=5):
                n += 1
        return n

    with pytest.raises(KiwoomError, match="after 5 pages"):
        run(scenario())
    assert len(fake.tr_requests) == 5


@pytest.mark.parametrize("fault", ["429", "rc5", "429text"])
def test_rate_limit_then_success_backs_off(fake: FakeKiwoom, fault: str) -> None:
    fake.faults = [fault] * 3

    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("kosdaq")

    assert len(run(scenario())) == len(KOSDAQ)
    delays = fake.ft.sleeps
    assert len(delays) == 3
    assert 0.25 <= delays[0] < delays[1] < delays[2] <= 8.0
    assert len(fake.tr_requests) == 4


def test_persistent_rate_limit_raises(fake: FakeKiwoom) -> None:
    fake.faults = ["429"] * 10

    async def scenario() -> None:
        async with make(fake, max_retries=3) as rest:
            await rest.list_symbols("kospi")

    with pytest.raises(RateLimitError) as info:
        run(scenario())
    assert info.value.code == 5 and "1700" in str(info.value)
    assert len(fake.tr_requests) == 4
    assert len(fake.ft.sleeps) == 3


def test_backoff_delay_grows_to_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, rng) for n in range(10)]
    assert all(a < b for a, b in itertools.pairwise(delays[:6]))
    assert delays[-1] == 8.0 and 0.25 <= delays[0] <= 0.3125


def test_token_error_reissues_once_and_retries(fake: FakeKiwoom) -> None:
    fake.faults = ["8005"]

    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("kospi")

    assert len(run(scenario())) == len(KOSPI)
    assert fake.issued == 2
    tokens = [r.headers["authorization"] for r in fake.tr_requests]
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_token_error_twice_is_auth_error(fake: FakeKiwoom, caplog: pytest.LogCaptureFixture) -> None:
    fake.faults = ["8005", "8005"]

    async def scenario() -> None:
        async with make(fake) as rest:
            await rest.list_symbols("kospi")

    with caplog.at_level(logging.DEBUG), pytest.raises(AuthError, match="8005"):
        run(scenario())
    assert fake.issued == 2
    for secret in (APPKEY, SECRET, "TOKEN0001", "TOKEN0002"):
        assert secret not in caplog.text
    assert "token issued, expires 2026-11-25 08:37:13 KST" in caplog.text


@pytest.mark.parametrize("fault", ["net", "timeout"])
def test_network_error_retried_then_transport_error(fake: FakeKiwoom, fault: str) -> None:
    fake.faults = [fault] * 10

    async def scenario() -> None:
        async with make(fake, max_retries=2) as rest:
            await rest.request("/api/dostk/stkinfo", "ka10099", {"mrkt_tp": "0"})

    with pytest.raises(TransportError) as info:
        run(scenario())
    assert isinstance(info.value.__cause__, httpx.TransportError)
    assert len(fake.tr_requests) == 3
    assert len(fake.ft.sleeps) == 2


def test_network_error_once_then_success(fake: FakeKiwoom) -> None:
    fake.faults = ["net"]

    async def scenario() -> list[SymbolInfo]:
        async with make(fake) as rest:
            return await rest.list_symbols("kospi")

    assert len(run(scenario())) == len(KOSPI)
    assert len(fake.tr_requests) == 2


def test_server_error_retried_then_transport_error(fake: FakeKiwoom) -> None:
    fake.faults = ["500"] * 10

    async def scenario() -> None:
        async with make(fake, max_retries=2) as rest:
            await rest.list_symbols("kospi")

    with pytest.raises(TransportError, match="HTTP 500"):
        run(scenario())
    assert len(fake.tr_requests) == 3


def test_non_json_body_is_kiwoom_error_with_excerpt(fake: FakeKiwoom) -> None:
    fake.faults = ["html"]

    async def scenario() -> None:
        async with make(fake) as rest:
            await rest.list_symbols("kospi")

    with pytest.raises(KiwoomError, match="not JSON: <html><body>Gateway"):
        run(scenario())
    assert len(fake.tr_requests) == 1


def test_business_error_is_kiwoom_error(fake: FakeKiwoom) -> None:
    fake.faults = ["rc2"]

    async def scenario() -> None:
        async with make(fake) as rest:
            await rest.request("/api/dostk/stkinfo", "ka10100", {"stk_cd": ""})

    with pytest.raises(KiwoomError) as info:
        run(scenario())
    assert info.value.code == 2 and "1511" in info.value.msg
    assert not isinstance(info.value, RateLimitError)


def test_client_side_pacing_per_api_id(fake: FakeKiwoom) -> None:
    async def scenario() -> None:
        async with make(fake, rate_per_s=5.0) as rest:
            for _ in range(12):
                await rest.request(STKINFO_PATH, "ka10099", {"mrkt_tp": "0"})
            await rest.request("/api/dostk/mrkcond", "ka10004", {"stk_cd": "005930"})

    run(scenario())
    assert sum(fake.ft.sleeps) >= 1.8
    assert sum(fake.ft.sleeps) == pytest.approx(2.2)
    times = fake.tr_times[:12]
    assert all(b - a >= NS // 5 for a, b in itertools.pairwise(times))
    assert fake.tr_times[12] == fake.tr_times[11]  # another api-id is not held back


def test_concurrent_calls_issue_one_token(fake: FakeKiwoom) -> None:
    async def scenario() -> None:
        async with make(fake) as rest:
            await asyncio.gather(*(rest.request("/p", "ka10004", {"n": n}) for n in range(5)))

    run(scenario())
    assert fake.issued == 1


def test_bad_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError):
        KiwoomRest("api.kiwoom.com", CREDS)


# --------------------------------------------------------------------------- credentials, reprs


NO_CONFIG = Path("/nonexistent/kiwoom-recorder/credentials")  # hermetic: never the real ~/.config


def test_load_credentials_from_env(tmp_path: Path) -> None:
    env = {"KIWOOM_APPKEY": APPKEY, "KIWOOM_SECRETKEY": SECRET}
    assert load_credentials(env, tmp_path / "absent.env", NO_CONFIG) == CREDS


def test_load_credentials_from_dotenv(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"KIWOOM_APPKEY={APPKEY}\nKIWOOM_SECRETKEY='{SECRET}'\n")
    path.chmod(0o600)
    assert load_credentials({}, path, NO_CONFIG) == CREDS
    assert (
        load_credentials({"KIWOOM_APPKEY": "PSabFROMENV000000"}, path, NO_CONFIG).appkey
        == "PSabFROMENV000000"
    )
    assert (
        load_credentials({"KIWOOM_APPKEY": " "}, path, NO_CONFIG) == CREDS
    )  # blank in the env: use the file


def test_load_credentials_missing_names_variable(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"KIWOOM_APPKEY={APPKEY}\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="KIWOOM_SECRETKEY") as info:
        load_credentials({"KIWOOM_SECRETKEY": "  "}, path, NO_CONFIG)
    assert APPKEY not in str(info.value)


def test_config_file_is_the_last_resort_and_must_be_private(tmp_path: Path) -> None:
    cfg = tmp_path / "credentials"
    cfg.write_text(f"KIWOOM_APPKEY={APPKEY}\nKIWOOM_SECRETKEY={SECRET}\n")
    cfg.chmod(0o600)
    assert load_credentials({}, tmp_path / "absent.env", cfg) == CREDS
    assert load_credentials({"KIWOOM_RECORDER_CONFIG": str(cfg)}, tmp_path / "absent.env") == CREDS
    cfg.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_credentials({}, tmp_path / "absent.env", cfg)


def test_dotenv_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"KIWOOM_APPKEY={APPKEY}\nKIWOOM_SECRETKEY={SECRET}\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600") as info:
        load_credentials({}, path, NO_CONFIG)
    assert SECRET not in str(info.value) and APPKEY not in str(info.value)
    # Credentials from the environment do not need the file at all.
    assert load_credentials({"KIWOOM_APPKEY": APPKEY, "KIWOOM_SECRETKEY": SECRET}, path, NO_CONFIG) == CREDS


def test_reprs_are_masked() -> None:
    assert repr(CREDS) == "Credentials(appkey='PSab…(masked)', secretkey='***')"
    assert SECRET not in repr(CREDS) and SECRET not in str(CREDS)
    tok = Token("WQJCwyqInphKnR3bSRtB9NE1lv", T0_NS)
    assert "WQJCwyqInphKnR3bSRtB9NE1lv" not in repr(tok)
    assert repr(tok) == "Token(value='WQJC…', expires='2026-11-24 08:37:13 KST')"
    assert mask("short") == "***"


# --------------------------------------------------------------------------- expires_dt


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_FIRST = dt.datetime(1000, 1, 1, tzinfo=KST)  # strftime pads %Y only from year 1000
_LAST = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=KST)


@given(st.integers((_FIRST - _EPOCH) // dt.timedelta(seconds=1), (_LAST - _EPOCH) // dt.timedelta(seconds=1)))
def test_expires_dt_round_trip(epoch_s: int) -> None:
    when = (_EPOCH + dt.timedelta(seconds=epoch_s)).astimezone(KST)
    text = f"{when.year:04d}{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}{when.second:02d}"
    assert text == when.strftime("%Y%m%d%H%M%S")
    assert parse_expires_dt(text) == epoch_s * NS
    assert format_kst(epoch_s * NS) == when.strftime("%Y-%m-%d %H:%M:%S KST")


@given(st.one_of(st.text(max_size=20), st.none(), st.integers()))
def test_expires_dt_garbage_is_none_not_an_exception(value: Any) -> None:
    result = parse_expires_dt(value)
    assert result is None or (isinstance(value, str) and len(value) == 14)


def test_expires_dt_rejects_impossible_dates() -> None:
    assert parse_expires_dt("20241307083713") is None
    assert parse_expires_dt("2024110708371") is None
    assert parse_expires_dt("20241107083713") == int(
        dt.datetime(2024, 11, 7, 8, 37, 13, tzinfo=KST).timestamp() * NS
    )
