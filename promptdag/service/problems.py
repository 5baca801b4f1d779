"""Errors as RFC 9457 problem responses (type, title, status, detail, request_id): every library
error maps to a status that says whose fault it is (4xx the request's, 502/503/504 the model's,
503 the trace store's; `promptdag.tracing.context.http_status`, which the traces record too),
and nothing ever carries a stack trace or a path on the server."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi.responses import JSONResponse

from promptdag.errors import (
    CacheMissError,
    DeadlineExceededError,
    DocumentError,
    ForbiddenInputError,
    InputError,
    LimitExceededError,
    LLMError,
    LLMIncompleteError,
    LLMMalformedResponseError,
    LLMRequestError,
    LLMUnavailableError,
    OverloadedError,
    PromptdagError,
    TraceStoreError,
)
from promptdag.tracing.context import http_status

__all__ = ["ServiceError", "problem", "problem_for", "public_detail", "server_paths"]

_BASE = "https://promptdag.dev/problems/"
RETRY_AFTER_S = 5
_KINDS: tuple[tuple[type[PromptdagError], str, str], ...] = (  # most specific first
    (LimitExceededError, "limit-exceeded", "A limit was exceeded"),
    (ForbiddenInputError, "forbidden-input", "Input not allowed"),
    (DocumentError, "bad-document", "The document cannot be read"),
    (InputError, "invalid-input", "Invalid input"),
    (DeadlineExceededError, "deadline-exceeded", "The request took too long"),
    (LLMUnavailableError, "model-unavailable", "The model is unavailable"),
    (LLMRequestError, "model-rejected", "The model rejected the request"),
    (CacheMissError, "model-rejected", "The model rejected the request"),
    (LLMIncompleteError, "model-incomplete", "The model's answer is incomplete"),
    (LLMMalformedResponseError, "model-malformed-response", "The model's reply is unusable"),
    (LLMError, "model-error", "The model failed"),
    (TraceStoreError, "trace-store-unavailable", "Traces cannot be recorded"),
    (OverloadedError, "overloaded", "Overloaded"),
)
TRACE_STORE_DETAIL = (
    "the trace of this request could not be stored, so it is not answered (every answer is "
    "traced). The operator finds the cause in the server log; retry later."
)


class ServiceError(Exception):
    """An HTTP-level refusal (auth, overload, unsupported body) with its status and headers;
    `extra` members go into the problem body (e.g. the limit and cap of a 413)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        headers: dict[str, str] | None = None,
        *,
        extra: dict[str, Any] | None = None,
    ):
        self.status, self.slug, self.title, self.detail = status, slug, title, detail
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(detail)


def server_paths(*more: Path | str | None) -> tuple[str, ...]:
    """Directories whose paths must not reach a client: the project and data directories
    (`more`), the working directory, the home and temporary directories, the interpreter's."""
    roots = {str(p) for p in more if p}
    roots |= {os.getcwd(), str(Path.home()), tempfile.gettempdir(), sys.prefix, sys.base_prefix}
    return tuple(sorted((r.rstrip("/") for r in roots if len(r) > 1), key=len, reverse=True))


def public_detail(detail: str, roots: tuple[str, ...]) -> str:
    """`detail` with any path under one of `roots` replaced by `<server path>`."""
    for root in roots:
        if root in detail:
            detail = re.sub(re.escape(root) + r"(?:/[^\s'\"`,;:)]*)?", "<server path>", detail)
    return detail


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {"type": _BASE + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def problem_for(
    error: PromptdagError, request_id: str, roots: tuple[str, ...] = ()
) -> JSONResponse:
    """The response for a library error; 503s carry Retry-After. A trace store failure says so
    without its file or cause (those go to the server log)."""
    status = http_status(error)
    slug, title = next(
        ((s, t) for cls, s, t in _KINDS if isinstance(error, cls)), ("internal", "Internal error")
    )
    retry_after = error.retry_after if isinstance(error, OverloadedError) else RETRY_AFTER_S
    headers = {"Retry-After": str(max(1, retry_after))} if status == 503 else {}
    extra: dict[str, Any] = {"request_id": request_id}
    if isinstance(error, LLMError) and error.step:
        extra["step"] = error.step
        if error.index is not None:
            extra["item"] = error.index
    if isinstance(error, LLMIncompleteError):
        extra["reason"] = error.reason
    if isinstance(error, LimitExceededError):
        extra.update(limit=error.limit, cap=str(error.cap))
    detail = TRACE_STORE_DETAIL if isinstance(error, TraceStoreError) else str(error)
    return problem(status, slug, title, public_detail(detail, roots), headers, **extra)
