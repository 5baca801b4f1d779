"""The project a command works on: the nearest directory holding a `pyproject.toml` with a
`[tool.promptdag]` contract (or `PROMPTDAG_PROJECT`), its contract, and its dataflow modules and
prompt packs imported from that tree and nowhere else.

The project's root is on `sys.path` only while its modules are imported (`project_imports`);
copies of its packages loaded from another tree are evicted first, so two projects load in one
process without shadowing each other, and nothing is left on `sys.path` afterwards.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from promptdag.contract import CONTRACT_FILE, Contract, load_contract
from promptdag.errors import ConfigError, ProjectError

__all__ = ["Project", "find_project", "load_project", "project_imports"]


@dataclass(frozen=True)
class Project:
    """A loaded project: its root, its contract, its dataflow modules and its prompt packs."""

    root: Path
    contract: Contract
    dataflow_modules: tuple[ModuleType, ...]
    packs: dict[str, ModuleType]

    @property
    def variants_path(self) -> Path:
        return self.contract.variants

    def relpath(self, path: str | Path) -> str:
        """`path` relative to the project root when it is inside it."""
        p = Path(path).resolve()
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return str(p)

    def import_object(self, ref: str) -> object:
        """`package.module:name` from the project's own tree (e.g. an eval suite's check)."""
        module_name, sep, attr = ref.partition(":")
        if not sep or not module_name or not attr:
            raise ConfigError([f"{ref!r} is not module:name (e.g. ci.evals.checks:my_check)."])
        with project_imports(self.root):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigError([f"cannot import {module_name} from {self.root}: {exc}"]) from exc
        if not hasattr(module, attr):
            raise ConfigError([f"{module_name} has no {attr!r}."])
        return getattr(module, attr)


def _has_contract(directory: Path) -> bool:
    path = directory / CONTRACT_FILE
    if not path.is_file():
        return False
    try:
        return "[tool.promptdag" in path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def find_project(start: str | Path | None = None) -> Path:
    """The nearest directory at or above `start` whose pyproject.toml has [tool.promptdag]."""
    env = os.environ.get("PROMPTDAG_PROJECT")
    origin = Path(start or env or Path.cwd()).resolve()
    for candidate in (origin, *origin.parents):
        if _has_contract(candidate):
            return candidate
    raise ProjectError(
        f"no promptdag project at or above {origin}: expected a {CONTRACT_FILE} with a "
        "[tool.promptdag] table. Run the command inside your project, set PROMPTDAG_PROJECT, "
        "or create one with `promptdag init DIR`."
    )


def _top(name: str) -> str:
    return name.split(".")[0]


@contextlib.contextmanager
def project_imports(root: Path, tops: tuple[str, ...] = ()) -> Iterator[None]:
    """Import from `root` for the duration: it is first on sys.path, and copies of `tops`
    (top-level package names) loaded from elsewhere are evicted. sys.path is restored after."""
    root_str = str(root)
    for name in list(sys.modules):
        if _top(name) in tops:
            file = getattr(sys.modules[name], "__file__", None) or ""
            paths = list(getattr(sys.modules[name], "__path__", []) or [])
            where = [Path(file)] if file else [Path(p) for p in paths]
            if where and not any(root in w.resolve().parents or w.resolve() == root for w in where):
                del sys.modules[name]
    sys.path.insert(0, root_str)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(root_str)


@contextlib.contextmanager
def project_modules(project: Project) -> Iterator[None]:
    """The project's own module objects under their names in sys.modules for the duration, the
    previous entries put back after. Hamilton finds a module's functions through sys.modules
    (`inspect.getmodule`), and another project with packages of the same names, loaded since
    in this process, may have replaced them there."""
    mine = {m.__name__: m for m in (*project.dataflow_modules, *project.packs.values())}
    saved = {name: sys.modules.get(name) for name in mine}
    sys.modules.update(mine)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _import(root: Path, name: str) -> ModuleType:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ProjectError(f"cannot import {name} from the project at {root}: {exc}") from exc
    file = Path(getattr(module, "__file__", "") or "").resolve()
    if root not in file.parents:
        raise ProjectError(
            f"module {name} was imported from {file}, not from the project at {root}. "
            "Another copy shadows it; run promptdag from a fresh process in the project."
        )
    return module


def _submodules(module: ModuleType) -> list[str]:
    """A package's public modules (not starting with _), sorted; a module stands for itself."""
    if not hasattr(module, "__path__"):
        return [module.__name__]
    return sorted(
        f"{module.__name__}.{info.name}"
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_")
    )


def load_project(root: str | Path | None = None) -> Project:
    """Read the contract and import the project's dataflow modules and prompt packs."""
    path = find_project(root)
    contract = load_contract(path)
    tops = tuple({_top(n) for n in (*contract.dataflows, contract.prompts)})
    with project_imports(path, tops):
        dataflows: list[ModuleType] = []
        for name in contract.dataflows:
            dataflows += [_import(path, n) for n in _submodules(_import(path, name))]
        prompts_pkg = _import(path, contract.prompts)
        packs = {n.rsplit(".", 1)[1]: _import(path, n) for n in _submodules(prompts_pkg)}
    if not dataflows:
        raise ProjectError(f"{contract.dataflows} hold no dataflow modules (*.py) in {path}.")
    if not packs or not hasattr(prompts_pkg, "__path__"):
        raise ProjectError(
            f"{contract.prompts} in {path} holds no prompt pack modules: make it a package "
            "with one module per pack (e.g. prompts/default.py)."
        )
    return Project(root=path, contract=contract, dataflow_modules=tuple(dataflows), packs=packs)
