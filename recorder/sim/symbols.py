"""KRX reference data for the synthetic market: the tick grid and a symbol catalogue.

Pure and deterministic. Well-known codes carry real names so that demos look familiar
(prices are illustrative, as in protocol notes §7.3-7.5); any other code gets facts
seeded from the code itself, so a symbol looks the same whatever universe it is part of.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# KRX tick sizes for stocks (upper bound exclusive, tick); 1000 above the last bound.
_TICKS = ((2000, 1), (5000, 5), (20000, 10), (50000, 50), (200000, 100), (500000, 500))

# (code, name, marketCode, previous close, shares listed, NXT, sector, size class).
_KNOWN: tuple[tuple[str, str, str, int, int, bool, str, str], ...] = (
    ("005930", "삼성전자", "0", 255000, 5969782550, True, "전기·전자", "대형주"),
    ("000660", "SK하이닉스", "0", 1842000, 728002365, True, "전기·전자", "대형주"),
    ("373220", "LG에너지솔루션", "0", 334000, 234000000, True, "전기·전자", "대형주"),
    ("207940", "삼성바이오로직스", "0", 1050000, 71174000, True, "제약", "대형주"),
    ("005380", "현대차", "0", 215000, 209416191, True, "운송장비·부품", "대형주"),
    ("000270", "기아", "0", 98000, 393175872, True, "운송장비·부품", "대형주"),
    ("068270", "셀트리온", "0", 178000, 216939692, True, "제약", "대형주"),
    ("035420", "NAVER", "0", 212000, 158437008, True, "일반서비스", "대형주"),
    ("005490", "POSCO홀딩스", "0", 268000, 84571230, True, "금속", "대형주"),
    ("035720", "카카오", "0", 38500, 442250000, True, "IT 서비스", "대형주"),
    ("051910", "LG화학", "0", 245000, 70592343, True, "화학", "대형주"),
    ("006400", "삼성SDI", "0", 231000, 68764530, True, "전기·전자", "대형주"),
    ("105560", "KB금융", "0", 98700, 393528000, True, "금융", "대형주"),
    ("055550", "신한지주", "0", 56300, 509393000, True, "금융", "대형주"),
    ("066570", "LG전자", "0", 78900, 163647814, True, "전기·전자", "대형주"),
    ("017670", "SK텔레콤", "0", 53600, 214790053, False, "통신", "대형주"),
    ("247540", "에코프로비엠", "10", 128000, 97801344, True, "일반전기전자", "대형주"),
    ("086520", "에코프로", "10", 61200, 133138340, True, "금융", "대형주"),
    ("196170", "알테오젠", "10", 412000, 53455818, True, "제약", "대형주"),
    ("028300", "HLB", "10", 52300, 130924567, True, "제약", "대형주"),
    ("263750", "펄어비스", "10", 31250, 64002500, False, "소프트웨어", "중형주"),
    ("293490", "카카오게임즈", "10", 14980, 82616920, False, "소프트웨어", "중형주"),
    ("041510", "에스엠", "10", 84500, 23573040, True, "오락·문화", "중형주"),
    ("058470", "리노공업", "10", 187500, 15242370, False, "반도체", "중형주"),
)
_SECTORS = ("전기·전자", "화학", "제약", "금융", "유통", "건설", "기계·장비", "음식료·담배")


def tick_size(price: int) -> int:
    """The KRX tick size for a stock trading at ``price`` KRW."""
    for bound, tick in _TICKS:
        if price < bound:
            return tick
    return 1000


def tick_up(price: int) -> int:
    """The next price on the tick grid above ``price``."""
    return price + tick_size(price)


def tick_down(price: int) -> int:
    """The next price on the tick grid below ``price`` (the tick of the band below applies)."""
    return price - tick_size(price - 1)


def round_to_tick(price: int) -> int:
    """``price`` rounded down onto the tick grid (never below one tick)."""
    tick = tick_size(price)
    return max(tick, price - price % tick)


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    """Static facts about one symbol, as ka10099 reports them (§5.2)."""

    code: str
    name: str
    market_code: str  # "0" KOSPI (거래소), "10" KOSDAQ
    prev_close: int
    list_count: int
    nxt_enable: bool
    reg_day: str
    sector: str
    size_class: str

    def ka10099_row(self) -> dict[str, str]:
        """The symbol as one row of ka10099's ``list`` (§5.2), zero padding included."""
        kospi = self.market_code == "0"
        return {
            "code": self.code,
            "name": self.name,
            "listCount": f"{self.list_count:016d}",
            "auditInfo": "정상",
            "regDay": self.reg_day,
            "lastPrice": f"{self.prev_close:08d}",
            "state": "증거금20%|담보대출|신용가능",
            "marketCode": self.market_code,
            "marketName": "거래소" if kospi else "코스닥",
            "upName": self.sector,
            "upSizeName": self.size_class,
            "companyClassName": "" if kospi else "우량기업부",
            "orderWarning": "0",
            "nxtEnable": "Y" if self.nxt_enable else "N",
            "kind": "A",
        }


def symbol_info(code: str, seed: int = 0) -> SymbolInfo:
    """Facts for ``code``: the built-in table for well-known codes, else seeded from the code.

    The result depends only on ``code`` and ``seed``, never on which other symbols exist.
    """
    for known in _KNOWN:
        if known[0] == code:
            c, name, market, close, listed, nxt, sector, size = known
            return SymbolInfo(c, name, market, round_to_tick(close), listed, nxt, "19750611", sector, size)
    rng = random.Random(f"symbol:{seed}:{code}")
    close = round_to_tick(int(math.exp(rng.uniform(math.log(1500), math.log(600000)))))
    return SymbolInfo(
        code=code,
        name=f"가상종목{code}",
        market_code="0" if rng.random() < 0.5 else "10",
        prev_close=close,
        list_count=int(math.exp(rng.uniform(math.log(5e6), math.log(5e8)))),
        nxt_enable=rng.random() < 0.7,
        reg_day=f"{rng.randint(1980, 2024)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        sector=rng.choice(_SECTORS),
        size_class=rng.choice(("대형주", "중형주", "소형주")),
    )


def universe(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct plausible codes: well-known ones first, then seeded 6-digit codes."""
    codes = [k[0] for k in _KNOWN[:n]]
    rng = random.Random(f"universe:{seed}")
    seen = set(codes)
    while len(codes) < n:
        code = f"{rng.randrange(1000, 99999):05d}0"  # common-stock codes end in 0
        if code not in seen:
            seen.add(code)
            codes.append(code)
    return codes
