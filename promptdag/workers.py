"""Calling a project's own function in a worker process. The worker is a fresh interpreter
(forkserver or spawn) that has promptdag installed but not the project's tree on `sys.path`;
`call_in_project` puts the tree there before importing the function by name, so dataflow code
can use process pools without the project being installed."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["call_in_project", "project_root_of"]


def project_root_of(module: ModuleType) -> str:
    """The directory a module's top-level package is imported from (the project root)."""
    depth = module.__name__.count(".") + (1 if Path(module.__file__ or "").name == "__init__.py" else 0)
    return str(Path(module.__file__ or "").resolve().parents[depth])


def call_in_project(root: str, ref: str, *args: Any) -> Any:
    """Import `module:function` from the project at `root` and call it with `args`."""
    if root not in sys.path:
        sys.path.insert(0, root)
    module_name, _, name = ref.partition(":")
    return getattr(importlib.import_module(module_name), name)(*args)
