"""Errors as RFC 9457 problem responses (type, title, status, detail): every library error maps
to a status that says whose fault it is (4xx the request's, 502/503/504 the model's), and
nothing ever carries a stack trace."""

from __future__ import annotations

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
    LLMRequestError,
    LLMUnavailableError,
    PromptdagError,
    TraceStoreError,
)

__all__ = ["ServiceError", "problem", "problem_for"]

_BASE = "https://promptdag.dev/problems/"


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


def _status(error: PromptdagError) -> tuple[int, str, str]:
    if isinstance(error, LimitExceededError):
        return 422, "limit-exceeded", "A limit was exceeded"
    if isinstance(error, ForbiddenInputError):
        return 422, "forbidden-input", "Input not allowed"
    if isinstance(error, DocumentError):
        return 422, "bad-document", "The document cannot be read"
    if isinstance(error, InputError):
        return 422, "invalid-input", "Invalid input"
    if isinstance(error, DeadlineExceededError):
        return 504, "deadline-exceeded", "The request took too long"
    if isinstance(error, LLMUnavailableError):
        return 503, "model-unavailable", "The model is unavailable"
    if isinstance(error, LLMRequestError | CacheMissError):
        return 502, "model-rejected", "The model rejected the request"
    if isinstance(error, LLMError):
        return 502, "model-error", "The model failed"
    if isinstance(error, TraceStoreError):
        return 503, "trace-store-unavailable", "Traces cannot be recorded"
    return 500, "internal", "Internal error"


def problem_for(error: PromptdagError, request_id: str) -> JSONResponse:
    """The response for a library error; 503s carry Retry-After."""
    status, slug, title = _status(error)
    headers = {"X-Promptdag-Request-Id": request_id}
    if status == 503:
        headers["Retry-After"] = "5"
    extra: dict[str, Any] = {"request_id": request_id}
    if isinstance(error, LLMError) and error.step:
        extra["step"] = error.step
    if isinstance(error, LimitExceededError):
        extra.update(limit=error.limit, cap=str(error.cap))
    return problem(status, slug, title, str(error), headers, **extra)
