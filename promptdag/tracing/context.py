"""The per-request context that tracing reads: set by whoever runs a request (the service, the
CLI), inherited by every task Hamilton starts for that run through a context variable; and the
HTTP status of a run's outcome, which the service answers with and every trace row records
(4xx: the request's fault; 5xx: the model's or the server's)."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from promptdag.errors import (
    CacheMissError,
    DeadlineExceededError,
    InputError,
    LLMError,
    LLMRequestError,
    LLMUnavailableError,
    OverloadedError,
    TraceStoreError,
)

__all__ = [
    "RequestContext",
    "current_request",
    "http_status",
    "new_request_id",
    "request_scope",
]

# Most specific first: the first class an error is an instance of gives its status.
_STATUSES: tuple[tuple[type[BaseException], int], ...] = (
    (InputError, 422),
    (DeadlineExceededError, 504),
    (LLMUnavailableError, 503),
    (LLMRequestError, 502),
    (CacheMissError, 502),
    (LLMError, 502),
    (TraceStoreError, 503),
    (OverloadedError, 503),
)


def new_request_id() -> str:
    return uuid.uuid4().hex


def http_status(error: BaseException | None, error_type: str | None = None) -> int:
    """The HTTP status of a run's outcome: 200 without an error; 422 for an input error, 502,
    503 or 504 for the model, 503 for the trace store or a full queue (a worker pool), 500 for
    anything else. A run cancelled
    without an error (`error_type` says why) is 504 past its deadline, else 503 (cut short,
    e.g. by a shutdown)."""
    if error is None:
        if error_type is None:
            return 200
        return 504 if error_type == DeadlineExceededError.__name__ else 503
    return next((status for cls, status in _STATUSES if isinstance(error, cls)), 500)


@dataclass
class RequestContext:
    """Who asked, which variant answered and why, and the build that answered."""

    request_id: str
    variant: str
    assignment: str  # "sticky" (hash of subject_id), "random", "forced" (header), "cli"
    subject_id: str | None = None
    conversation_id: str | None = None
    source: str = "service"
    build: dict[str, Any] = field(default_factory=dict)  # Pipeline.build_info()
    key_id: str | None = None  # the API key's id, never the key
    client_request_id: str | None = None  # the caller's X-Request-Id, when it sent one
    # Whether the caller records runs refused before their graph starts (the service does, with
    # its own audit fields); otherwise `Pipeline.run` has its trace adapters record them.
    caller_traces_refusals: bool = False
    # This run's provenance fingerprint once computed (by the trace adapter, as the run ends),
    # so that `Pipeline.run` does not compute it again. Set per run, never by callers.
    fingerprint: dict[str, Any] | None = field(default=None, repr=False)


_CURRENT: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "promptdag_request", default=None
)


def current_request() -> RequestContext | None:
    return _CURRENT.get()


@contextlib.contextmanager
def request_scope(ctx: RequestContext) -> Iterator[RequestContext]:
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
