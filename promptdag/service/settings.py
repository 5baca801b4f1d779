"""What `promptdag serve` is told: which variants with which weights, the API keys, the caps,
the limits, and tracing. Keys come from PROMPTDAG_API_KEYS (comma-separated) and a key file
(one per line, re-read when it changes or on SIGHUP), never a flag; each is `KEY` or `ID:KEY`
(see `promptdag.service.keys`).

Every declared pipeline is served; the caps on each request's inputs are the contract's
(`max_bytes`, `max_chars`, `min`/`max`). The one cap set here is on whole request bodies:
`max_upload_bytes` when given, else each pipeline's own (see `promptdag.service.body.body_cap`).

Fairness: the request line and headers must arrive within `header_timeout_s` and the body
within `body_timeout_s` (408 otherwise); a request takes one of the `max_in_flight` slots only
once its body is read; one key may have `key_max_in_flight` requests open at once (default:
`max_in_flight`) and, with `key_rate`, send that many requests per second (bursts of
`key_burst`); over a key's limit is a 429 with Retry-After."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from promptdag.errors import ConfigError
from promptdag.service.keys import KeyRing

__all__ = ["ServiceSettings", "env_api_keys"]


def env_api_keys(env: str | None = None) -> frozenset[str]:
    """The entries of PROMPTDAG_API_KEYS (or of `env`), comma-separated."""
    raw = os.environ.get("PROMPTDAG_API_KEYS", "") if env is None else env
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


@dataclass(frozen=True)
class ServiceSettings:
    api_keys: frozenset[str] = frozenset()  # "KEY" or "ID:KEY" entries, e.g. env_api_keys()
    variants: tuple[str, ...] | None = None  # None: every variant whose weight is > 0
    weights: dict[str, float] = field(default_factory=dict)  # overrides the variants file
    config: dict[str, str] = field(default_factory=dict)  # --config for every served variant
    project: Path | None = None
    allow_variant_header: bool = False
    protect_ops: bool = False  # require the key on /healthz, /readyz, /v1/version, /metrics, docs
    insecure_no_auth: bool = False
    max_in_flight: int = 64
    max_upload_bytes: int | None = None  # None: each pipeline's cap, from its contract
    assignment_salt: str = "promptdag"
    traces: bool = True
    redact: bool = False
    store_inputs: str = "off"  # promptdag.inputs_store.STORE_INPUTS_MODES: off, on, even-redacted
    retain_days: float | None = None
    otlp_endpoint: str | None = None
    api_key_file: Path | None = None  # re-read when it changes, or on SIGHUP
    key_max_in_flight: int | None = None  # None: max_in_flight
    key_rate: float | None = None  # requests per second per key; None: no rate limit
    key_burst: int | None = None  # None: the rate rounded up (at least 1)
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    key_file_check_s: float = 1.0  # how often the key file's modification time is looked at
    settle_gc: bool = False  # `promptdag serve`: promptdag.gc_tuning.settle_process once built

    def key_ring(self) -> KeyRing:
        """The keys, read now (a ConfigError lists every problem)."""
        return KeyRing(self.api_keys, self.api_key_file, self.key_file_check_s).load()

    def check(self) -> None:
        problems = []
        try:
            keys = len(self.key_ring())
        except ConfigError as exc:
            problems.extend(exc.problems)
            keys = -1
        if keys == 0 and not self.insecure_no_auth:
            problems.append(
                "no API keys: set PROMPTDAG_API_KEYS=key1,key2 or pass --api-key-file FILE "
                "(--insecure-no-auth only for local experiments)."
            )
        if self.max_in_flight < 1:
            problems.append(f"max_in_flight={self.max_in_flight}: use 1 or more.")
        if self.key_max_in_flight is not None and self.key_max_in_flight < 1:
            problems.append(f"key_max_in_flight={self.key_max_in_flight}: use 1 or more.")
        if self.key_rate is not None and not self.key_rate > 0:
            problems.append(f"key_rate={self.key_rate}: use a number of requests per second > 0.")
        if self.key_burst is not None and self.key_burst < 1:
            problems.append(f"key_burst={self.key_burst}: use 1 or more.")
        for name in ("header_timeout_s", "body_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}={getattr(self, name)}: use a number of seconds > 0.")
        if self.max_upload_bytes is not None and self.max_upload_bytes < 1024:
            problems.append(f"max_upload_bytes={self.max_upload_bytes}: use at least 1024.")
        if self.retain_days is not None and self.retain_days <= 0:
            problems.append(f"retain_days={self.retain_days}: use a number of days > 0.")
        bad = {k: w for k, w in self.weights.items() if w < 0}
        if bad:
            problems.append(f"negative weights {bad}: use weights >= 0.")
        if problems:
            raise ConfigError(problems)
