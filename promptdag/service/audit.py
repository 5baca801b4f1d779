"""The audit trail of every HTTP request, and the checks made before any route runs.

`AuditMiddleware` wraps the whole app. For every request it

- gives it a request id: a new one, unique, that the traces are keyed by; and the caller's own
  `X-Request-Id` when it sent a well-formed one (1-128 of `A-Z a-z 0-9 . _ ~ : + / = -`),
  honoured: echoed in `X-Request-Id` and recorded with the trace and the access log (without
  one, `X-Request-Id` is the request id). Every response carries both `X-Request-Id` and
  `X-Promptdag-Request-Id`, whatever its status;
- checks the API key where one is needed (runs; the ops endpoints and docs with
  `--protect-ops`) and names the key by its id from then on;
- admits a run only within its key's limits (`promptdag.service.limits`): 429 otherwise;
- turns anything unexpected into a problem+json 500 (the traceback goes to the server log),
  and a request cut short by the shutdown timeout into a problem+json 503;
- counts the response in `/metrics` by status, and writes one JSON access log line on the
  `promptdag.access` logger: request id, key id, pipeline, variant, status, latency.

A run admitted past its key's limits always gets a trace row: the pipeline's own when it ran
(the trace adapter), else one written here or by the route (refused input, a body timeout, an
overload, an unexpected error, a shutdown). Rows written here hold no request content."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from promptdag.errors import TraceStoreError
from promptdag.service.problems import ServiceError, problem
from promptdag.tracing.context import new_request_id

if TYPE_CHECKING:
    from promptdag.service.app import ServiceState

__all__ = [
    "ACCESS_LOGGER",
    "AUDIT",
    "PROMPTDAG_REQUEST_ID",
    "REQUEST_ID",
    "Audit",
    "AuditMiddleware",
    "audit_of",
    "current_audit",
    "header_timeout_response",
    "trace_refusal",
]

log = logging.getLogger("promptdag.service")
ACCESS_LOGGER = "promptdag.access"
access_log = logging.getLogger(ACCESS_LOGGER)
AUDIT = "promptdag.audit"  # the scope key of a request's Audit
REQUEST_ID = "X-Request-Id"
PROMPTDAG_REQUEST_ID = "X-Promptdag-Request-Id"
_WELL_FORMED = re.compile(r"^[A-Za-z0-9._~:+/=-]{1,128}$")
ANONYMOUS = "anonymous"  # the key id of every request under --insecure-no-auth


@dataclass
class Audit:
    """What the audit trail records of one request; routes fill in what they learn."""

    request_id: str
    client_request_id: str | None
    method: str
    path: str
    client: str | None
    started: float  # time.perf_counter()
    started_ts: float  # time.time()
    pipeline: str = ""  # the declared pipeline a run route serves, "" for other paths
    key_id: str | None = None
    variant: str | None = None
    subject_id: str | None = None
    conversation_id: str | None = None
    status: int = 0  # the response's, once it has started
    error: str | None = None  # the error type or problem slug of a failed request
    admitted: bool = False  # a run past auth and its key's limits: it gets a trace row
    traced: bool = False  # its trace row is written (or the pipeline's adapter writes it)

    @property
    def public_id(self) -> str:
        """The `X-Request-Id` value: the caller's id when it sent one, else the request id."""
        return self.client_request_id or self.request_id


_CURRENT: contextvars.ContextVar[Audit | None] = contextvars.ContextVar(
    "promptdag_audit", default=None
)


def current_audit() -> Audit | None:
    """The Audit of the request this task serves (for lifecycle hooks), or None."""
    return _CURRENT.get()


def audit_of(scope: Scope) -> Audit:
    """The Audit of a request (the middleware always sets one)."""
    audit = scope.get(AUDIT)
    if not isinstance(audit, Audit):
        raise RuntimeError("no Audit in the request scope: is AuditMiddleware installed?")
    return audit


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _new_audit(scope: Scope) -> Audit:
    inbound = _header(scope, b"x-request-id")
    client = scope.get("client")
    return Audit(
        request_id=new_request_id(),
        client_request_id=inbound if inbound and _WELL_FORMED.match(inbound) else None,
        method=scope.get("method", ""),
        path=scope.get("path", ""),
        client=client[0] if client else None,
        started=time.perf_counter(),
        started_ts=time.time(),
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def log_access(audit: Audit) -> None:
    """One JSON line on the promptdag.access logger (when it is enabled for INFO)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    line = {
        "ts": _iso(audit.started_ts),
        "request_id": audit.request_id,
        "client_request_id": audit.client_request_id,
        "key_id": audit.key_id,
        "client": audit.client,
        "method": audit.method,
        "path": audit.path,
        "pipeline": audit.pipeline or None,
        "variant": audit.variant,
        "status": audit.status,
        "latency_ms": round(1e3 * (time.perf_counter() - audit.started), 1),
        "error": audit.error,
    }
    access_log.info(json.dumps(line, separators=(",", ":")))


def refusal_row(
    audit: Audit, status: int, error_type: str, message: str, git: dict[str, Any] | None
) -> dict[str, Any]:
    """The trace row of a run answered without running its pipeline (no request content)."""
    git = git or {}
    return {
        "request_id": audit.request_id,
        "started_ts": audit.started_ts,
        "finished_ts": time.time(),
        "latency_s": round(time.perf_counter() - audit.started, 6),
        "source": "service",
        "subject_id": audit.subject_id,
        "conversation_id": audit.conversation_id,
        "variant": audit.variant,
        "git_sha": git.get("sha"),
        "git_dirty": git.get("dirty"),
        "status": "error",
        "error_type": error_type,
        "error_message": message,
        "calls": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": 0.0,
        "pipeline": audit.pipeline or None,
        "key_id": audit.key_id,
        "http_status": status,
        "client_request_id": audit.client_request_id,
    }


async def trace_refusal(
    state: ServiceState, audit: Audit, status: int, error_type: str, message: str
) -> None:
    """Record a run answered without its pipeline running, once; a trace store that cannot
    write is logged and turns /readyz unready, and the answer goes out all the same."""
    tracer = state.tracer
    audit.error = audit.error or error_type
    if tracer is None or audit.traced or not audit.admitted:
        return
    audit.traced = True
    row = refusal_row(audit, status, error_type, message, state.git)
    try:
        await tracer.writer.submit(row)
    except TraceStoreError as exc:
        tracer.health.failed(exc)
    else:
        tracer.health.ok()


def _raw_problem(status: int, phrase: str, slug: str, detail: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 problem response that closes the connection, for the protocol layer."""
    body = json.dumps(
        {
            "type": f"https://promptdag.dev/problems/{slug}",
            "title": phrase,
            "status": status,
            "detail": detail,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\n{REQUEST_ID.lower()}: {request_id}\r\n"
        f"{PROMPTDAG_REQUEST_ID.lower()}: {request_id}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def header_timeout_response(state: ServiceState, client: str | None, timeout_s: float) -> bytes:
    """The 408 sent when a request line and headers do not arrive in time: counted, logged."""
    audit = Audit(new_request_id(), None, "", "", client, time.perf_counter(), time.time())
    audit.status, audit.error = 408, "header-timeout"
    state.metrics.respond("", 408)
    log_access(audit)
    detail = f"the request line and headers did not arrive within {timeout_s:g} s."
    return _raw_problem(408, "Request Timeout", "header-timeout", detail, audit.request_id)


class AuditMiddleware:
    """See the module doc. `state` is the app's ServiceState."""

    def __init__(self, app: ASGIApp, state: ServiceState):
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = self.state
        audit = _new_audit(scope)
        scope[AUDIT] = audit
        ids = [
            (REQUEST_ID.lower().encode(), audit.public_id.encode()),
            (PROMPTDAG_REQUEST_ID.lower().encode(), audit.request_id.encode()),
        ]

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                audit.status = message["status"]
                message["headers"] = [*message.get("headers", ()), *ids]
            await send(message)

        state.active += 1
        token = _CURRENT.set(audit)
        try:
            refusal = self._admit(audit, scope)
            if refusal is not None:
                await self._refuse(audit, refusal, scope, receive, send_with_ids)
            else:
                await self.app(scope, receive, send_with_ids)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._cut(audit, scope, receive, send_with_ids)
        except Exception:
            log.exception(
                "unexpected error on %s %s (request %s)", audit.method, audit.path, audit.request_id
            )
            await self._fail(audit, scope, receive, send_with_ids)
        finally:
            _CURRENT.reset(token)
            state.active -= 1
            if audit.admitted and audit.key_id is not None:
                state.limits.release(audit.key_id)
            state.metrics.respond(audit.pipeline, audit.status)
            log_access(audit)

    def _admit(self, audit: Audit, scope: Scope) -> ServiceError | None:
        """Auth, then the key's limits for a run; None when the request may go on."""
        state = self.state
        path = audit.path
        audit.pipeline = state.pipeline_of(path)
        needs_key = path.startswith(state.pipelines_prefix) or (
            state.settings.protect_ops and path in state.protected_paths
        )
        if state.settings.insecure_no_auth:
            audit.key_id = ANONYMOUS
        else:
            scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and token and state.keys is not None:
                audit.key_id = state.keys.identify(token.strip())
        if needs_key and audit.key_id is None:
            return ServiceError(
                401,
                "unauthorized",
                "Unauthorized",
                "send a valid API key as 'Authorization: Bearer KEY'.",
                {"WWW-Authenticate": "Bearer"},
            )
        if not audit.pipeline or audit.key_id is None:
            return None
        refusal = state.limits.admit(audit.key_id, time.monotonic())
        audit.admitted = refusal is None
        return refusal

    async def _refuse(
        self, audit: Audit, refusal: ServiceError, scope: Scope, receive: Receive, send: Send
    ) -> None:
        self.state.metrics.reject(audit.pipeline, "auth" if refusal.status == 401 else refusal.slug)
        audit.error = refusal.slug
        response = problem(
            refusal.status,
            refusal.slug,
            refusal.title,
            refusal.detail,
            refusal.headers,
            request_id=audit.request_id,
            **refusal.extra,
        )
        await response(scope, receive, send)

    async def _cut(self, audit: Audit, scope: Scope, receive: Receive, send: Send) -> None:
        """A request cancelled (the shutdown timeout passed while it ran): a problem+json 503
        if nothing was sent yet, and its trace row if the pipeline did not write one."""
        detail = (
            "the service is shutting down and this request did not finish within the graceful "
            "shutdown timeout. Retry it (on another instance)."
        )
        log.warning("request %s was cut short by the shutdown", audit.request_id)
        await trace_refusal(self.state, audit, 503, "shutting-down", detail)
        if audit.status == 0:
            audit.error = audit.error or "shutting-down"
            response = problem(
                503,
                "shutting-down",
                "The service is shutting down",
                detail,
                {"Retry-After": "5", "Connection": "close"},
                request_id=audit.request_id,
            )
            await response(scope, receive, send)

    async def _fail(self, audit: Audit, scope: Scope, receive: Receive, send: Send) -> None:
        detail = "an unexpected error occurred; it has been logged with this request's id."
        await trace_refusal(self.state, audit, 500, "internal", detail)
        if audit.status == 0:
            audit.error = audit.error or "internal"
            response = problem(
                500, "internal", "Internal error", detail, request_id=audit.request_id
            )
            await response(scope, receive, send)
