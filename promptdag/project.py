"""The promptdag project a command works on: the tree that holds `dataflows/`, `prompts/` and
`prompts/variants.toml`, found from the current directory (or `PROMPTDAG_PROJECT`), with its
modules imported from that tree and nowhere else."""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from promptdag.errors import ProjectError

__all__ = ["Project", "find_project", "load_project"]

VARIANTS_FILE = "prompts/variants.toml"
_PACKAGES = ("dataflows", "prompts")


@dataclass(frozen=True)
class Project:
    """A loaded project: its root, its dataflow modules and its prompt packs by name."""

    root: Path
    dataflow_modules: tuple[ModuleType, ...]
    packs: dict[str, ModuleType]

    @property
    def variants_path(self) -> Path:
        return self.root / VARIANTS_FILE

    def relpath(self, path: str | Path) -> str:
        """`path` relative to the project root when it is inside it."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)


def find_project(start: str | Path | None = None) -> Path:
    """The nearest directory at or above `start` holding both dataflows/ and prompts/."""
    env = os.environ.get("PROMPTDAG_PROJECT")
    origin = Path(start or env or Path.cwd()).resolve()
    for candidate in (origin, *origin.parents):
        if all((candidate / pkg).is_dir() for pkg in _PACKAGES):
            return candidate
    raise ProjectError(
        f"no promptdag project at or above {origin}: expected a directory holding both "
        "dataflows/ and prompts/. Run the command inside your project, or set PROMPTDAG_PROJECT."
    )


def _module_names(root: Path, package: str) -> list[str]:
    return sorted(
        f"{package}.{p.stem}" for p in (root / package).glob("*.py") if not p.name.startswith("_")
    )


def _import_from(root: Path, name: str) -> ModuleType:
    module = importlib.import_module(name)
    file = Path(getattr(module, "__file__", "") or "").resolve()
    if root not in file.parents:
        raise ProjectError(
            f"module {name} was imported from {file}, not from the project at {root}. "
            "Another copy shadows it; run promptdag from a fresh process in the project."
        )
    return module


def _claim_import_path(root: Path) -> None:
    """Make `root` win the import of dataflows/prompts, dropping copies loaded from elsewhere."""
    root_str = str(root)
    if sys.path[:1] != [root_str]:
        sys.path.insert(0, root_str)
    for name in list(sys.modules):
        if name.split(".")[0] in _PACKAGES:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if file and root not in Path(file).resolve().parents:
                del sys.modules[name]
    importlib.invalidate_caches()


def load_project(root: str | Path | None = None) -> Project:
    """Import the project's dataflow modules and prompt packs from its own tree."""
    path = find_project(root)
    _claim_import_path(path)
    dataflows = tuple(_import_from(path, n) for n in _module_names(path, "dataflows"))
    packs = {n.split(".")[1]: _import_from(path, n) for n in _module_names(path, "prompts")}
    if not dataflows:
        raise ProjectError(f"{path / 'dataflows'} holds no dataflow modules (*.py).")
    if not packs:
        raise ProjectError(f"{path / 'prompts'} holds no prompt pack modules (*.py).")
    return Project(root=path, dataflow_modules=dataflows, packs=packs)
