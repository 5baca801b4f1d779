"""Every command's --help: an Examples block, flags shown without a `<bool>` hint; and
`--version`."""

from __future__ import annotations

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from promptdag import __version__
from promptdag.cli import app


def _commands() -> list[list[str]]:
    root = get_command(app)
    out: list[list[str]] = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subs = getattr(command, "commands", None)
        if subs:
            out += [[name, sub] for sub, c in subs.items() if not c.hidden]
        elif not command.hidden:
            out.append([name])
    return sorted(out)


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_help_has_examples_and_plain_flags(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Examples" in result.output and "promptdag " in result.output
    assert "<bool>" not in result.output


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"promptdag {__version__}"
