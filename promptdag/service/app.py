"""The FastAPI app. At startup it builds, through the one driver factory, a Pipeline for every
served variant and refuses to start if any is invalid; requests share those Pipelines, are
A/B-assigned, capped, traced, and answered with their provenance."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptdag.errors import ConfigError, PromptdagError
from promptdag.factory import build_pipeline
from promptdag.pipeline import Pipeline, RunResult
from promptdag.project import load_project
from promptdag.provenance import git_state
from promptdag.service.assignment import Assigner
from promptdag.service.body import SummaryInput, read_summary_input, request_body_openapi
from promptdag.service.metrics import ServiceMetrics
from promptdag.service.problems import ServiceError, problem, problem_for
from promptdag.service.settings import ServiceSettings
from promptdag.tracing.context import RequestContext, new_request_id, request_scope
from promptdag.variants import load_variants

__all__ = ["ServiceState", "create_app", "preflight"]

log = logging.getLogger("promptdag.service")
OPS_PATHS = ("/healthz", "/readyz", "/v1/version", "/metrics")


@dataclass
class ServiceState:
    settings: ServiceSettings
    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    assigner: Assigner | None = None
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    tracer: Any = None  # promptdag.tracing: writer + adapter, when tracing is on
    in_flight: int = 0
    ready: bool = False


def _served_weights(settings: ServiceSettings) -> dict[str, float]:
    variants = load_variants(load_project(settings.project).variants_path)
    names = (
        list(settings.variants)
        if settings.variants
        else [n for n, v in variants.variants.items() if settings.weights.get(n, v.weight) > 0]
    )
    problems = [
        f"variant {n!r} is not defined. Defined: {', '.join(sorted(variants.variants))}."
        for n in names
        if n not in variants.variants
    ]
    problems += [
        f"--weight names {n!r}, which is not served. Served: {', '.join(names)}."
        for n in settings.weights
        if n not in names
    ]
    if problems:
        raise ConfigError(problems)
    return {n: settings.weights.get(n, variants.variants[n].weight) for n in names}


async def _build_variants(
    settings: ServiceSettings, weights: dict[str, float], adapters: list[Any]
) -> dict[str, Pipeline]:
    """One Pipeline per served variant, through the factory; every problem of every variant is
    reported at once, and nothing built is left open when any variant fails."""
    pipelines: dict[str, Pipeline] = {}
    problems: list[str] = []
    project = load_project(settings.project)
    git = git_state(project.root)  # one reading for every variant: they report the same build
    for name in weights:
        try:
            pipelines[name] = build_pipeline(
                variant=name, overrides=settings.config, project=project, adapters=adapters, git=git
            )
        except ConfigError as exc:
            problems.extend(f"variant {name!r}: {p}" for p in exc.problems)
    if problems:
        for pipeline in pipelines.values():
            await pipeline.aclose()
        raise ConfigError(problems)
    return pipelines


async def _start(state: ServiceState) -> None:
    settings = state.settings
    settings.check()
    weights = _served_weights(settings)
    state.assigner = Assigner(
        weights, salt=settings.assignment_salt, allow_forced=settings.allow_variant_header
    )
    adapters: list[Any] = []
    if settings.traces:
        from promptdag.service.tracing import start_tracing

        state.tracer = start_tracing(settings)
        adapters = [state.tracer.adapter]
    try:
        state.pipelines = await _build_variants(settings, weights, adapters)
    except ConfigError:
        if state.tracer is not None:
            await asyncio.to_thread(state.tracer.close)
        raise
    for pipeline in state.pipelines.values():
        await pipeline.driver.ainit()
    state.ready = True


async def _stop(state: ServiceState) -> None:
    state.ready = False
    for pipeline in state.pipelines.values():
        await pipeline.aclose()
    if state.tracer is not None:
        await asyncio.to_thread(state.tracer.close)


async def preflight(settings: ServiceSettings) -> dict[str, float]:
    """Validate settings and build every served variant once, before the server starts, so a
    bad variant is one clear line instead of a failed startup. Returns the normalized weights."""
    settings.check()
    weights = _served_weights(settings)
    for pipeline in (await _build_variants(settings, weights, [])).values():
        await pipeline.aclose()
    return Assigner(weights, salt=settings.assignment_salt).weights


def _authorized(state: ServiceState, request: Request) -> bool:
    if state.settings.insecure_no_auth:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in state.settings.api_keys)


def _provenance_headers(result: RunResult, request_id: str, variant: str) -> dict[str, str]:
    fp = result.fingerprint
    git = fp["git"]
    return {
        "X-Promptdag-Request-Id": request_id,
        "X-Promptdag-Variant": variant,
        "X-Promptdag-Git-Sha": (git["sha"] + ("-dirty" if git["dirty"] else ""))
        if git.get("available")
        else "none",
        "X-Promptdag-Prompt-Versions": ",".join(
            f"{n}@{p['version']}" for n, p in fp["prompts"].items()
        ),
        "X-Promptdag-Fingerprint": fp["id"],
    }


def _response_body(result: RunResult, ctx: RequestContext) -> dict[str, Any]:
    fp = result.fingerprint
    return {
        "request_id": ctx.request_id,
        "variant": ctx.variant,
        "assignment": ctx.assignment,
        "summary": result.summary,
        "model": result.outputs["llm_calls"][-1]["model"],
        "usage": result.outputs["usage"],
        "latency_s": result.latency_s,
        "notes": result.notes,
        "provenance": {
            "fingerprint": fp["id"],
            "git": fp["git"],
            "graph_version": fp["graph_version"],
            "config_sha256": fp["config_sha256"],
            "prompts": fp["prompts"],
        },
    }


async def _summarize(state: ServiceState, request: Request) -> Response:
    request_id = new_request_id()
    body: SummaryInput = await read_summary_input(request, state.settings)
    assert state.assigner is not None
    assignment = state.assigner.assign(body.subject_id, request.headers.get("x-promptdag-variant"))
    pipeline = state.pipelines[assignment.variant]
    ctx = RequestContext(
        request_id=request_id,
        variant=assignment.variant,
        assignment=assignment.how,
        subject_id=body.subject_id,
        conversation_id=body.conversation_id,
        build=pipeline.build_info(),
    )
    started = time.perf_counter()
    try:
        with request_scope(ctx):
            result = await pipeline.summarize(**body.pipeline_inputs())
    except PromptdagError as exc:
        state.metrics.observe_error(
            assignment.variant, time.perf_counter() - started, type(exc).__name__
        )
        return problem_for(exc, request_id)
    state.metrics.observe_ok(
        assignment.variant, time.perf_counter() - started, result.outputs["usage"]
    )
    return JSONResponse(
        _response_body(result, ctx),
        headers=_provenance_headers(result, request_id, assignment.variant),
    )


def _version(state: ServiceState) -> dict[str, Any]:
    infos = {name: p.build_info() for name, p in state.pipelines.items()}
    first = next(iter(infos.values()), {})
    weights = state.assigner.weights if state.assigner else {}
    return {
        "git": first.get("git"),
        "libraries": first.get("libraries"),
        "variants": {
            name: {
                "weight": weights.get(name),
                "config_sha256": info["config_sha256"],
                "graph_version": info["graph_version"],
                "prompts": info["prompt_versions"],
            }
            for name, info in infos.items()
        },
    }


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app; nothing is built until startup (the lifespan), where any invalid variant stops it."""
    state = ServiceState(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(state)
        try:
            yield
        finally:
            await _stop(state)

    app = FastAPI(
        title="promptdag",
        version="0.1.0",
        lifespan=lifespan,
        description="Summaries from versioned prompts, with the provenance of every answer.",
    )
    app.state.promptdag = state

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        ops = request.url.path in OPS_PATHS
        needs_key = request.url.path.startswith("/v1/summaries") or (ops and settings.protect_ops)
        if needs_key and not _authorized(state, request):
            state.metrics.rejected.labels("auth").inc()
            return problem(
                401,
                "unauthorized",
                "Unauthorized",
                "send a valid API key as 'Authorization: Bearer KEY'.",
                {"WWW-Authenticate": "Bearer"},
            )
        if not request.url.path.startswith("/v1/summaries"):
            return await call_next(request)
        if state.in_flight >= settings.max_in_flight:
            state.metrics.rejected.labels("overload").inc()
            return problem(
                503,
                "overloaded",
                "Overloaded",
                f"{state.in_flight} requests are in flight, the cap is {settings.max_in_flight}. Retry shortly.",
                {"Retry-After": "1"},
            )
        state.in_flight += 1
        state.metrics.in_flight.inc()
        try:
            return await call_next(request)
        finally:
            state.in_flight -= 1
            state.metrics.in_flight.dec()

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        state.metrics.rejected.labels(exc.slug).inc()
        return problem(exc.status, exc.slug, exc.title, exc.detail, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        phrase = HTTPStatus(exc.status_code).phrase
        slug = phrase.lower().replace(" ", "-")
        return problem(exc.status_code, slug, phrase, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return problem(422, "invalid-request", "Invalid request", detail)

    @app.exception_handler(PromptdagError)
    async def library_error(request: Request, exc: PromptdagError) -> Response:
        return problem_for(exc, "-")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return problem(
            500, "internal", "Internal error", "an unexpected error occurred; it has been logged."
        )

    @app.post(
        "/v1/summaries",
        summary="Summarize a PDF (multipart or raw) or a text (JSON)",
        openapi_extra=request_body_openapi(),
        responses=_RESPONSES,
    )
    async def create_summary(request: Request) -> Response:
        return await _summarize(state, request)

    @app.get(
        "/v1/version", summary="The running build: git SHA, variants, weights, prompt versions"
    )
    async def version() -> dict[str, Any]:
        return _version(state)

    @app.get("/healthz", summary="Liveness")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: every variant built and serving",
        responses={503: {"description": "Not ready"}},
    )
    async def readyz() -> Response:
        if not state.ready:
            return problem(
                503,
                "not-ready",
                "Not ready",
                "the service is starting or stopping.",
                {"Retry-After": "1"},
            )
        return JSONResponse({"status": "ready", "variants": sorted(state.pipelines)})

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(
            state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app


_PROBLEM = {"content": {"application/problem+json": {"schema": {"type": "object"}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or wrong API key", **_PROBLEM},
    413: {"description": "Upload too large", **_PROBLEM},
    415: {"description": "Unsupported content type", **_PROBLEM},
    422: {"description": "The document or a field is invalid, or a cap was hit", **_PROBLEM},
    502: {"description": "The model rejected the request", **_PROBLEM},
    503: {"description": "Overloaded or the model is unavailable (see Retry-After)", **_PROBLEM},
    504: {"description": "The request passed its deadline", **_PROBLEM},
}
