"""Which servers to talk to: Kiwoom's production or mock hosts, or any compatible server."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from recorder.errors import ConfigError
from recorder.kiwoom.limits import ENDPOINTS


@dataclass(frozen=True)
class Endpoints:
    rest_url: str
    ws_url: str


def resolve_endpoints(
    env_name: str, rest_url: str | None, ws_url: str | None, environ: Mapping[str, str] | None = None
) -> Endpoints:
    """The servers of a capture: ``--rest-url`` and ``--ws-url`` together (a custom server),
    else ``KIWOOM_REST_URL`` and ``KIWOOM_WS_URL`` together, else ``--env``'s Kiwoom hosts.

    A custom REST server with Kiwoom's WebSocket (or the reverse) would record from one
    place while authenticating at another, so one URL without the other is refused.

    Raises:
        ConfigError: an unknown ``env_name``, or one URL of a pair without the other.
    """
    environ = os.environ if environ is None else environ
    if env_name not in ENDPOINTS:
        raise ConfigError(f"--env must be prod or mock, not {env_name!r}")
    for rest, ws, names in (
        (rest_url, ws_url, "--rest-url and --ws-url"),
        (environ.get("KIWOOM_REST_URL"), environ.get("KIWOOM_WS_URL"), "KIWOOM_REST_URL and KIWOOM_WS_URL"),
    ):
        if rest and ws:
            return Endpoints(rest_url=rest, ws_url=ws)
        if rest or ws:
            raise ConfigError(f"give {names} together (a custom server), or neither (Kiwoom's {env_name})")
    rest_default, ws_default = ENDPOINTS[env_name]
    return Endpoints(rest_url=rest_default, ws_url=ws_default)
