"""App keys and secret keys: where they are read from, and how they are kept out of sight.

Credentials come from the environment (``KIWOOM_APPKEY``, ``KIWOOM_SECRETKEY``), a ``.env``
file, the per-user config file, or a keys file of several ``[[key]]`` tables for a capture
that runs one session per app key. Any file holding a secret is refused when group or
others may read it, as ssh does. No repr, log line or error message shows a secret.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

from recorder.errors import ConfigError


def mask(secret: str) -> str:
    """A printable stand-in for a secret: the first 4 characters and "…", or "***" if short.

    Secrets shorter than 8 characters are fully hidden, so at most half of one is shown.
    """
    return secret[:4] + "…" if len(secret) >= 8 else "***"


@dataclass(frozen=True)
class Credentials:
    """An app key and secret key pair (§2.1). The repr never shows either."""

    appkey: str
    secretkey: str

    def __repr__(self) -> str:
        return f"Credentials(appkey='{mask(self.appkey)}(masked)', secretkey='***')"


def default_config_file(env: Mapping[str, str] | None = None) -> Path:
    """``$KIWOOM_RECORDER_CONFIG``, else ``kiwoom-recorder/credentials`` under the XDG config home."""
    env = os.environ if env is None else env
    if env.get("KIWOOM_RECORDER_CONFIG"):
        return Path(env["KIWOOM_RECORDER_CONFIG"])
    base = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "kiwoom-recorder" / "credentials"


def load_credentials(
    env: Mapping[str, str] | None = None,
    dotenv_path: Path | None = None,
    config_path: Path | None = None,
) -> Credentials:
    """Read KIWOOM_APPKEY and KIWOOM_SECRETKEY: the environment, then ``.env``, then the config file.

    Args:
        env: the environment; ``os.environ`` by default. It wins over the files.
        dotenv_path: the ``.env`` file; ``./.env`` by default. A missing file is empty.
        config_path: the per-user config file (dotenv syntax); :func:`default_config_file`
            by default. A missing file is empty.

    Raises:
        ConfigError: a variable is missing or empty (the message names it, never a value),
            or a file holding secrets can be read by other users.
    """
    env = os.environ if env is None else env
    names = ("KIWOOM_APPKEY", "KIWOOM_SECRETKEY")
    values = {n: (env.get(n) or "").strip() for n in names}
    sources = [
        Path(".env") if dotenv_path is None else dotenv_path,
        default_config_file(env) if config_path is None else config_path,
    ]
    for path in sources:
        if all(values.values()):
            break
        if path.is_file():
            found = _private_dotenv(path)
            values = {n: values[n] or (found.get(n) or "").strip() for n in names}
    for name in names:
        if not values[name]:
            where = " and ".join(str(p) for p in sources)
            raise ConfigError(f"{name} is not set (looked in the environment, {where})")
    return Credentials(values["KIWOOM_APPKEY"], values["KIWOOM_SECRETKEY"])


def _private_dotenv(path: Path) -> dict[str, str | None]:
    """Read a secrets file, refusing one that group or others may read (like ssh does)."""
    refuse_readable_by_others(path, "the app key and secret")
    return dotenv_values(path)


def refuse_readable_by_others(path: Path, holds: str) -> None:
    """Refuse a secrets file that group or others may read (like ssh does).

    Raises:
        ConfigError: naming the file, what it ``holds`` and the ``chmod`` that fixes it.
        OSError: the file cannot be examined (missing, unreadable folder).
    """
    mode = path.stat().st_mode
    if mode & 0o077:
        raise ConfigError(
            f"{path} holds {holds} but other users may read it (mode {mode & 0o777:o}); run: chmod 600 {path}"
        )


def load_keys_file(path: Path) -> list[Credentials]:
    """App key pairs from a TOML keys file: ``[[key]]`` tables with ``appkey`` and ``secretkey``.

    Example::

        [[key]]
        appkey = "..."
        secretkey = "..."

    Raises:
        ConfigError: the file is missing, readable by others, not TOML, has no keys, a table
            lacks a field, or an app key appears twice. Messages name tables by position,
            never by value.
    """
    try:
        refuse_readable_by_others(path, "app keys and secrets")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read keys file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"keys file {path} is not valid TOML: {exc}") from None
    tables = data.get("key")
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"keys file {path} has no [[key]] tables")
    out: list[Credentials] = []
    for n, table in enumerate(tables, 1):
        values = {f: table.get(f) if isinstance(table, dict) else None for f in ("appkey", "secretkey")}
        for field_name, value in values.items():
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"keys file {path}: [[key]] number {n} has no {field_name}")
        out.append(Credentials(values["appkey"].strip(), values["secretkey"].strip()))  # type: ignore[union-attr]
    first: dict[str, int] = {}
    for n, cred in enumerate(out, 1):
        if cred.appkey in first:
            raise ConfigError(
                f"keys file {path}: [[key]] {first[cred.appkey]} and {n} give the same appkey twice"
            )
        first[cred.appkey] = n
    return out
