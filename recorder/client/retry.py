"""What to do when a Kiwoom session fails: pure decisions, no sockets, no sleeps.

- :func:`backoff` yields the delays between failed connection attempts;
- :class:`ReconnectDelays` picks the wait before each reconnect: almost none after a
  healthy connection, the backoff after consecutive failures, a long one after a kick;
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


class ReconnectDelays:
    """The wait before each reconnect of one session; pure (it draws, it never sleeps).

    - After a **healthy** connection (logged in and subscribed) closed or dropped: a jitter
      in ``[0, jitter_s)``, so that data flows again within a fraction of a second (Kiwoom
      cuts sessions routinely) while many recorders cut at once do not reconnect in
      lockstep. The backoff starts over.
    - After a **failed** attempt (it never got subscribed): the next :func:`backoff` delay,
      so consecutive failures wait longer and longer, up to ``cap_s``.
    - After a **kick** (SYSTEM R10001, protocol notes §3.3): ``kicked_s``, healthy or not:
      another session took the app key, and reconnecting at once would kick it back.

    Like websockets' own reconnecting client, a connection that worked resets the backoff.

    Args:
        base_s, cap_s: the backoff after failures (see :func:`backoff`).
        jitter_s: the bound of the wait after a healthy connection.
        kicked_s: the wait after a kick.
        rng: the source of every draw; the same seed gives the same delays.
    """

    def __init__(
        self, *, base_s: float, cap_s: float, jitter_s: float, kicked_s: float, rng: random.Random
    ) -> None:
        if jitter_s < 0 or kicked_s < 0:
            raise ValueError(f"reconnect waits must be >= 0, got jitter {jitter_s} and kick {kicked_s}")
        self._base_s, self._cap_s = base_s, cap_s
        self._jitter_s, self._kicked_s = jitter_s, kicked_s
        self._rng = rng
        self._failures = backoff(base_s, cap_s, rng)
        self.failures = 0  # consecutive failed attempts since the last healthy connection

    def after(self, *, healthy: bool, kicked: bool) -> float:
        """Seconds to wait before the next attempt, given how the last connection ended.

        Args:
            healthy: the connection was logged in and subscribed before it ended.
            kicked: it ended after SYSTEM R10001.
        """
        if healthy:
            self._failures = backoff(self._base_s, self._cap_s, self._rng)
            self.failures = 0
        else:
            self.failures += 1
        if kicked:
            return self._kicked_s
        if healthy:
            return self._rng.uniform(0.0, self._jitter_s)
        return next(self._failures)


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
