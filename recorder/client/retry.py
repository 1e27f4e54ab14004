"""What to do when a Kiwoom session fails: pure decisions, no sockets, no sleeps.

- :func:`backoff` yields the delays between reconnects;
- :func:`is_retryable` tells whether reconnecting could cure a failure;
- :func:`translated` turns ``websockets`` and ``OSError`` failures into
  :mod:`recorder.errors`, so that callers never catch ``websockets.*``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from recorder.errors import AuthError, ConfigError, KiwoomError, TransportError


def backoff(base: float, cap: float, rng: random.Random) -> Iterator[float]:
    """Reconnect delays in seconds: exponential backoff with "decorrelated jitter".

    Each delay is drawn uniformly between ``base`` and three times the previous delay, then
    capped. Jitter keeps many recorders from reconnecting in lockstep after an outage.
    The iterator is endless; start a new one to reset after a healthy connection.

    Every delay lies in ``[min(base, cap), cap]``; the same seed gives the same delays.
    """
    if base < 0 or cap < 0:
        raise ValueError(f"backoff needs base >= 0 and cap >= 0, got {base} and {cap}")
    delay = base
    while True:
        delay = min(cap, rng.uniform(base, delay * 3))
        yield delay


def is_retryable(exc: BaseException) -> bool:
    """Whether reconnecting (after a backoff) could cure ``exc``.

    Network failures, closes and non-auth Kiwoom errors are retryable; refused credentials,
    bad configuration and anything unknown (a journal write failure, a bug) are not, and
    must stop the capture loudly.
    """
    if isinstance(exc, AuthError | ConfigError | InvalidURI):
        return False
    return isinstance(exc, TransportError | KiwoomError | OSError | WebSocketException)


def _describe_close(exc: ConnectionClosed) -> str:
    if exc.rcvd is not None:
        reason = f" {exc.rcvd.reason!r}" if exc.rcvd.reason else ""
        return f"server closed the connection (code {exc.rcvd.code}{reason})"
    if exc.sent is not None:
        return f"connection closed after we sent close code {exc.sent.code}"
    return "connection dropped without a close frame (code 1006)"


def translate_error(exc: Exception, doing: str) -> ConfigError | TransportError:
    """The :mod:`recorder.errors` form of a websockets or OS error.

    A bad URL is a ConfigError (retrying cannot help); everything else is a TransportError
    whose message says how the connection ended, e.g. "server closed the connection
    (code 1000 'Bye') while trying to receive".
    """
    if isinstance(exc, InvalidURI):
        return ConfigError(f"bad WebSocket URL: {exc}")
    if isinstance(exc, ConnectionClosed):
        return TransportError(f"{_describe_close(exc)} while trying to {doing}")
    return TransportError(f"could not {doing}: {type(exc).__name__}: {exc}")


@contextlib.contextmanager
def translated(doing: str) -> Iterator[None]:
    """Re-raise websockets and OS errors inside the block as :func:`translate_error` does."""
    try:
        yield
    except (OSError, WebSocketException) as exc:
        raise translate_error(exc, doing) from exc
