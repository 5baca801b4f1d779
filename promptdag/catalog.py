"""The prompt catalog: every prompt node of every pack, its versions, where each is defined, and
the convention breaks Hamilton would let through silently (an undecorated `__vN` becomes another
node; a decorator whose key or value does not match the name selects the wrong version)."""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from hamilton.function_modifiers.base import NodeResolver
from hamilton.function_modifiers.configuration import config as config_decorator

from promptdag.errors import ConfigError
from promptdag.project import Project

__all__ = ["PromptCatalog", "PromptVersion", "discover_prompts", "load_fixtures", "version_key"]

_VERSIONED = re.compile(r"^(?P<node>[a-z][a-z0-9_]*?)__v(?P<n>[0-9]+)$")


def version_key(node: str) -> str:
    """The config key that selects a version of `node`."""
    return f"{node}_version"


@dataclass(frozen=True)
class PromptVersion:
    node: str
    version: str
    pack: str
    function: Callable[..., str]
    file: str
    line: int
    inputs: tuple[str, ...]
    description: str

    @property
    def ref(self) -> str:
        return f"{self.node}@{self.version}"


@dataclass(frozen=True)
class PromptCatalog:
    """pack → node → version → PromptVersion, plus the convention problems found."""

    packs: dict[str, dict[str, dict[str, PromptVersion]]]
    problems: tuple[str, ...]
    package: str = "prompts"

    def nodes(self, pack: str) -> list[str]:
        return sorted(self.packs.get(pack, {}))

    def versions(self, pack: str, node: str) -> list[str]:
        found = self.packs.get(pack, {}).get(node, {})
        return sorted(found, key=lambda v: int(v[1:]))

    def all_nodes(self) -> list[str]:
        return sorted({n for nodes in self.packs.values() for n in nodes})

    def version_keys(self) -> list[str]:
        return [version_key(n) for n in self.all_nodes()]


def _decorators(fn: Callable[..., object]) -> list[object]:
    return list(getattr(fn, NodeResolver.get_lifecycle_name(), []))


def _check(fn: Callable[..., object], node: str, version: str, where: str) -> str | None:
    key = version_key(node)
    configs = [d for d in _decorators(fn) if isinstance(d, config_decorator)]
    if not configs:
        return (
            f'{where}: {fn.__name__} is not decorated: add @config.when({key}="{version}") '
            "(undecorated, Hamilton would make it a separate node)."
        )
    for dec in configs:
        used = list(getattr(dec, "_config_used", None) or [])
        if used == [key] and dec.does_resolve({key: version}):
            return None
    return f'{where}: {fn.__name__} must be decorated exactly @config.when({key}="{version}").'


def _pack_prompts(
    pack: str, module: ModuleType, problems: list[str]
) -> dict[str, dict[str, PromptVersion]]:
    nodes: dict[str, dict[str, PromptVersion]] = {}
    for name, fn in inspect.getmembers(module, inspect.isfunction):
        if fn.__module__ != module.__name__ or name.startswith("_"):
            continue
        m = _VERSIONED.match(name)
        file = inspect.getsourcefile(fn) or module.__name__
        line = inspect.getsourcelines(fn)[1]
        where = f"{module.__name__}:{line}"
        if m is None:
            if _decorators(fn):
                continue
            problems.append(
                f"{where}: {name} in a prompt pack is not a versioned prompt "
                "(<node>__vN); move helpers to a _-prefixed module."
            )
            continue
        node, version = m["node"], f"v{m['n']}"
        problem = _check(fn, node, version, where)
        if problem:
            problems.append(problem)
            continue
        doc = (inspect.getdoc(fn) or "").splitlines()
        nodes.setdefault(node, {})[version] = PromptVersion(
            node=node,
            version=version,
            pack=pack,
            function=fn,
            file=file,
            line=line,
            inputs=tuple(inspect.signature(fn).parameters),
            description=doc[0] if doc else "",
        )
    return nodes


def discover_prompts(project: Project) -> PromptCatalog:
    """Every pack's prompt versions, and every convention problem, in one pass."""
    problems: list[str] = []
    packs = {
        name: _pack_prompts(name, mod, problems) for name, mod in sorted(project.packs.items())
    }
    return PromptCatalog(packs=packs, problems=tuple(problems), package=project.contract.prompts)


def load_fixtures(project: Project) -> dict[str, dict[str, object]]:
    """The fixture input sets of the contract's fixtures file, by name (empty when none)."""
    path = project.contract.fixtures
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path} is not valid TOML: {exc}"]) from exc
    fixtures = data.get("fixtures") or {}
    if not isinstance(fixtures, dict) or not all(isinstance(v, dict) for v in fixtures.values()):
        raise ConfigError([f"{path}: expected [fixtures.NAME] tables."])
    return {name: dict(values) for name, values in sorted(fixtures.items())}
