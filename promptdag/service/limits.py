"""Per-key limits of the service, checked before a request's body is read: how many requests
one API key may have open at once (from the moment its key is checked until its answer is
sent, so a key's slow uploads use up its own share only), and how fast it may send them (a
token bucket: `rate` requests per second on average, bursts of up to `burst`). Over either
limit is a 429 with Retry-After. Small and pure apart from the clock: the caller passes `now`."""

from __future__ import annotations

import math
from dataclasses import dataclass

from promptdag.service.problems import ServiceError

__all__ = ["KeyLimits", "TokenBucket"]


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """Take a token: 0.0 if there was one, else the seconds until there will be."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class KeyLimits:
    """In-flight counts and token buckets by key id (keys are configured, so these stay small)."""

    def __init__(
        self, max_in_flight: int | None, rate: float | None = None, burst: int | None = None
    ):
        self.max_in_flight = max_in_flight
        self.rate = rate
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate or 1)))
        self.in_flight: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}

    def admit(self, key_id: str, now: float) -> ServiceError | None:
        """Count the request in, or say why not (a 429 with Retry-After); `release` it after."""
        held = self.in_flight.get(key_id, 0)
        if self.max_in_flight is not None and held >= self.max_in_flight:
            return ServiceError(
                429,
                "key-concurrency",
                "Too many requests in flight for this key",
                f"API key {key_id!r} has {held} requests in flight, its cap is "
                f"{self.max_in_flight}. Retry when one is answered.",
                {"Retry-After": "1"},
                extra={"key_id": key_id, "limit": "requests in flight", "cap": self.max_in_flight},
            )
        if self.rate is not None:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(self.rate, self.burst)
            wait = bucket.take(now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                return ServiceError(
                    429,
                    "rate-limited",
                    "Rate limit exceeded",
                    f"API key {key_id!r} may send {self.rate:g} requests per second (bursts of "
                    f"{self.burst:g}). Retry in {retry} s.",
                    {"Retry-After": str(retry)},
                    extra={"key_id": key_id, "limit": "requests per second", "cap": self.rate},
                )
        self.in_flight[key_id] = held + 1
        return None

    def release(self, key_id: str) -> None:
        held = self.in_flight.get(key_id, 0) - 1
        if held > 0:
            self.in_flight[key_id] = held
        else:
            self.in_flight.pop(key_id, None)
