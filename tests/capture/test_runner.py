"""``recorder capture`` end to end: what a run that records nothing leaves behind, the URL
pair rule, and the absence of test hooks from the command line."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from recorder.cli.main import main


@pytest.mark.parametrize("hook", [["--throttle-writes", "0.5"], ["--session-option", "kicked_backoff_s=0.5"]])
def test_the_command_line_has_no_test_hooks(hook: list[str]) -> None:
    r = CliRunner().invoke(main, ["capture", "--symbols", "005930", *hook])
    assert r.exit_code == 2 and "No such option" in r.output
