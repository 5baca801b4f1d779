"""The per-request context that tracing reads: set by whoever runs a request (the service, the
CLI), inherited by every task Hamilton starts for that run through a context variable."""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestContext", "current_request", "new_request_id", "request_scope"]


def new_request_id() -> str:
    return uuid.uuid4().hex


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
