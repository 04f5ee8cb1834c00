"""Every command has --help; the README's CLI reference matches the commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT

from rfm.cli.main import cli

COMMANDS = [["data", "convert"], ["data", "split"], ["data", "synth"], ["data", "stats"], ["train"], ["export"],
            ["eval"], ["adapt"], ["feedback"], ["score"], ["rerank"], ["users", "list"], ["bench"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_readme_cli_reference_is_in_sync():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check",
                          str(ROOT / "README.md")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_unknown_option_is_usage_error():
    result = CliRunner().invoke(cli, ["train", "x.jsonl", "-o", "y", "--nope"])
    assert result.exit_code == 2
