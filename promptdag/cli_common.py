"""What every promptdag command shares: the common options and the rule that a library error
is one line on stderr plus its documented exit code, never a traceback."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from promptdag.config import parse_assignments
from promptdag.errors import PromptdagError

__all__ = [
    "ConfigOpt",
    "JsonOpt",
    "QuietOpt",
    "VariantOpt",
    "err",
    "overrides",
    "user_errors",
]

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--config",
        "-c",
        metavar="KEY=VALUE",
        help="Build-time config KEY=VALUE (repeatable); overrides the variant.",
    ),
]
VariantOpt = Annotated[
    str | None, typer.Option("--variant", "-V", help="A named variant from prompts/variants.toml.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress display on stderr.")]


def hide_flag_types() -> None:
    """Show flags as `--json`, not `--json <bool>`: this typer prints a type beside every
    option, flags included. Called once by the CLI's entry module (the CLI's own process)."""
    from typer.core import TyperOption

    if getattr(TyperOption.display_type_rich, "_promptdag", False):
        return
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich._promptdag = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def err(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Library errors → one line and their exit code; never a traceback."""
    try:
        yield
    except PromptdagError as exc:
        err(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except ValueError as exc:  # bad --config syntax and the like, raised before any build
        err(f"error: {exc}")
        raise typer.Exit(2) from None
    except (sqlite3.Error, OSError) as exc:  # a file or database that cannot be read or written
        err(f"error: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


def overrides(pairs: list[str] | None) -> dict[str, str]:
    return parse_assignments(pairs or [])
