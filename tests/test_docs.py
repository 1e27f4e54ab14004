"""The docs match the code: the README lists every command and option as ``--help`` spells
it, and every document the code cites is one the repository carries.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from recorder.cli.main import main
from recorder.kiwoom.schema import data_dictionary

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROTOCOL = ROOT / "docs" / "protocol.md"
CODE_DIRS = ("recorder", "queries", "soak", "benchmarks")
FOREIGN_DOCS = re.compile(r"ARCHITECTURE\.md|kiwoom-protocol\.md")
DOCS_PATH = re.compile(r"\bdocs/[\w./-]*\w")
SECTION = re.compile(r"§(\d+(?:\.\d+)*)")


def commands(cmd: click.Command, ctx: click.Context) -> Iterator[tuple[str, click.Command, click.Context]]:
    """``(path, command, context)`` for the group and every command under it."""
    yield ctx.command_path, cmd, ctx
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None
            yield from commands(sub, click.Context(sub, info_name=name, parent=ctx))


def spellings(cmd: click.Command, ctx: click.Context) -> list[str]:
    """Every visible option spelling of ``cmd`` (``--nxt`` and ``--no-nxt`` both), but --help."""
    help_option = cmd.get_help_option(ctx)
    out = []
    for p in cmd.get_params(ctx):
        if isinstance(p, click.Option) and not p.hidden and p is not help_option:
            out.extend(p.opts + p.secondary_opts)
    return out


def mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


def code_files(*dirs: str, suffixes: tuple[str, ...] = (".py", ".sql", ".md")) -> Iterator[Path]:
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*")):
            if path.suffix in suffixes and "__pycache__" not in path.parts:
                yield path


# --------------------------------------------------------------------------- README


def test_readme_lists_every_command_and_option() -> None:
    ctx = click.Context(main, info_name="recorder")
    missing = []
    seen = 0
    for path, cmd, sub in commands(main, ctx):
        if cmd is not main and f"`{path}`" not in README and not mentions(README, path):
            missing.append(path)
        for opt in spellings(cmd, sub):
            seen += 1
            if not mentions(README, opt):
                missing.append(f"{path} {opt}")
    assert seen > 40  # the walk really saw the option tree
    assert not missing, f"README.md does not mention: {', '.join(missing)}"


def test_readme_reference_shows_options_as_help_does() -> None:
    """The reference shows each option's help-record spelling: ``--env [prod|mock]``."""
    ctx = click.Context(main, info_name="recorder")
    reference = README[README.index("## Command reference") :]
    missing = []
    for path, cmd, sub in commands(main, ctx):
        for p in cmd.get_params(sub):
            if not isinstance(p, click.Option) or p.hidden or p is cmd.get_help_option(sub):
                continue
            record = p.get_help_record(sub)
            assert record is not None
            if f"`{record[0].replace('|', chr(92) + '|')}`" not in reference:
                missing.append(f"{path} {record[0]}")
    assert not missing, f"the command reference lacks: {', '.join(missing)}"


def test_readme_first_screen_and_exit_codes() -> None:
    first_screen = "\n".join(README.splitlines()[:25])
    assert "make demo" in first_screen and "make test" in first_screen
    for code, words in (
        (0, "success"),
        (1, "store or journal failure"),
        (2, "usage"),
        (3, "credentials refused"),
        (4, "never connected"),
    ):
        assert re.search(rf"^\| {code} \| {words}", README, re.MULTILINE), code


# --------------------------------------------------------------------------- citations


def test_code_cites_no_document_the_repo_lacks() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in code_files(*CODE_DIRS)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FOREIGN_DOCS.search(line)
    ]
    assert not offenders, f"cite docs/architecture.md or 'protocol notes §N' instead: {offenders}"


def test_every_cited_docs_path_exists() -> None:
    cited: dict[str, list[str]] = {}
    for path in [*code_files(*CODE_DIRS, "tests"), ROOT / "README.md"]:
        for m in DOCS_PATH.finditer(path.read_text(encoding="utf-8")):
            cited.setdefault(m.group(), []).append(str(path.relative_to(ROOT)))
    assert "docs/architecture.md" in cited  # the scan found the citations
    missing = {doc: where for doc, where in cited.items() if not (ROOT / doc).exists()}
    assert not missing, f"cited but absent: {missing}"


def protocol_sections() -> set[str]:
    """Section numbers of docs/protocol.md: its headings, and its numbered items as
    sub-sections of the heading above them and of their top-level section (§9.20, §3.1.4)."""
    sections: set[str] = set()
    current = top = ""
    for line in PROTOCOL.read_text(encoding="utf-8").splitlines():
        if h := re.match(r"#{2,4} (\d+(?:\.\d+)*)\.? ", line):
            current = h.group(1)
            top = current.split(".")[0]
            sections.add(current)
        elif (item := re.match(r"(\d+)\. ", line)) and current:
            sections.update({f"{current}.{item.group(1)}", f"{top}.{item.group(1)}"})
    return sections


def test_protocol_section_citations_resolve() -> None:
    sections = protocol_sections()
    assert {"1", "3.1", "3.4", "4.7", "5.3", "6", "9"} <= sections
    unresolved = [
        f"{path.relative_to(ROOT)}: §{m.group(1)}"
        for path in code_files(*CODE_DIRS, "tests", suffixes=(".py", ".sql"))
        for m in SECTION.finditer(path.read_text(encoding="utf-8"))
        if m.group(1) not in sections
    ]
    assert not unresolved, f"no such section in docs/protocol.md: {unresolved}"


# --------------------------------------------------------------------------- the reference


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def reference() -> str:
    """The README's command reference, generated from the click tree (``python -m tests.test_docs``)."""
    ctx = click.Context(main, info_name="recorder")
    out = [
        "## Command reference",
        "",
        "Every option as `--help` spells it (`python -m tests.test_docs` regenerates this section from the",
        "click commands; `tests/test_docs.py` checks that every command and option appears). Every command",
        "also takes `--help`.",
        "",
    ]
    for path, cmd, sub in commands(main, ctx):
        usage = " ".join(cmd.collect_usage_pieces(sub))
        first = " ".join((cmd.help or "").split("\n\n")[0].split())
        what = first if cmd is not main else "options that go before the command."
        out += [f"### `{path}`", "", f"`{path} {usage}`: {what}", "", "| option | |", "|---|---|"]
        for p in cmd.get_params(sub):
            if not isinstance(p, click.Option) or p.hidden or p is cmd.get_help_option(sub):
                continue
            record = p.get_help_record(sub)
            assert record is not None
            text = " ".join(record[1].split()).replace("<", "&lt;").replace(">", "&gt;")
            out.append(f"| `{_cell(record[0])}` | {_cell(text)} |")
        out.append("")
    return "\n".join(out)


def test_readme_reference_is_current() -> None:
    """The README's command reference is what the click commands say now, help texts included
    (``python -m tests.test_docs`` regenerates it)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("\n", readme.index("<!-- command reference")) + 1
    section = readme[start : readme.index("<!-- end of command reference -->")]
    assert section.strip() == reference().strip(), "stale: regenerate with python -m tests.test_docs"


def test_data_dictionary_is_current() -> None:
    """docs/data-dictionary.md says what the FID tables say (python -m tests.test_docs dictionary)."""
    assert (ROOT / "docs" / "data-dictionary.md").read_text(encoding="utf-8") == data_dictionary()


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["dictionary"]:
        print(data_dictionary(), end="")
    else:
        print(reference())
