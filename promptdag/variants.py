"""The variants file (`prompts/variants.toml`): named sets of build-time config, their traffic
weights, the default variant, and the per-model price table."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptdag.errors import VariantError

__all__ = ["Variant", "VariantsFile", "load_variants"]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    weight: float
    config: dict[str, Any]


@dataclass(frozen=True)
class VariantsFile:
    path: Path
    default: str
    variants: dict[str, Variant]
    prices: dict[str, tuple[float, float]]

    def get(self, name: str | None) -> Variant:
        """The named variant (the default one for None), or a VariantError listing them all."""
        key = name or self.default
        if key not in self.variants:
            raise VariantError(
                [
                    f"variant {key!r} is not defined in {self.path.name}. "
                    f"Defined: {', '.join(sorted(self.variants))}."
                ]
            )
        return self.variants[key]


def _variant(name: str, raw: Any, problems: list[str]) -> Variant | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("config", {}), dict):
        problems.append(f"variant {name!r} must be a table with a `config` table.")
        return None
    weight = raw.get("weight", 0.0)
    if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
        problems.append(f"variant {name!r} has weight {weight!r}: use a number >= 0.")
        weight = 0.0
    return Variant(
        name, str(raw.get("description", "")), float(weight), dict(raw.get("config", {}))
    )


def _prices(raw: Any, problems: list[str]) -> dict[str, tuple[float, float]]:
    prices: dict[str, tuple[float, float]] = {}
    for model, pair in (raw or {}).items():
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(x, int | float) and x >= 0 for x in pair)
        ):
            problems.append(
                f"[prices] {model!r} = {pair!r}: use [input, output] USD per 1M tokens."
            )
            continue
        prices[model] = (float(pair[0]), float(pair[1]))
    return prices


def load_variants(path: Path) -> VariantsFile:
    """Read and check the variants file; every problem is reported at once."""
    if not path.is_file():
        return VariantsFile(path, "default", {"default": Variant("default", "", 1.0, {})}, {})
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise VariantError([f"{path} is not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    variants = {}
    for name, raw in (data.get("variants") or {}).items():
        v = _variant(name, raw, problems)
        if v is not None:
            variants[name] = v
    default = data.get("default", "")
    if default not in variants:
        problems.append(
            f"{path.name}: default = {default!r} names no variant. Defined: {', '.join(sorted(variants))}."
        )
    prices = _prices(data.get("prices"), problems)
    if problems:
        raise VariantError(problems)
    return VariantsFile(path, default, variants, prices)
