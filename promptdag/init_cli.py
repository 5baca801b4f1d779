"""`promptdag init DIR`: scaffold a small, working project (support-ticket triage) to start from.
Register on the main app with `register(app)`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from promptdag.cli_common import JsonOpt, err, user_errors

__all__ = ["INIT_EPILOG", "init_command", "next_steps", "register"]

INIT_EPILOG = (
    "Examples:\n\n"
    "  promptdag init ticket-triage\n\n"
    "  promptdag init . --json   (in a new, empty directory)\n\n"
    "Then, in the new project:\n\n"
    "  promptdag run triage --input ticket='The app crashes on login' --json\n\n"
    "  promptdag eval --suite triage\n\n"
    "Exit codes: 0 created, 2 the directory is not empty (nothing is overwritten)."
)


def next_steps(directory: Path) -> list[str]:
    """The commands that take a fresh project from scaffold to a passing gate."""
    steps = (
        [] if directory.resolve() == Path.cwd().resolve() else [f"cd {shlex.quote(str(directory))}"]
    )
    return [
        *steps,
        'git init -q && git add -A && git commit -qm "New promptdag project"',
        "promptdag run triage --input ticket='The app crashes on login'",
        "promptdag eval --suite triage",
        "pytest",
        "promptdag prompts lock --check",
    ]


def init_command(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="A new or empty directory for the project.")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Create a promptdag project in DIR: a support-ticket triage pipeline with a structured
    (JSON schema) prompt in two versions, two variants, fixtures, an eval suite, a driver script,
    tests, the prompt lock and CI files. It runs offline out of the box."""
    from promptdag.scaffold import scaffold

    with user_errors():
        made = scaffold(directory)
    steps = next_steps(directory)
    if json_out:
        payload = {"root": str(made.root), "files": list(made.files), "next_steps": steps}
        typer.echo(json.dumps(payload, indent=2))
        return
    err(f"created a promptdag project in {made.root} ({len(made.files)} files): ticket triage.")
    err("Next steps:")
    for step in steps:
        err(f"  {step}")
    err(
        "Then add triage_prompt__v3 to prompts/default.py, point a variant at it, run "
        "`promptdag prompts lock`, commit, and `promptdag gate HEAD~1`. README.md has more."
    )


def register(main_app: typer.Typer) -> None:
    """Add `init` to the main `promptdag` app, with its Examples epilog."""
    main_app.command("init", epilog=INIT_EPILOG)(init_command)
