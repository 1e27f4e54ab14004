"""The recorder's exception tree.

Library exceptions (``httpx.*``, ``websockets.*``, ``OSError`` from pyarrow and
the filesystem) are translated where the library is called; callers only ever
catch these::

    RecorderError
    ├── ConfigError              bad options, missing credentials, universe too large
    ├── AuthError                credentials or token refused (au10001, LOGIN); never retried
    ├── KiwoomError              the server answered with a non-zero return_code
    │   └── RateLimitError       HTTP 429 / return_code 5 / WS 105110
    ├── TransportError           connect, read or write failed; retryable
    ├── NothingCapturedError     a capture never logged in and subscribed, or recorded nothing
    ├── JournalError             the raw-frame journal could not be written or read
    └── StoreError               a Parquet part file could not be written or read
        └── UnreadableFileError  a stored file is truncated, damaged or cannot be opened

Every message is safe to print: no app key, secret key or token ever goes into one
(docs/architecture.md, invariants).
"""

from __future__ import annotations


class RecorderError(Exception):
    """Base class of every error the recorder raises on purpose."""


class ConfigError(RecorderError):
    """The options or the environment do not allow the requested work."""


class AuthError(RecorderError):
    """Kiwoom refused the credentials or the token. Retrying will not help."""


class KiwoomError(RecorderError):
    """Kiwoom answered with a non-zero ``return_code``.

    Attributes:
        code: the ``return_code`` (int) or SYSTEM ``code`` (str) as sent.
        msg: the server's ``return_msg`` text.
    """

    def __init__(self, code: int | str, msg: str, *, what: str = "") -> None:
        self.code = code
        self.msg = msg
        prefix = f"{what}: " if what else ""
        super().__init__(f"{prefix}Kiwoom return_code {code}: {msg}")


class RateLimitError(KiwoomError):
    """Too many requests (HTTP 429 / return_code 5 on REST, 105110 on REG)."""


class TransportError(RecorderError):
    """The network failed (connect, read, write). The caller may retry."""


class NothingCapturedError(RecorderError):
    """A capture ended without ever being logged in and subscribed: its time is a gap."""


class JournalError(RecorderError):
    """The journal could not be appended to or read back."""


class StoreError(RecorderError):
    """A Parquet part file could not be written, renamed or read."""


class UnreadableFileError(StoreError):
    """A stored file cannot be read: truncated, damaged, not Parquet, or not readable.

    The message names the file. The CLI exits 2 for it, as ``recorder verify`` does for a
    store with unreadable files.
    """
