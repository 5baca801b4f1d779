"""`promptdag init`: a new project from a template shipped inside the package.

A template is a directory under `promptdag/templates/` (package data, read with
`importlib.resources`, so it works from a wheel as from a checkout). File names are mapped on
the way out so the template itself is inert inside the package: `NAME.py-tpl` becomes
`NAME.py` (never imported, linted or byte-compiled as part of promptdag) and `dot-NAME`
becomes `.NAME` (package data globs skip dotfiles); dot-directories (tool caches) are skipped.
Contents are copied byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from promptdag.errors import ProjectError

__all__ = ["DEFAULT_TEMPLATE", "Scaffold", "scaffold", "template_files", "templates"]

DEFAULT_TEMPLATE = "init"
_SKIP = frozenset({"__pycache__", ".DS_Store"})


@dataclass(frozen=True)
class Scaffold:
    """What `scaffold` wrote: the project root and its files (relative, sorted)."""

    root: Path
    template: str
    files: tuple[str, ...]


def _templates_root() -> Traversable:
    return files("promptdag").joinpath("templates")


def templates() -> list[str]:
    """The names of the templates shipped with promptdag."""
    return sorted(p.name for p in _templates_root().iterdir() if p.is_dir())


def _output_name(name: str) -> str:
    if name.endswith("-tpl"):
        name = name[: -len("-tpl")]
    if name.startswith("dot-"):
        name = "." + name[len("dot-") :]
    return name


def _walk(node: Traversable, prefix: PurePosixPath, out: dict[str, bytes]) -> None:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name.startswith(".") or child.name in _SKIP or child.name.endswith(".pyc"):
            continue
        target = prefix / _output_name(child.name)
        if child.is_dir():
            _walk(child, target, out)
        else:
            out[target.as_posix()] = child.read_bytes()


def template_files(template: str = DEFAULT_TEMPLATE) -> dict[str, bytes]:
    """Every file of `template`: its path in a new project → its bytes (sorted by path)."""
    node = _templates_root().joinpath(template)
    if not node.is_dir():
        raise ProjectError(
            f"template {template!r} is not shipped with promptdag. "
            f"Templates: {', '.join(templates()) or 'none'}."
        )
    out: dict[str, bytes] = {}
    _walk(node, PurePosixPath(), out)
    return dict(sorted(out.items()))


def _check_target(target: Path) -> None:
    if target.exists() and not target.is_dir():
        raise ProjectError(f"{target} exists and is not a directory. Choose a new directory.")
    if target.is_dir() and any(target.iterdir()):
        raise ProjectError(
            f"{target} is not empty: promptdag init never overwrites files. "
            "Choose a new or empty directory."
        )


def scaffold(target: str | Path, template: str = DEFAULT_TEMPLATE) -> Scaffold:
    """Write `template` into `target` (a new or empty directory); a ProjectError otherwise,
    before anything is written."""
    root = Path(target)
    contents = template_files(template)
    _check_target(root)
    for relative, data in contents.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Scaffold(root=root.resolve(), template=template, files=tuple(contents))
