"""Shared pieces of the ``recorder`` click commands: error handling and common options.

Every ordinary mistake ends in one ``error: …`` line on stderr and a documented exit code,
never a traceback: errors raised by a command are translated by :func:`handle_errors`, and
option values are checked while the command line is parsed (:class:`OptionError`).
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from recorder.errors import (
    AuthError,
    ConfigError,
    NothingCapturedError,
    RecorderError,
    UnreadableFileError,
)

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
        except UnreadableFileError as exc:  # a damaged file is exit 2, as for `recorder verify`
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except RecorderError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


class OptionError(click.ClickException):
    """A bad option value found while the command line is parsed: one ``error: …`` line, exit 2.

    Click prints its own usage errors over several lines; the checks below print the one
    line :func:`handle_errors` prints for a :class:`~recorder.errors.ConfigError`.
    """

    exit_code = EXIT_CONFIG

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class DataDir(click.ParamType):
    """``--data-dir``: a local folder (a Path), which ``must_exist`` for the commands that
    read a store, or ``s3://bucket/prefix`` (an :class:`~recorder.store.objstore.S3Store`)
    where the command supports object storage (``remote``).

    Any other URL (``gs://…``, anything with ``://``) is refused rather than taken as a
    local folder named ``gs:``; so is a path that names a file.
    """

    name = "data_dir"

    def __init__(self, *, must_exist: bool = False, remote: bool = True) -> None:
        self.must_exist = must_exist
        self.remote = remote

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "PATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from recorder.store.layout import store_dir, store_location

        try:
            if self.remote:
                return store_location(value, must_exist=self.must_exist)
            return store_dir(os.fspath(value), must_exist=self.must_exist)
        except ConfigError as exc:
            raise OptionError(str(exc)) from None
        except RecorderError as exc:  # the bucket could not be reached
            raise OptionError(str(exc)) from None


DATA_DIR = click.option(
    "--data-dir",
    type=DataDir(),
    default=Path("data"),
    show_default=True,
    help="The store: a folder, or s3://bucket/prefix (docs/s3.md).",
)

#: ``--data-dir`` of the commands that need a local folder (the journal's own commands).
LOCAL_DATA_DIR = click.option(
    "--data-dir",
    type=DataDir(must_exist=True, remote=False),
    default=Path("data"),
    show_default=True,
    help="The store (Hive-partitioned Parquet); it must exist.",
)

#: ``--journal-dir`` of the commands that write or check an ``s3://`` store.
JOURNAL_DIR = click.option(
    "--journal-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With an s3:// --data-dir: the local folder of the journal and of part files waiting to be "
    "uploaded (default: $XDG_STATE_HOME/kiwoom-recorder/<bucket>/<prefix>).",
)


def keys_option(help_text: str) -> Callable[[F], F]:
    """``--keys FILE``: a TOML keys file of ``[[key]]`` tables (``keys_file``, a Path)."""
    return click.option(  # type: ignore[return-value]
        "--keys", "keys_file", type=click.Path(path_type=Path, dir_okay=False), help=help_text
    )


#: ``--data-dir`` for commands that only read a store: a folder that does not exist is an error.
EXISTING_DATA_DIR = click.option(
    "--data-dir",
    type=DataDir(must_exist=True),
    default=Path("data"),
    show_default=True,
    help="The store: a folder, or s3://bucket/prefix (docs/s3.md); it must exist.",
)


class OutputFile(click.Path):
    """``--out FILE``: not a folder, and in a folder that exists (checked before any work)."""

    name = "file"

    def __init__(self) -> None:
        super().__init__(dir_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(os.fspath(value))
        if path.is_dir():
            raise OptionError(f"--out {path}: is a folder; give a file name")
        folder = path.parent
        if not folder.is_dir():
            state = "is not a folder" if folder.exists() else "does not exist"
            raise OptionError(f"--out {path}: the folder {folder} {state}")
        return super().convert(value, param, ctx)


def number_check(
    low: float, high: float | None = None, *, above: bool = False
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback: the value must be finite and ``> low`` (``above``) or ``>= low``,
    and ``<= high`` when given; NaN and infinities are refused."""
    if high is None:
        wanted = f"above {low:g}" if above else f"{low:g} or more"
    else:
        wanted = f"above {low:g} and at most {high:g}" if above else f"from {low:g} to {high:g}"

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None:
            return value
        ok = math.isfinite(value) and (value > low if above else value >= low)
        if not ok or (high is not None and value > high):
            raise OptionError(f"{param.opts[0]} {value}: must be {wanted}")
        return value

    return check


#: ``--port``: a TCP port, 0 for any free one.
PORT_CHECK = number_check(0, 65535)


def venue_address(when: str = "") -> Callable[[F], F]:
    """``--host`` and ``--port`` of the embedded venue (``sim``, ``replay --serve``); ``when``
    prefixes the help (``"With --serve: "``)."""

    def text(rest: str) -> str:
        return f"{when}{rest}" if when else rest[:1].upper() + rest[1:]

    host = click.option(
        "--host", default="127.0.0.1", show_default=True, help=text("address to bind (loopback by default).")
    )
    port = click.option(
        "--port",
        default=8910,
        show_default=True,
        type=int,
        callback=PORT_CHECK,
        help=text("port for REST and WebSocket (0 = any free port; the banner shows the one bound)."),
    )

    def apply(fn: F) -> F:
        return host(port(fn))

    return apply


def write_error(path: Path, exc: OSError) -> ConfigError:
    """The one-line error for an output file that could not be written."""
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return ConfigError(f"cannot write {path}: {reason}")


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
