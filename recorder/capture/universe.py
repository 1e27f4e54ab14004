"""The universe of a capture: items from options, files and ka10099."""

from __future__ import annotations

from pathlib import Path

from recorder.errors import ConfigError
from recorder.kiwoom.items import parse_items


def read_items_file(path: Path) -> list[str]:
    """A file of items, one per line or comma-separated; ``#`` starts a comment.

    Raises:
        ConfigError: the file cannot be read or holds something that is not an item.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read universe file {path}: {exc.strerror}") from exc
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return parse_items(",".join(lines))
