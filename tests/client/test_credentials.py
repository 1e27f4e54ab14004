"""Keys files: [[key]] tables, private or refused, never echoing a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from recorder.client.credentials import load_keys_file
from recorder.errors import ConfigError

SECRET = "SECRETkeyyyyyyyyyyyyyyy0002"


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_keys_file_gives_each_pair_in_order(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "keys.toml",
        f'[[key]]\nappkey = "APPKEY-one"\nsecretkey = "{SECRET}1"\n\n'
        f'[[key]]\nappkey = "APPKEY-two"\nsecretkey = "{SECRET}2"\n',
    )
    keys = load_keys_file(f)
    assert [k.appkey for k in keys] == ["APPKEY-one", "APPKEY-two"]
    assert SECRET not in repr(keys) and "APPKEY-one" not in repr(keys)


@pytest.mark.parametrize(
    ("text", "mode", "match"),
    [
        ('[[key]]\nappkey = "A"\nsecretkey = "S"\n', 0o644, "chmod 600"),
        ('[[key]]\nappkey = "A"\nsecretkey = "S"\n', 0o640, "other users may read"),
        ("[[key]\nappkey=", 0o600, "not valid TOML"),
        ('appkey = "A"\n', 0o600, "no \\[\\[key\\]\\] tables"),
        ('[[key]]\nappkey = "A"\n', 0o600, "number 1 has no secretkey"),
        ('[[key]]\nappkey = "A"\nsecretkey = "S"\n[[key]]\nappkey = "A"\nsecretkey = "T"\n', 0o600, "twice"),
        ('[[key]]\nappkey = "A"\nsecretkey = ""\n', 0o600, "no secretkey"),
    ],
)
def test_bad_keys_files_are_refused_without_echoing_secrets(
    tmp_path: Path, text: str, mode: int, match: str
) -> None:
    f = _write(tmp_path / "keys.toml", text, mode)
    with pytest.raises(ConfigError, match=match) as err:
        load_keys_file(f)
    assert '"S"' not in str(err.value) and "secretkey = " not in str(err.value)


def test_missing_keys_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read keys file"):
        load_keys_file(tmp_path / "nope.toml")
