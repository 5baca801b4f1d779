"""Build-time config: the defaults, their types, and parsing `KEY=VALUE` overrides.

Precedence, lowest first: DEFAULTS < the variant's config < `--config KEY=VALUE` overrides.
Per-request inputs (REQUEST_INPUTS) are a separate, disjoint set of names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULTS",
    "LLM_BACKENDS",
    "REQUEST_INPUTS",
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
    "chunk_tokens": 800,
    "chunk_overlap_tokens": 80,
    "max_document_tokens": 200_000,
    "pdf_max_bytes": 50 * 1024 * 1024,
    "pdf_max_pages": 1_000,
    "pdf_max_seconds": 60.0,
    "pdf_workers": 1,
}

# What a single request may set. Never a prompt node, never a config key.
REQUEST_INPUTS = ("content_type", "pdf_bytes", "pdf_password", "source_name", "text", "user_query")

_RANGES: dict[str, tuple[float, float]] = {
    "llm_temperature": (0.0, 2.0),
    "llm_max_output_tokens": (1, 100_000),
    "llm_timeout_s": (0.1, 3_600.0),
    "llm_max_retries": (0, 10),
    "llm_max_concurrency": (1, 256),
    "llm_deadline_s": (0.1, 86_400.0),
    "chunk_tokens": (16, 100_000),
    "chunk_overlap_tokens": (0, 50_000),
    "max_document_tokens": (1, 10_000_000),
    "pdf_max_bytes": (1, 2**31),
    "pdf_max_pages": (1, 100_000),
    "pdf_max_seconds": (0.1, 3_600.0),
    "pdf_workers": (1, 64),
}


def coerce(key: str, value: Any) -> tuple[Any, str | None]:
    """`value` as the type of DEFAULTS[key] (strings from the command line are parsed); a
    problem message instead when it does not fit."""
    default = DEFAULTS.get(key)
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
    if key in _RANGES and not _RANGES[key][0] <= out <= _RANGES[key][1]:
        lo, hi = _RANGES[key]
        return out, f"{key}={out!r} is out of range: use a value from {lo:g} to {hi:g}."
    return out, None


def parse_assignments(pairs: Iterable[str]) -> dict[str, str]:
    """`["a=1", "b=x"]` → `{"a": "1", "b": "x"}`; a pair without `=` is a ValueError naming it."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(
                f"--config {pair!r} is not KEY=VALUE (e.g. --config llm_model=gpt-4o-mini)."
            )
        out[key.strip()] = value.strip()
    return out


def canonical_config(config: Mapping[str, Any]) -> str:
    """The config as sorted, compact JSON: the form hashed into fingerprints."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), default=str)


def data_dir(project_root: Path) -> Path:
    """PROMPTDAG_DATA_DIR, else `.promptdag/` in the project root."""
    env = os.environ.get("PROMPTDAG_DATA_DIR")
    return Path(env).expanduser().resolve() if env else project_root / ".promptdag"
