"""A/B assignment of requests to variants: sticky by subject (a hash, so the same subject gets
the same variant across restarts and replicas with no stored state), weighted random without
a subject, and a forced variant only when the operator allows it."""

from __future__ import annotations

import hashlib
import random
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate

from promptdag.errors import ConfigError, InputError

__all__ = ["Assigner", "Assignment"]


@dataclass(frozen=True)
class Assignment:
    variant: str
    how: str  # "sticky", "random" or "forced"


class Assigner:
    """Maps a subject to a variant by weight. `salt` names the experiment: change it to
    re-shuffle subjects; keep it to keep every subject where it was."""

    def __init__(
        self, weights: Mapping[str, float], *, salt: str = "promptdag", allow_forced: bool = False
    ):
        served = {name: float(w) for name, w in sorted(weights.items()) if w > 0}
        if not served:
            raise ConfigError(
                ["no variant has a weight > 0: give at least one variant a positive weight."]
            )
        total = sum(served.values())
        self.weights = {name: w / total for name, w in served.items()}
        self._names = list(self.weights)
        self._bounds = list(accumulate(self.weights.values()))
        self.salt = salt
        self.allow_forced = allow_forced
        self._random = random.SystemRandom()

    def _pick(self, u: float) -> str:
        return self._names[min(bisect_right(self._bounds, u), len(self._names) - 1)]

    def sticky(self, subject_id: str) -> str:
        digest = hashlib.sha256(f"{self.salt}\x00{subject_id}".encode()).digest()
        return self._pick(int.from_bytes(digest[:8], "big") / 2**64)

    def assign(self, subject_id: str | None, forced: str | None = None) -> Assignment:
        if forced:
            if not self.allow_forced:
                raise InputError(
                    "forcing a variant by header is disabled on this server "
                    "(the operator enables it with --allow-variant-header)."
                )
            if forced not in self.weights:
                raise InputError(
                    f"variant {forced!r} is not served here. Served: {', '.join(self._names)}."
                )
            return Assignment(forced, "forced")
        if subject_id:
            return Assignment(self.sticky(subject_id), "sticky")
        return Assignment(self._pick(self._random.random()), "random")
