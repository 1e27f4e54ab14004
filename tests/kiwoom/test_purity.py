"""The Kiwoom core is pure: no module of recorder.kiwoom imports a network or database library
or the recorder's I/O subpackages, and none touches a file, a socket or a process, whether
imported or at work."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import recorder.kiwoom

PACKAGE = Path(recorder.kiwoom.__file__).parent
MODULES = ["recorder.kiwoom", *(f"recorder.kiwoom.{m.name}" for m in pkgutil.iter_modules([str(PACKAGE)]))]
NETWORK = ("asyncio", "websockets", "aiohttp", "httpx", "duckdb", "socket")
IO_PACKAGES = tuple(f"recorder.{p}" for p in ("client", "capture", "store", "replay", "sim", "cli"))
# Modules whose only use is files, sockets or processes.
IO_MODULES = (
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "mmap",
    "subprocess",
    "ssl",
    "select",
    "selectors",
)
IO_MODULES += ("urllib", "http", "requests", "sqlite3")
IO_CALLS = {"open", "print", "input"}
OS_IO = {"open", "remove", "unlink", "rename", "replace", "mkdir", "makedirs", "rmdir", "listdir"}
OS_IO |= {"scandir", "walk", "stat", "fsync", "write", "read", "system", "popen", "fork", "chdir"}


def within(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def test_every_module_of_the_package_is_checked() -> None:
    files = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert [m.rpartition(".")[2] for m in MODULES[1:]] == files
    assert {"decode", "decode_arrow", "fields", "frames", "items", "limits", "schema", "time"} <= set(files)


def imported_names(tree: ast.AST, package: str) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_the_source_imports_and_calls_nothing_that_does_io(module: str) -> None:
    path = PACKAGE / ("__init__.py" if module == "recorder.kiwoom" else module.rpartition(".")[2] + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = imported_names(tree, "recorder.kiwoom")
    assert not [n for n in names if within(n, NETWORK + IO_PACKAGES + IO_MODULES)]
    calls = [
        n.func
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name | ast.Attribute)
    ]
    assert not [c.id for c in calls if isinstance(c, ast.Name) and c.id in IO_CALLS]
    os_calls = [
        c.attr
        for c in calls
        if isinstance(c, ast.Attribute) and isinstance(c.value, ast.Name) and c.value.id == "os"
    ]
    assert not [a for a in os_calls if a in OS_IO]


# Imports run in a fresh interpreter, with every ``import`` statement traced to its importer.
IMPORT_CHECK = """
import builtins, json, sys
seen = []
real = builtins.__import__
def traced(name, globals=None, locals=None, fromlist=(), level=0):
    importer = (globals or {}).get("__name__", "")
    if importer.startswith("recorder") and level == 0:
        seen.append((importer, name))
    return real(name, globals, locals, fromlist, level)
builtins.__import__ = traced
import importlib
importlib.import_module(sys.argv[1])
print(json.dumps({"modules": sorted(sys.modules), "imports": seen}))
"""


@pytest.mark.parametrize("module", MODULES)
def test_importing_it_loads_no_network_library_and_no_io_subpackage(module: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, module], capture_output=True, text=True, check=True
    )
    got = json.loads(out.stdout)
    loaded, imports = got["modules"], got["imports"]
    ours = [m for m in loaded if within(m, ("recorder",))]
    assert all(m in ("recorder", "recorder.errors") or within(m, ("recorder.kiwoom",)) for m in ours), ours
    # pyarrow.util imports socket for a helper of its own; nothing of ours may.
    assert not [m for m in loaded if within(m, NETWORK[:-1])]
    assert "socket" not in loaded or "pyarrow" in loaded
    assert not [(who, name) for who, name in imports if within(name, NETWORK + IO_PACKAGES + IO_MODULES)]
    assert imports, "the trace saw no import: it checks nothing"


def test_the_wire_modules_load_no_pyarrow() -> None:
    """Live capture classifies frames and decodes small batches without pyarrow or numpy."""
    code = (
        "import sys, recorder.kiwoom.frames, recorder.kiwoom.decode, recorder.kiwoom.fields; "
        "print(','.join(m for m in ('pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# The core at work, under an audit hook that records every file, socket or process event.
WORK_CHECK = """
import json, sys
import orjson
from recorder.kiwoom import decode_arrow, frames, strict_json
from recorder.kiwoom.decode import Decoder
from recorder.kiwoom.items import split_item
from recorder.kiwoom.time import parse_time, trading_day

entry = {"values": {"20": "102756", "10": "-251000", "15": "+8", "13": "10055036", "12": "-1.57"},
         "type": "0B", "name": "x", "item": "005930_NX"}
book = {"values": {"21": "102756", "41": "+251500", "61": "3", "51": "-251000", "71": "9"},
        "type": "0D", "item": "005930"}
good = orjson.dumps({"data": [entry, book], "trnm": "REAL"})
odd = good.replace(b'"trnm"', b'"x":NaN,"trnm"')

def work():
    frames.classify(good), frames.classify(b'{"trnm":"PING"}'), frames.build_reg(["005930"], ["0B"])
    rows, rejects = frames.decode_rows(good, 1_784_510_878_000_000_000, 1)
    frames.encode_frame(rows)
    dec = Decoder(trading_day=trading_day("2026-07-20"))
    for i, raw in enumerate([good, odd, b"{broken"] * 50):
        dec.add(raw, 1_784_510_878_000_000_000, i)
    dec.finish()
    batch = [good, odd, good] * 400
    decode_arrow.decode_frames(batch, [1_784_510_878_000_000_000] * len(batch), list(range(len(batch))))
    block = b"\\n".join([good] * 300 + [odd]) + b"\\n"
    t, n = decode_arrow.parse_block(block)
    t, n = decode_arrow.parse_block(b"\\n".join([good] * 300) + b"\\n")
    decode_arrow.decode_block(t, 1, 1_784_510_878_000_000_000)
    strict_json.refused(odd), split_item("005930_NX"), parse_time("102756", 1_784_510_878_000_000_000)

work()  # first run: lazy imports (pyarrow pulls in more on first use) may read files
events = []
PREFIXES = ("open", "socket.", "subprocess.", "os.", "shutil.", "mmap.", "urllib.", "http.", "glob.")
def hook(event, args):
    if event.startswith(PREFIXES):
        events.append([event, repr(args)[:200]])
sys.addaudithook(hook)
work()
print(json.dumps(events))
"""


def test_at_work_it_touches_no_file_socket_or_process() -> None:
    out = subprocess.run([sys.executable, "-c", WORK_CHECK], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
