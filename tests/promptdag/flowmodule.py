"""A Hamilton dataflow module made from source text for a test, registered in sys.modules
(Hamilton finds functions through their module) while the test uses it."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

__all__ = ["flow_module"]


@contextlib.contextmanager
def flow_module(name: str, source: str) -> Iterator[types.ModuleType]:
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    try:
        exec(source, mod.__dict__)
        yield mod
    finally:
        del sys.modules[name]
