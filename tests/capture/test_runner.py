"""``recorder capture`` end to end: what a run that records nothing leaves behind, the URL
pair rule, and the absence of test hooks from the command line."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import queries
from recorder.cli.main import main
from recorder.sim.venue import VenueConfig
from soak.harness import CLI_CAPTURE, hermetic_env

APPKEY, SECRET = "runner-appkey-31c9", "runner-secret-8e2f4a"
ENV = hermetic_env(KIWOOM_APPKEY=APPKEY, KIWOOM_SECRETKEY=SECRET)


def closed_port() -> int:
    """A port nothing listens on: bound, then released, so connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(data_dir: Path) -> list[str]:
    return [
        *CLI_CAPTURE,
        "--symbols",
        "005930,000660",
        "--data-dir",
        str(data_dir),
        "--writer-id",
        "t",
        "--force",
    ]


def capture(data_dir: Path, *options: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(data_dir), *options], env=env, capture_output=True, text=True, timeout=120
    )


def run_gaps(data_dir: Path) -> list[dict[str, Any]]:
    sql = "SELECT kind, detail, epoch_ns(start_ts) AS start_ns, epoch_ns(end_ts) AS end_ns FROM gaps"
    return queries.sql(data_dir, sql).to_pylist()


def assert_nothing_captured(
    r: subprocess.CompletedProcess[str], data_dir: Path, t0: int, t1: int, *, at_least_s: float = 0.0
) -> str:
    """Exit 4, a last line that says so, and one gap covering the run; the gap's detail."""
    assert r.returncode == 4, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: nothing captured") and "gap" in last, last
    assert "captured 0 frames" not in r.stdout
    (gap,) = run_gaps(data_dir)
    assert gap["kind"] == "disconnect" and gap["detail"].startswith("never logged in and subscribed")
    # It covers the run: it starts before and ends after everything the run did.
    assert t0 <= gap["start_ns"] < gap["end_ns"] <= t1
    assert gap["end_ns"] - gap["start_ns"] >= at_least_s * 1e9
    assert SECRET not in r.stderr + gap["detail"] and APPKEY not in r.stderr + gap["detail"]
    return str(gap["detail"])


def test_closed_ports_exit_4_with_the_whole_run_as_a_gap(tmp_path: Path) -> None:
    ws, rest = closed_port(), closed_port()
    t0 = time.time_ns()
    r = capture(
        tmp_path,
        *("--ws-url", f"ws://127.0.0.1:{ws}/api/dostk/websocket", "--rest-url", f"http://127.0.0.1:{rest}"),
        *("--duration", "2s"),
    )
    # REST's retries with backoff outlast the 2 s duration, which stops them.
    detail = assert_nothing_captured(r, tmp_path, t0, time.time_ns(), at_least_s=2.0)
    assert f"waiting for an access token from http://127.0.0.1:{rest}" in detail


class Refuser:
    """A TCP listener that closes every connection at once (no WebSocket handshake), and
    tells when the first one came: the capture has got past REST and is trying the socket."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.tried = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener was closed
            while True:
                conn, _ = self.sock.accept()
                conn.close()
                self.tried.set()

    def close(self) -> None:
        self.sock.close()


def test_rest_works_but_the_websocket_is_unreachable(tmp_path: Path, venue_thread: Any) -> None:
    vt = venue_thread(VenueConfig(n_symbols=2))
    refuser = Refuser()
    t0 = time.time_ns()
    try:
        ws = f"ws://127.0.0.1:{refuser.port}/api/dostk/websocket"
        proc = subprocess.Popen(
            [*command(tmp_path), "--ws-url", ws, "--rest-url", vt.venue.rest_url, "--duration", "10m"],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert refuser.tried.wait(60), "the capture never tried the WebSocket"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        refuser.close()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    detail = assert_nothing_captured(r, tmp_path, t0, time.time_ns())
    assert f"at {ws}: " in detail and "connection attempt(s)" in detail
    assert vt.run(lambda: vt.venue.stats.tokens_issued) == 1 and vt.run(lambda: vt.venue.stats.logins) == 0


@pytest.mark.parametrize(
    ("options", "env"),
    [
        (["--rest-url", "http://127.0.0.1:9"], {}),
        (["--ws-url", "ws://127.0.0.1:9/ws"], {}),
        ([], {"KIWOOM_REST_URL": "http://127.0.0.1:9"}),
    ],
)
def test_one_url_without_the_other_is_a_usage_error(
    tmp_path: Path, options: list[str], env: dict[str, str]
) -> None:
    r = capture(tmp_path, *options, "--duration", "1s", env={**ENV, **env})
    assert r.returncode == 2, r.stderr
    assert "together" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "_journal").exists()  # refused before anything was started


@pytest.mark.parametrize("hook", [["--throttle-writes", "0.5"], ["--session-option", "kicked_backoff_s=0.5"]])
def test_the_command_line_has_no_test_hooks(hook: list[str]) -> None:
    r = CliRunner().invoke(main, ["capture", "--symbols", "005930", *hook])
    assert r.exit_code == 2 and "No such option" in r.output
