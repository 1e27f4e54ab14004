"""Shared pieces of the ``recorder`` click commands: error handling and common options."""

from __future__ import annotations

import datetime as dt
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from recorder.errors import AuthError, ConfigError, NothingCapturedError, RecorderError

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes of every ``recorder`` command (documented in the README and ``recorder --help``).
EXIT_OK = 0
EXIT_FAILURE = 1  # the store or journal could not be written or read, or another failure
EXIT_CONFIG = 2  # usage: a bad option, a missing folder, a damaged file
EXIT_AUTH = 3  # Kiwoom refused the credentials or the token
EXIT_NOTHING = 4  # a capture never logged in and subscribed (its time is a gap row)


def handle_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AuthError as exc:
            click.echo(f"error: authentication failed: {exc}", err=True)
            sys.exit(EXIT_AUTH)
        except ConfigError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except NothingCapturedError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_NOTHING)
        except RecorderError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data"),
    show_default=True,
    help="The store (Hive-partitioned Parquet).",
)


REQUIRE_CREDENTIALS = click.option(
    "--require-credentials",
    is_flag=True,
    help="Accept only the app key pair in KIWOOM_APPKEY/KIWOOM_SECRETKEY (environment or .env); "
    "by default the venue accepts any credentials.",
)


def venue_credentials(require: bool) -> tuple[str | None, str | None]:
    """The (appkey, secretkey) a venue should insist on: ours, or (None, None) for any."""
    if not require:
        return None, None
    from recorder.client.credentials import load_credentials

    creds = load_credentials()
    return creds.appkey, creds.secretkey


def check_date(date: str) -> None:
    """Raise ConfigError unless ``date`` is YYYY-MM-DD."""
    try:
        dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ConfigError(f"{date!r} is not a date (YYYY-MM-DD)") from exc
