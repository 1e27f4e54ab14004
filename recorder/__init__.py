"""kiwoom-recorder: a tick recorder and historical store for Kiwoom's real-time WebSocket feed.

The public Python API is :class:`recorder.Store` (see :mod:`recorder.api`)::

    from recorder import Store
    bars = Store("data").named("bars", start="2026-07-20", end="2026-07-20", symbol="005930")

Importing ``recorder`` loads neither pyarrow nor DuckDB: ``Store`` is imported on first use,
and its methods import what they need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from recorder.api import Store

__all__ = ["Store"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Store":
        from recorder.api import Store

        return Store
    raise AttributeError(f"module 'recorder' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "Store"])
