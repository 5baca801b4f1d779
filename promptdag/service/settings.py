"""What `promptdag serve` is told: which variants with which weights, the API keys, the caps,
and tracing. Keys come from PROMPTDAG_API_KEYS (comma-separated) or a key file, never a flag.

Every declared pipeline is served; the caps on each request's inputs are the contract's
(`max_bytes`, `max_chars`, `min`/`max`). The one cap set here is on whole request bodies:
`max_upload_bytes` when given, else each pipeline's own (see `promptdag.service.body.body_cap`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from promptdag.errors import ConfigError

__all__ = ["ServiceSettings", "load_api_keys"]


def load_api_keys(key_file: Path | None = None, env: str | None = None) -> frozenset[str]:
    """Keys from the key file (one per line, # comments) and PROMPTDAG_API_KEYS."""
    keys: set[str] = set()
    raw = os.environ.get("PROMPTDAG_API_KEYS", "") if env is None else env
    keys.update(k.strip() for k in raw.split(",") if k.strip())
    if key_file is not None:
        try:
            lines = key_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(
                [f"cannot read the API key file {key_file}: {exc.strerror}."]
            ) from exc
        keys.update(
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        )
    short = [k for k in keys if len(k) < 8]
    if short:
        raise ConfigError(
            [f"{len(short)} API key(s) are shorter than 8 characters: use long random keys."]
        )
    return frozenset(keys)


@dataclass(frozen=True)
class ServiceSettings:
    api_keys: frozenset[str]
    variants: tuple[str, ...] | None = None  # None: every variant whose weight is > 0
    weights: dict[str, float] = field(default_factory=dict)  # overrides the variants file
    config: dict[str, str] = field(default_factory=dict)  # --config for every served variant
    project: Path | None = None
    allow_variant_header: bool = False
    protect_ops: bool = False  # require the key on /healthz, /readyz, /v1/version, /metrics too
    insecure_no_auth: bool = False
    max_in_flight: int = 64
    max_upload_bytes: int | None = None  # None: each pipeline's cap, from its contract
    assignment_salt: str = "promptdag"
    traces: bool = True
    redact: bool = False
    retain_days: float | None = None
    otlp_endpoint: str | None = None

    def check(self) -> None:
        problems = []
        if not self.api_keys and not self.insecure_no_auth:
            problems.append(
                "no API keys: set PROMPTDAG_API_KEYS=key1,key2 or pass --api-key-file FILE "
                "(--insecure-no-auth only for local experiments)."
            )
        if self.max_in_flight < 1:
            problems.append(f"max_in_flight={self.max_in_flight}: use 1 or more.")
        if self.max_upload_bytes is not None and self.max_upload_bytes < 1024:
            problems.append(f"max_upload_bytes={self.max_upload_bytes}: use at least 1024.")
        if self.retain_days is not None and self.retain_days <= 0:
            problems.append(f"retain_days={self.retain_days}: use a number of days > 0.")
        bad = {k: w for k, w in self.weights.items() if w < 0}
        if bad:
            problems.append(f"negative weights {bad}: use weights >= 0.")
        if problems:
            raise ConfigError(problems)
