"""The package tree is the architecture: a few top-level modules, one subpackage per concern,
each saying what it owns and what it must not do; no module too long to read; dependencies
point down the layers (cli → capture/replay → client/store/sim → kiwoom)."""

from __future__ import annotations

import ast
from pathlib import Path

import recorder

ROOT = Path(recorder.__file__).parent
SUBPACKAGES = ("kiwoom", "client", "capture", "store", "replay", "sim", "report", "cli")
# What each layer may import from the package (besides itself, errors and the top-level API).
ALLOWED = {
    "kiwoom": set(),
    "client": {"kiwoom"},
    "store": {"kiwoom"},
    "sim": {"kiwoom"},
    "replay": {"kiwoom", "store", "sim"},
    "capture": {"kiwoom", "client", "store", "sim"},
    "report": set(),
    "cli": {"kiwoom", "client", "store", "sim", "replay", "capture", "report"},
}


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_few_top_level_modules_and_one_subpackage_per_concern() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= 8, top
    for name in SUBPACKAGES:
        init = ROOT / name / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "must not" in doc.lower(), (
            f"recorder/{name} needs a docstring saying what it must not do"
        )


def test_no_module_over_700_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 700}
    assert not long, long


def test_dependencies_point_down_the_layers() -> None:
    wrong = []
    for path in _modules():
        rel = path.relative_to(ROOT).parts
        if len(rel) < 2:
            continue
        layer = rel[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] != "recorder" or len(parts) < 2 or parts[1] in (layer, "errors"):
                    continue
                if parts[1] not in ALLOWED[layer]:
                    wrong.append(f"{'/'.join(rel)} imports {name}")
    assert not wrong, wrong
