"""Build-time config: the framework's keys (prompt pack, LLM settings) with their defaults and
ranges, the app's keys from the project contract, and parsing `KEY=VALUE` overrides.

Precedence, lowest first: defaults < the variant's config < `--config KEY=VALUE` overrides.
Per-request inputs (declared per pipeline in the contract) are a separate, disjoint set of names.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptdag.contract import ConfigKey

__all__ = [
    "DEFAULTS",
    "LLM_BACKENDS",
    "ConfigSchema",
    "canonical_config",
    "coerce",
    "data_dir",
    "parse_assignments",
]

LLM_BACKENDS = ("offline", "openai")

DEFAULTS: dict[str, Any] = {
    "prompt_pack": "default",
    "llm_backend": "offline",
    "llm_model": "offline-extractive",
    "llm_base_url": "",
    "llm_temperature": 0.0,
    "llm_max_output_tokens": 600,
    "llm_timeout_s": 60.0,
    "llm_max_retries": 2,
    "llm_max_concurrency": 8,
    "llm_deadline_s": 300.0,
    "llm_cache": "use",
    "llm_allow_incomplete": False,
}

_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS.update({"false": False, "0": False, "no": False, "off": False})

_RANGES: dict[str, tuple[float, float]] = {
    "llm_temperature": (0.0, 2.0),
    "llm_max_output_tokens": (1, 100_000),
    "llm_timeout_s": (0.1, 3_600.0),
    "llm_max_retries": (0, 10),
    "llm_max_concurrency": (1, 256),
    "llm_deadline_s": (0.1, 86_400.0),
}


@dataclass(frozen=True)
class ConfigSchema:
    """Every config key a project knows: the framework's plus the contract's, with defaults,
    ranges and allowed values."""

    defaults: dict[str, Any]
    ranges: dict[str, tuple[float, float]]
    choices: dict[str, tuple[Any, ...]]

    @classmethod
    def for_contract(cls, keys: Mapping[str, ConfigKey]) -> ConfigSchema:
        defaults, ranges = dict(DEFAULTS), dict(_RANGES)
        choices: dict[str, tuple[Any, ...]] = {}
        for key in keys.values():
            defaults[key.name] = key.default
            if key.min is not None or key.max is not None:
                ranges[key.name] = (
                    -math.inf if key.min is None else key.min,
                    math.inf if key.max is None else key.max,
                )
            if key.choices:
                choices[key.name] = key.choices
        return cls(defaults, ranges, choices)

    def coerce(self, key: str, value: Any) -> tuple[Any, str | None]:
        out, problem = coerce(key, value, self.defaults, self.ranges)
        if problem is None and key in self.choices and out not in self.choices[key]:
            allowed = ", ".join(map(str, self.choices[key]))
            return out, f"{key}={out!r} is not allowed. Use one of: {allowed}."
        return out, problem


def coerce(
    key: str,
    value: Any,
    defaults: Mapping[str, Any] = DEFAULTS,
    ranges: Mapping[str, tuple[float, float]] = _RANGES,
) -> tuple[Any, str | None]:
    """`value` as the type of defaults[key] (strings from the command line are parsed); a
    problem message instead when it does not fit."""
    default = defaults.get(key)
    if isinstance(default, bool):  # bool("false") is True: parse the words
        word = str(value).strip().lower()
        if isinstance(value, bool) or word in _BOOLS:
            return (value if isinstance(value, bool) else _BOOLS[word]), None
        return value, f"{key}={value!r} is not a boolean: use true or false (default {default!r})."
    if default is None or (isinstance(value, type(default)) and not isinstance(value, bool)):
        out = value
    else:
        try:
            out = type(default)(value)
        except (TypeError, ValueError):
            return (
                value,
                f"{key}={value!r} is not a {type(default).__name__} (default {default!r}).",
            )
    if key in ranges and not ranges[key][0] <= out <= ranges[key][1]:
        lo, hi = ranges[key]
        return out, f"{key}={out!r} is out of range: use a value from {lo:g} to {hi:g}."
    return out, None


def parse_assignments(pairs: Iterable[str], flag: str = "--config") -> dict[str, str]:
    """`["a=1", "b=x"]` → `{"a": "1", "b": "x"}`; a pair without `=` is a ValueError naming it."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            example = "llm_model=gpt-4o-mini" if flag == "--config" else "NAME=VALUE"
            raise ValueError(f"{flag} {pair!r} is not KEY=VALUE (e.g. {flag} {example}).")
        out[key.strip()] = value.strip()
    return out


def canonical_config(config: Mapping[str, Any]) -> str:
    """The config as sorted, compact JSON: the form hashed into fingerprints."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=str)


def data_dir(project_root: Path) -> Path:
    """PROMPTDAG_DATA_DIR, else `.promptdag/` in the project root."""
    env = os.environ.get("PROMPTDAG_DATA_DIR")
    return Path(env).expanduser().resolve() if env else project_root / ".promptdag"
