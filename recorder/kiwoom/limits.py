"""Kiwoom's numbers: endpoints, per-key limits, reply codes (protocol notes §1, §3, §5), pure.

Each limit has one home here; the client, the capture, the CLI and the embedded venue all
read it from this module. Values marked [GUESS] in the notes are defaults that callers can
override (the venue's configuration, the session's keyword arguments).
"""

from __future__ import annotations

from recorder.errors import ConfigError

# §1: Kiwoom's servers. The WebSocket lives on port 10000 of the same hosts.
WS_PATH = "/api/dostk/websocket"
ENDPOINTS = {
    "prod": ("https://api.kiwoom.com", "wss://api.kiwoom.com:10000" + WS_PATH),
    "mock": ("https://mockapi.kiwoom.com", "wss://mockapi.kiwoom.com:10000" + WS_PATH),
}

# §3.4: one WebSocket session per app key, and 200 distinct codes on it (types are free;
# 005930 and 005930_NX are two codes).
MAX_CODES_PER_KEY = 200
#: §3.4: about 5 REG messages per second per connection before 105110.
REG_PER_SECOND = 5.0
#: §5.1: 5 REST requests per second per (app key, api-id) before HTTP 429.
REST_PER_SECOND = 5.0

# §3.4/§3.6 REG replies.
REG_RATE_LIMITED = 105110  # "허용 요청 건수 초과"
REG_TOO_MANY_CODES = 105115  # connection total over 200
REG_TOO_MANY_IN_GROUP = 105118

# §3.3 SYSTEM codes.
SYSTEM_KICKED = "R10001"  # another LOGIN with the same app key; the old session is closed
SYSTEM_HEARTBEAT = "R10002"  # PINGs were not echoed
SYSTEM_NO_LOGIN = "R10004"  # LOGIN missing or invalid (production only)

# §2.4 / §5.1 REST return codes.
TOKEN_ERROR_CODES = frozenset({8005, 8031, 8103})  # the official client re-authenticates on these
RATE_LIMIT_CODE = 5  # "[1700:허용된 API 요청 개수를 초과하였습니다 ...]" with HTTP 429


def keys_needed(n_codes: int, per_key: int = MAX_CODES_PER_KEY) -> int:
    """App keys needed for ``n_codes`` distinct codes."""
    return max(1, -(-n_codes // per_key))


def check_codes(n_codes: int, keys: int = 1, per_key: int = MAX_CODES_PER_KEY) -> None:
    """Refuse a universe that does not fit on ``keys`` app keys, before any network call.

    Raises:
        ConfigError: with the number of keys the universe needs.
    """
    if n_codes <= keys * per_key:
        return
    have = f"{keys} app key{'s' if keys != 1 else ''}"
    raise ConfigError(
        f"{n_codes} codes exceed the {keys * per_key}-code limit of {have} "
        f"({per_key} codes per key; 005930 and 005930_NX count as two): "
        f"{keys_needed(n_codes, per_key)} keys are needed (one process per key, "
        "each with its own --writer-id)"
    )
