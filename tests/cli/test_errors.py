"""Ordinary mistakes end in one ``error: …`` line and a non-zero exit: never a traceback, never
an empty success.

Each case runs the real command: through ``CliRunner`` when the mistake is caught before any
socket is opened, as a subprocess when a port is involved.
"""

from __future__ import annotations

import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from recorder.cli.main import main
from soak.harness import hermetic_env
from tests.replay.stores import build_store

RECORDER = [sys.executable, "-m", "recorder.cli.main"]
DAY = "2026-07-20"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("store")
    build_store(root, DAY, steps=10)
    return root


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_one_line_error(res: Result, message: str, code: int = 2) -> None:
    """Exit ``code``, stderr exactly one ``error: …`` line containing ``message``, no traceback."""
    assert res.exit_code == code, (res.exit_code, res.output)
    assert isinstance(res.exception, SystemExit), res.exception  # not an escaped exception
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in res.output


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


# --------------------------------------------------------------------------- ports


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["sim", "replay"])
def test_a_port_in_use_is_one_line(command: str, busy_port: int, store: Path) -> None:
    args = ["sim"] if command == "sim" else ["replay", "--data-dir", str(store), "--date", DAY, "--serve"]
    r = subprocess.run(
        [*RECORDER, *args, "--port", str(busy_port)],
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == [f"error: cannot listen on 127.0.0.1:{busy_port}: address already in use"]
    assert "Traceback" not in r.stderr


def test_a_host_that_cannot_be_bound_is_one_line() -> None:
    res = invoke("sim", "--host", "nosuch.invalid", "--port", "0")
    assert_one_line_error(res, "cannot listen on nosuch.invalid:0")


class Banner:
    """A served command in a subprocess, its stderr read line by line on a thread."""

    def __init__(self, args: list[str], *, start_ignoring_sigint: bool = False) -> None:
        # A non-interactive shell starts background jobs with SIGINT ignored (as CI runners
        # and cron scripts do); the served commands must stop on it all the same.
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if start_ignoring_sigint else None
        self.proc = subprocess.Popen(
            [*RECORDER, *args], env=hermetic_env(), stderr=subprocess.PIPE, text=True, preexec_fn=ignore
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix: str, timeout: float = 60.0) -> str:
        while (line := self.lines.get(timeout=timeout)) is not None:
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting {prefix!r}: {self.seen}")

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(30)


@pytest.mark.parametrize("command", ["sim", "replay"])
def test_port_0_banner_shows_the_bound_port(command: str, store: Path) -> None:
    if command == "sim":
        args, prefix = ["sim", "--port", "0", "--symbols", "2"], "serving a synthetic market on "
    else:
        args = ["replay", "--data-dir", str(store), "--date", DAY, "--serve", "--port", "0"]
        prefix = "replaying "
    served = Banner(args)
    try:
        line = served.wait_line(prefix)
        rest_url = line.split(" on ", 1)[1].split(" ", 1)[0]
        host, port = rest_url.removeprefix("http://").split(":")
        assert host == "127.0.0.1" and int(port) > 0, line
        assert f"(WebSocket ws://127.0.0.1:{port}/api/dostk/websocket)" in line
        # The port printed is the one listening: the venue's token endpoint answers there.
        reply = httpx.post(
            f"{rest_url}/oauth2/token",
            json={"grant_type": "client_credentials", "appkey": "k" * 16, "secretkey": "s" * 16},
            timeout=10,
        )
        assert reply.status_code == 200 and reply.json()["token"], reply.text
    finally:
        assert served.stop() == 0
    assert not any("Traceback" in line for line in served.seen)


@pytest.mark.parametrize("command", ["sim", "replay"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_served_commands_stop_cleanly_on_sigint_or_sigterm(command: str, sig: int, store: Path) -> None:
    if command == "sim":
        args, prefix = ["sim", "--port", "0", "--symbols", "2"], "serving a synthetic market on "
    else:
        args = ["replay", "--data-dir", str(store), "--date", DAY, "--serve", "--port", "0"]
        prefix = "replaying "
    served = Banner(args, start_ignoring_sigint=True)
    served.wait_line(prefix)
    assert served.stop(sig) == 0
    rest = served.lines.get(timeout=10)
    tail = []
    while rest is not None:
        tail.append(rest)
        rest = served.lines.get(timeout=10)
    assert any("venue stopped" in line for line in tail), tail
    assert not any("Traceback" in line for line in [*served.seen, *tail])


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "-1"], "--rate -1.0: must be above 0 and at most 1000"),
        (["--rate", "0"], "--rate 0.0: must be above 0 and at most 1000"),
        (["--rate", "nan"], "--rate nan: must be above 0 and at most 1000"),
        (["--rate", "inf"], "--rate inf: must be above 0 and at most 1000"),
        (["--rate", "1e308"], "--rate 1e+308: must be above 0 and at most 1000"),
        (["--symbols", "0"], "--symbols 0: must be from 1 to 10000"),
        (["--symbols", "-2"], "--symbols -2: must be from 1 to 10000"),
        (["--symbols", "100000"], "--symbols 100000: must be from 1 to 10000"),
        (["--port", "70000"], "--port 70000: must be from 0 to 65535"),
        (["--port", "-1"], "--port -1: must be from 0 to 65535"),
    ],
)
def test_sim_refuses_impossible_numbers(args: list[str], message: str) -> None:
    # Refused while parsing: with good values these commands would serve until interrupted.
    assert_one_line_error(invoke("sim", *args), message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--settle", "-1"], "--settle -1.0: must be 0 or more"),
        (["--settle", "nan"], "--settle nan: must be 0 or more"),
        (["--port", "65536"], "--port 65536: must be from 0 to 65535"),
    ],
)
def test_replay_serve_refuses_impossible_numbers(store: Path, args: list[str], message: str) -> None:
    res = invoke("replay", "--data-dir", str(store), "--date", DAY, "--serve", *args)
    assert_one_line_error(res, message)


# --------------------------------------------------------------------------- --out


def test_query_out_into_a_missing_folder_is_refused_before_running(store: Path, tmp_path: Path) -> None:
    for fmt in ("csv", "json", "parquet", "table"):
        out = tmp_path / "missing" / f"x.{fmt}"
        res = invoke(
            "query",
            "--data-dir",
            str(store),
            "SELECT count(*) FROM trades",
            "--format",
            fmt,
            "--out",
            str(out),
        )
        assert_one_line_error(res, f"--out {out}: the folder {out.parent} does not exist")
    named = ["--named", "vwap", "--param", f"start={DAY}", "--param", f"end={DAY}"]
    res = invoke("query", "--data-dir", str(store), *named, "--out", str(tmp_path / "missing" / "v.csv"))
    assert_one_line_error(res, "does not exist")
    assert not (tmp_path / "missing").exists()


def test_replay_out_into_a_missing_folder_is_refused_before_reading(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "x.ndjson"
    res = invoke("replay", "--data-dir", str(store), "--date", DAY, "--out", str(out))
    assert_one_line_error(res, f"--out {out}: the folder {out.parent} does not exist")
    assert not (tmp_path / "missing").exists()


def test_out_under_a_file_or_onto_a_folder_is_refused(store: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    res = invoke("query", "--data-dir", str(store), "SELECT 1", "--out", str(a_file / "x.csv"))
    assert_one_line_error(res, f"the folder {a_file} is not a folder")
    res = invoke("replay", "--data-dir", str(store), "--date", DAY, "--out", str(tmp_path))
    assert_one_line_error(res, f"--out {tmp_path}: is a folder")
    assert a_file.read_text() == "x"


def test_a_write_that_fails_is_one_line(store: Path) -> None:
    # /dev/full accepts the open and fails every write with ENOSPC, as a full disk does.
    res = invoke(
        "query", "--data-dir", str(store), "SELECT 1 AS one", "--format", "csv", "--out", "/dev/full"
    )
    assert_one_line_error(res, "cannot write /dev/full: No space left on device")
    res = invoke("replay", "--data-dir", str(store), "--date", DAY, "--out", "/dev/full")
    assert_one_line_error(res, "cannot write /dev/full: No space left on device")


# --------------------------------------------------------------------------- damaged files


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def scramble_pages(path: Path) -> None:
    """Damage the data pages and keep the footer: the file opens, its rows do not read."""
    data = bytearray(path.read_bytes())
    footer = struct.unpack("<i", data[-8:-4])[0]
    for i in range(8, len(data) - footer - 8):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def damaged_copy(store: Path, tmp_path: Path, damage: Any) -> Path:
    import shutil

    root = tmp_path / "damaged"
    shutil.copytree(store, root)
    (part,) = root.glob(f"trades/date={DAY}/symbol=005930/*.parquet")
    damage(part)
    return part


@pytest.mark.parametrize("damage", [truncate, scramble_pages])
def test_replay_over_a_damaged_part_file_names_it(store: Path, tmp_path: Path, damage: Any) -> None:
    part = damaged_copy(store, tmp_path, damage)
    data_dir = str(part.parents[3])
    res = invoke("replay", "--data-dir", data_dir, "--date", DAY, "--out", str(tmp_path / "x.ndjson"))
    assert_one_line_error(res, f"cannot read {part}: ")


def test_replay_serve_over_a_truncated_part_file_names_it(store: Path, tmp_path: Path) -> None:
    part = damaged_copy(store, tmp_path, truncate)
    res = invoke("replay", "--data-dir", str(part.parents[3]), "--date", DAY, "--serve", "--port", "0")
    assert_one_line_error(res, f"cannot read {part}: ")


# --------------------------------------------------------------------------- data dirs


def test_a_missing_data_dir_is_an_error_for_reading_commands(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (
        ["query", "SELECT count(*) FROM trades"],
        ["query", "--named", "vwap", "--param", f"start={DAY}", "--param", f"end={DAY}"],
        ["replay", "--date", DAY],
        ["replay", "--date", DAY, "--serve", "--port", "0"],
        ["ls"],
        ["compact"],
    ):
        res = invoke(*args, "--data-dir", str(missing))
        assert_one_line_error(res, f"no store at {missing}: the folder does not exist")
    assert not missing.exists()


def test_the_default_data_dir_must_exist_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./data here
    res = invoke("query", "SELECT count(*) FROM trades")
    assert_one_line_error(res, "no store at data: the folder does not exist")
    listing = invoke("query", "--named", "--format", "json")  # the catalogue needs no store
    assert listing.exit_code == 0 and '"name":"bars"' in listing.stdout


def test_a_file_as_data_dir_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for args in (["query", "SELECT 1"], ["ls"], ["replay", "--date", DAY], ["ingest", str(a_file)]):
        res = invoke(*args, "--data-dir", str(a_file))
        assert_one_line_error(res, f"no store at {a_file}: it is a file, not a folder")


@pytest.mark.parametrize("url", ["gs://bucket/x", "http://host/x", "file:///tmp/x"])
def test_url_data_dirs_are_refused_by_every_command(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URL taken as a path would leave a folder named "s3:" here
    frames = tmp_path / "frames.ndjson"
    frames.write_text("")
    for args in (
        ["capture", "--sim", "--duration", "1s"],
        ["ingest", str(frames)],
        ["rebuild"],
        ["query", "SELECT 1"],
        ["replay", "--date", DAY],
        ["ls"],
        ["verify"],
        ["compact"],
    ):
        res = invoke(*args, "--data-dir", url)
        # s3:// is a store (tests/s3); any other scheme is refused before anything is done.
        scheme = url.split(":")[0]
        assert_one_line_error(res, f"{url}: the {scheme}:// scheme is not supported")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.ndjson"]


def test_replay_of_nothing_recorded_is_an_error_not_empty_output(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.ndjson"
    res = invoke("replay", "--data-dir", str(store), "--date", "2026-07-21", "--out", str(out))
    assert_one_line_error(res, f"nothing recorded in {store} for 2026-07-21")
    assert not out.exists()  # refused before the output was opened
    res = invoke("replay", "--data-dir", str(store), "--date", DAY, "--symbols", "005930_AL")
    assert_one_line_error(res, f"nothing recorded in {store} for {DAY}")
