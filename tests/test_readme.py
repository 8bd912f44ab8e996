"""The README's commands work as pasted: no `uv` needed, real make targets and CLI commands,
no links outside the repository, tables that render."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaychat.cli import app

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
SHELL_BLOCKS = re.findall(r"```sh\n(.*?)```", README, re.DOTALL)


def shell_lines() -> list[str]:
    """Every command line of the sh blocks, continuation lines joined, comments dropped."""
    joined = "\n".join(SHELL_BLOCKS).replace("\\\n", " ")
    lines = (line.split(" #")[0].strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def test_nothing_needs_uv_on_the_path() -> None:
    assert "uv run" not in README
    assert "uvx relaychat" not in README


def test_every_make_target_exists() -> None:
    targets = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE))
    code = "\n".join(shell_lines() + re.findall(r"`([^`\n]+)`", README))
    used = set(re.findall(r"\bmake ([a-z-]+)", code))
    assert used and used <= targets, used - targets


def cli_commands() -> list[list[str]]:
    """`relaychat <group> <command>` as the sh blocks call it (through .venv/bin)."""
    found = []
    for line in shell_lines():
        for match in re.finditer(r"\.venv/bin/relaychat ((?:[a-z][a-z-]* ?){1,3})", line):
            words = match.group(1).split()
            found.append(words)
    return found


@pytest.mark.parametrize("words", cli_commands(), ids=" ".join)
def test_every_cli_command_shown_exists(words: list[str]) -> None:
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output


def test_commands_name_no_placeholder_to_edit() -> None:
    for line in shell_lines():
        assert "<id>" not in line, line


def test_no_link_leaves_the_repository() -> None:
    for target in re.findall(r"\]\(([^)]+)\)|`(\.\./[^`]*)`", README):
        path = target[0] or target[1]
        assert not path.startswith("../"), path
        if not path.startswith(("http", "#")):
            assert (ROOT / path).exists(), path


def test_every_table_has_a_header_row() -> None:
    # A blank line inside a table starts a new one without a header: it renders as text.
    lines = README.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and (i == 0 or not lines[i - 1].startswith("|")):
            assert i + 1 < len(lines) and re.match(r"\|\s*---", lines[i + 1]), line


def test_the_example_config_is_current_and_the_copy_is_ignored() -> None:
    example = (ROOT / "relaychat.example.yaml").read_text()
    assert "later release" not in example
    assert "/relaychat.yaml" in (ROOT / ".gitignore").read_text().splitlines()
    assert "follow." not in README.split("## Configuration")[0]


def test_shell_lines_parse() -> None:
    for line in shell_lines():
        shlex.split(line.replace("$(", "(").replace("&", ""), comments=True)
