"""The FastAPI app. It serves every pipeline the project's contract declares, one route each:
`POST /v1/pipelines/{name}/runs`, with that pipeline's own request and response schemas.

At startup it builds, through the one driver factory, a Pipeline for every (pipeline, served
variant) pair (one git reading for all) and refuses to start if any is invalid; requests share
those Pipelines, are A/B-assigned, capped, traced, and answered with their provenance.

A/B assignment: one Assigner over the served variants, sticky by `subject_id` with the server's
salt, so a subject gets the same variant in every pipeline (and across restarts and replicas).

Every request passes `promptdag.service.audit.AuditMiddleware` first (request ids, the API key
and its id, the key's limits, the access log, metrics by status); a run then reads its body
(within the body timeout), and only then takes one of the `max_in_flight` slots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptdag.config import data_dir
from promptdag.contract import Contract, load_contract
from promptdag.errors import ConfigError, InputError, PromptdagError, TraceStoreError
from promptdag.factory import build_pipeline
from promptdag.inputs_store import stored_run
from promptdag.llm.client import resolve_http_client
from promptdag.pipeline import Pipeline, RunResult, _jsonable
from promptdag.project import Project, find_project, load_project
from promptdag.provenance import git_state
from promptdag.service.assignment import Assigner
from promptdag.service.audit import AUDIT, Audit, AuditMiddleware, audit_of, trace_refusal
from promptdag.service.body import body_cap, read_run_request, servable_problems
from promptdag.service.keys import KeyRing
from promptdag.service.limits import KeyLimits
from promptdag.service.metrics import ServiceMetrics
from promptdag.service.problems import (
    ServiceError,
    problem,
    problem_for,
    public_detail,
    server_paths,
)
from promptdag.service.schema import (
    PROBLEM_REF,
    request_openapi,
    run_path,
    run_response_schema,
    run_schema_name,
    shared_schemas,
)
from promptdag.service.settings import ServiceSettings
from promptdag.tracing.context import RequestContext, request_scope
from promptdag.ui.app import mount_ui
from promptdag.variants import load_variants
from promptdag.workers import ashutdown_pools

__all__ = ["Served", "ServiceState", "create_app", "preflight"]

log = logging.getLogger("promptdag.service")
OPS_PATHS = ("/healthz", "/readyz", "/v1/version", "/metrics")
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
PIPELINES_PREFIX = "/v1/pipelines/"
# The HTTP stack of the served pipelines' LLM clients (promptdag.llm.client.HTTP_CLIENTS): "auto"
# (the default) is the SDK's aiohttp client when aiohttp is installed, else httpx.
LLM_HTTP_CLIENT_ENV = "PROMPTDAG_LLM_HTTP_CLIENT"
DRAIN_S = 5.0  # at shutdown, how long requests cut short get to answer and trace themselves
Built = dict[str, dict[str, Pipeline]]  # pipeline → variant → its built Pipeline


@dataclass
class ServiceState:
    settings: ServiceSettings
    contract: Contract
    pipelines: Built = field(default_factory=dict)
    assigner: Assigner | None = None
    metrics: ServiceMetrics = field(default_factory=ServiceMetrics)
    tracer: Any = None  # promptdag.service.tracing.ServiceTracing, when tracing is on
    keys: KeyRing | None = None
    limits: KeyLimits = field(default_factory=lambda: KeyLimits(None))
    git: dict[str, Any] = field(default_factory=dict)  # the served tree, for refusal traces
    roots: tuple[str, ...] = ()  # server directories that problem details never show
    in_flight: int = 0  # runs holding a slot (their body read)
    active: int = 0  # requests anywhere in the app
    ready: bool = False
    pipelines_prefix: str = PIPELINES_PREFIX
    protected_paths: frozenset[str] = frozenset((*OPS_PATHS, *DOCS_PATHS))
    _paths: dict[str, str] = field(default_factory=dict)

    def pipeline_of(self, path: str) -> str:
        """The declared pipeline a request path runs, or "" for any other path."""
        if not self._paths:
            self._paths = {run_path(n): n for n in self.contract.pipelines}
        return self._paths.get(path, "")


@dataclass(frozen=True)
class Served:
    """What `preflight` found servable: the pipelines and the normalized variant weights."""

    pipelines: tuple[str, ...]
    weights: dict[str, float]


def _served_weights(settings: ServiceSettings, project: Project) -> dict[str, float]:
    variants = load_variants(project.variants_path)
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
    problems += [p for spec in project.contract.pipelines.values() for p in servable_problems(spec)]
    if problems:
        raise ConfigError(problems)
    return {n: settings.weights.get(n, variants.variants[n].weight) for n in names}


async def _close_all(built: Built) -> None:
    for variants in built.values():
        for pipeline in variants.values():
            await pipeline.aclose()


async def _build_all(
    settings: ServiceSettings,
    project: Project,
    weights: dict[str, float],
    adapters: list[Any],
    git: dict[str, Any] | None = None,
) -> Built:
    """One Pipeline per declared pipeline and served variant, through the factory; every
    problem of every build is reported at once, and nothing built is left open on failure."""
    built: Built = {}
    problems: list[str] = []
    git = git or git_state(project.root)  # one reading for every build: the same tree
    for name in project.contract.pipelines:
        for variant in weights:
            try:
                pipeline = build_pipeline(
                    pipeline=name,
                    variant=variant,
                    overrides=settings.config,
                    project=project,
                    adapters=adapters,
                    git=git,
                )
                built.setdefault(name, {})[variant] = pipeline
                if pipeline.llm.cache is not None:  # --redact and --retain-days reach the cache
                    pipeline.llm.cache.set_privacy(
                        redact=settings.redact, retain_days=settings.retain_days
                    )
            except ConfigError as exc:
                problems.extend(
                    f"pipeline {name!r}, variant {variant!r}: {p}" for p in exc.problems
                )
    if problems:
        await _close_all(built)
        raise ConfigError(problems)
    return built


async def _start(state: ServiceState) -> None:
    settings = state.settings
    settings.check()
    http_client = resolve_http_client(os.environ.get(LLM_HTTP_CLIENT_ENV, "auto"))
    project = load_project(settings.project)
    if set(project.contract.pipelines) != set(state.contract.pipelines):
        raise ConfigError(
            [
                f"the project's pipelines changed since the app was made: now "
                f"{', '.join(sorted(project.contract.pipelines))}, routes for "
                f"{', '.join(sorted(state.contract.pipelines))}. Restart the service."
            ]
        )
    state.contract = project.contract
    state._paths = {}
    state.keys = None if settings.insecure_no_auth else settings.key_ring()
    state.limits = KeyLimits(
        settings.key_max_in_flight or settings.max_in_flight, settings.key_rate, settings.key_burst
    )
    state.roots = server_paths(project.root, data_dir(project.root))
    state.git = git_state(project.root)
    weights = _served_weights(settings, project)
    state.assigner = Assigner(
        weights, salt=settings.assignment_salt, allow_forced=settings.allow_variant_header
    )
    adapters: list[Any] = []
    if settings.traces:
        from promptdag.service.tracing import start_tracing

        state.tracer = start_tracing(settings)
        adapters = state.tracer.adapters
    try:
        state.pipelines = await _build_all(settings, project, weights, adapters, state.git)
    except ConfigError:
        if state.tracer is not None:
            await asyncio.to_thread(state.tracer.close)
        raise
    for variants in state.pipelines.values():
        for pipeline in variants.values():
            await pipeline.driver.ainit()
            await pipeline.llm.use_http_client(http_client)
    state.ready = True


async def _stop(state: ServiceState) -> None:
    state.ready = False
    # Requests the server cut at its shutdown timeout answer 503 and write their traces now:
    # give them a moment before the pipelines and the trace writer close.
    deadline = time.monotonic() + DRAIN_S
    while state.active and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await ashutdown_pools(0.0)  # kill extraction still running: nothing waits for it now
    await _close_all(state.pipelines)
    if state.tracer is not None:
        await asyncio.to_thread(state.tracer.close)


async def preflight(settings: ServiceSettings) -> Served:
    """Validate settings and build every pipeline of every served variant once, before the
    server starts, so a bad one is one clear line instead of a failed startup."""
    settings.check()
    project = load_project(settings.project)
    weights = _served_weights(settings, project)
    await _close_all(await _build_all(settings, project, weights, []))
    return Served(
        tuple(project.contract.pipelines), Assigner(weights, salt=settings.assignment_salt).weights
    )


def _provenance_headers(result: RunResult) -> dict[str, str]:
    fp = result.fingerprint
    git = fp["git"]
    return {
        "X-Promptdag-Pipeline": result.pipeline,
        "X-Promptdag-Variant": result.variant,
        "X-Promptdag-Git-Sha": (git["sha"] + ("-dirty" if git["dirty"] else ""))
        if git.get("available")
        else "none",
        "X-Promptdag-Prompt-Versions": ",".join(
            f"{n}@{p['version']}" for n, p in fp["prompts"].items()
        ),
        "X-Promptdag-Fingerprint": fp["id"],
        "X-Promptdag-Incomplete": "true" if result.incomplete else "false",
    }


def _response_body(result: RunResult, ctx: RequestContext, usage: dict[str, Any]) -> dict[str, Any]:
    fp = result.fingerprint
    return {
        "request_id": ctx.request_id,
        "pipeline": result.pipeline,
        "variant": ctx.variant,
        "assignment": ctx.assignment,
        "answer": _jsonable(result.answer),
        "outputs": _jsonable(result.outputs),
        "model": result.model,
        "usage": usage,
        "latency_s": result.latency_s,
        "incomplete": result.incomplete,
        "notes": result.notes,
        "provenance": {
            "fingerprint": fp["id"],
            "git": fp["git"],
            "graph_version": fp["graph_version"],
            "config_sha256": fp["config_sha256"],
            "prompts": fp["prompts"],
        },
    }


async def _refused(state: ServiceState, audit: Audit, exc: ServiceError) -> Response:
    """A run refused before its pipeline ran: counted, traced, answered."""
    state.metrics.reject(audit.pipeline, exc.slug)
    await trace_refusal(state, audit, exc.status, exc.slug, exc.detail)
    return problem(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        exc.headers,
        request_id=audit.request_id,
        **exc.extra,
    )


async def _invalid_input(state: ServiceState, audit: Audit, exc: InputError) -> Response:
    state.metrics.reject(audit.pipeline, "invalid-input")
    response = problem_for(exc, audit.request_id, state.roots)
    await trace_refusal(state, audit, response.status_code, type(exc).__name__, str(exc))
    return response


def _overloaded(state: ServiceState) -> ServiceError:
    return ServiceError(
        503,
        "overloaded",
        "Overloaded",
        f"{state.in_flight} requests are in flight, the cap is "
        f"{state.settings.max_in_flight}. Retry shortly.",
        {"Retry-After": "1"},
    )


async def _run(state: ServiceState, name: str, request: Request) -> Response:
    audit = audit_of(request.scope)
    spec = state.contract.pipelines[name]
    assert state.assigner is not None
    try:
        body = await read_run_request(
            request, spec, body_cap(spec, state.settings), state.settings.body_timeout_s
        )
        audit.subject_id, audit.conversation_id = body.subject_id, body.conversation_id
        assignment = state.assigner.assign(
            body.subject_id, request.headers.get("x-promptdag-variant")
        )
    except ServiceError as exc:
        return await _refused(state, audit, exc)
    except InputError as exc:
        return await _invalid_input(state, audit, exc)
    # The slot is taken only now, with the body read: slow uploads cannot hold the slots.
    if state.in_flight >= state.settings.max_in_flight:
        return await _refused(state, audit, _overloaded(state))
    state.in_flight += 1
    state.metrics.in_flight.labels(name).inc()
    try:
        return await _run_pipeline(state, audit, body.inputs, assignment.variant, assignment.how)
    finally:
        state.in_flight -= 1
        state.metrics.in_flight.labels(name).dec()


async def _run_pipeline(
    state: ServiceState, audit: Audit, inputs: dict[str, Any], variant: str, how: str
) -> Response:
    name = audit.pipeline
    pipeline = state.pipelines[name][variant]
    audit.variant = variant
    ctx = RequestContext(
        request_id=audit.request_id,
        variant=variant,
        assignment=how,
        subject_id=audit.subject_id,
        conversation_id=audit.conversation_id,
        key_id=audit.key_id,
        client_request_id=audit.client_request_id,
        caller_traces_refusals=True,  # trace_refusal below, with the audit's fields
    )  # the pipeline adds its build info (shared, read-only) to the context itself
    tracer = state.tracer  # its adapter records the run, whatever its end (see RunTraced)
    started = time.perf_counter()
    try:
        with request_scope(ctx):
            result = await stored_run(state.settings, pipeline, inputs)
    except PromptdagError as exc:
        seconds = time.perf_counter() - started
        state.metrics.observe_error(name, variant, seconds, type(exc).__name__)
        audit.error = type(exc).__name__
        if tracer is not None and isinstance(exc, TraceStoreError):
            tracer.health.failed(exc)
        response = problem_for(exc, audit.request_id, state.roots)
        # failed before its graph ran (so untraced by the adapter): traced here
        await trace_refusal(state, audit, response.status_code, type(exc).__name__, str(exc))
        return response
    if tracer is not None:
        tracer.health.ok()
    usage = result.usage
    state.metrics.observe_ok(name, variant, time.perf_counter() - started, usage)
    return JSONResponse(_response_body(result, ctx, usage), headers=_provenance_headers(result))


def _version(state: ServiceState) -> dict[str, Any]:
    weights = state.assigner.weights if state.assigner else {}
    first = next((p for v in state.pipelines.values() for p in v.values()), None)
    info = first.build_info() if first is not None else {}
    pipelines: dict[str, Any] = {}
    for name, variants in state.pipelines.items():
        spec = state.contract.pipelines[name]
        builds = {v: p.build_info() for v, p in variants.items()}
        pipelines[name] = {
            "path": run_path(name),
            "description": spec.description,
            "answer": spec.answer,
            "outputs": list(spec.outputs),
            "inputs": sorted(spec.inputs),
            "variants": {
                v: {
                    "weight": weights.get(v),
                    "config_sha256": b["config_sha256"],
                    "graph_version": b["graph_version"],
                    "prompts": b["prompt_versions"],
                }
                for v, b in builds.items()
            },
        }
    return {"git": info.get("git"), "libraries": info.get("libraries"), "pipelines": pipelines}


def _run_route(state: ServiceState, name: str) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        return await _run(state, name, request)

    return run


def _openapi(app: FastAPI, state: ServiceState) -> dict[str, Any]:
    """FastAPI's document plus each pipeline's response schema; cached once every pipeline is
    built (its answer and outputs are typed from the built graphs)."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(shared_schemas())
    for name, spec in state.contract.pipelines.items():
        schema, defs = run_response_schema(spec, state.pipelines.get(name, {}))
        schemas.update(defs)
        schemas[run_schema_name(name)] = schema
    if state.ready:
        app.openapi_schema = doc
    return doc


def _register_pipelines(app: FastAPI, state: ServiceState) -> None:
    for name, spec in state.contract.pipelines.items():
        ref = {"$ref": f"#/components/schemas/{run_schema_name(name)}"}
        app.add_api_route(
            run_path(name),
            _run_route(state, name),
            methods=["POST"],
            name=f"run_{name}",
            operation_id=f"run_{name}",
            summary=f"Run pipeline {name}",
            description=spec.description or None,
            tags=["pipelines"],
            openapi_extra=request_openapi(spec),
            response_class=JSONResponse,
            responses={
                200: {"description": "The answer, outputs and provenance", **_json(ref)},
                **_RESPONSES,
            },
        )


def create_app(settings: ServiceSettings) -> FastAPI:
    """The app, with one route per declared pipeline; nothing is built until startup (the
    lifespan), where any invalid pipeline or variant stops it."""
    state = ServiceState(settings, load_contract(find_project(settings.project)))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await _start(state)
        app.openapi_schema = None  # now typed from the built graphs
        # `promptdag serve` (a process of its own), never an app embedded in a caller's process
        if state.settings.settle_gc:
            from promptdag.gc_tuning import settle_process

            settle_process()
        try:
            yield
        finally:
            await _stop(state)

    app = FastAPI(
        title="promptdag",
        version="0.1.0",
        lifespan=lifespan,
        description="The project's pipelines over HTTP, from versioned prompts, with the "
        "provenance of every answer.",
    )
    app.state.promptdag = state
    app.openapi = lambda: _openapi(app, state)  # type: ignore[method-assign]

    app.add_middleware(AuditMiddleware, state=state)

    def request_id(request: Request) -> str:
        audit = request.scope.get(AUDIT)
        return audit.request_id if isinstance(audit, Audit) else "-"

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> Response:
        state.metrics.reject(state.pipeline_of(request.url.path), exc.slug)
        return problem(
            exc.status,
            exc.slug,
            exc.title,
            exc.detail,
            exc.headers,
            request_id=request_id(request),
            **exc.extra,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        phrase = HTTPStatus(exc.status_code).phrase
        slug = phrase.lower().replace(" ", "-")
        detail = public_detail(str(exc.detail), state.roots)
        headers = dict(exc.headers or {})
        return problem(
            exc.status_code, slug, phrase, detail, headers, request_id=request_id(request)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return problem(
            422, "invalid-request", "Invalid request", detail, request_id=request_id(request)
        )

    @app.exception_handler(PromptdagError)
    async def library_error(request: Request, exc: PromptdagError) -> Response:
        return problem_for(exc, request_id(request), state.roots)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        """Only reached if the audit middleware itself fails: it answers every other error."""
        log.exception("unexpected error on %s", request.url.path)
        return problem(
            500,
            "internal",
            "Internal error",
            "an unexpected error occurred; it has been logged.",
            request_id=request_id(request),
        )

    _register_pipelines(app, state)
    mount_ui(app, state)  # the traces page at /ui, behind the API keys

    @app.get(
        "/v1/version",
        summary="The running build: git SHA, and per pipeline its variants, weights and prompts",
        responses={200: {"description": "The running build", **_json(_VERSION)}},
    )
    async def version() -> dict[str, Any]:
        return _version(state)

    @app.get(
        "/healthz",
        summary="Liveness",
        responses={200: {"description": "Alive", **_json(_STATUS)}},
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="Readiness: every pipeline of every variant built and serving, traces writing",
        response_class=JSONResponse,
        responses={
            200: {"description": "Ready", **_json(_READY)},
            503: {"description": "Not ready", **_PROBLEM},
        },
    )
    async def readyz(request: Request) -> Response:
        if not state.ready:
            return problem(
                503,
                "not-ready",
                "Not ready",
                "the service is starting or stopping.",
                {"Retry-After": "1"},
                request_id=request_id(request),
            )
        trouble = state.tracer.health.problem() if state.tracer is not None else None
        if trouble is not None:
            return problem(
                503,
                "trace-store-unavailable",
                "Traces cannot be recorded",
                trouble,
                {"Retry-After": "5"},
                request_id=request_id(request),
            )
        served = {name: sorted(variants) for name, variants in state.pipelines.items()}
        return JSONResponse({"status": "ready", "pipelines": served})

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        return Response(
            state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


_PROBLEM = {"content": {"application/problem+json": {"schema": PROBLEM_REF}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {
        "description": "The client closed the connection before the body was complete",
        **_PROBLEM,
    },
    401: {"description": "Missing or wrong API key", **_PROBLEM},
    408: {"description": "The body did not arrive within the body timeout", **_PROBLEM},
    413: {"description": "The body, or a file, is over its cap", **_PROBLEM},
    415: {"description": "Unsupported content type", **_PROBLEM},
    422: {"description": "An input is unknown or invalid, or a cap was hit", **_PROBLEM},
    429: {
        "description": "Over the API key's rate or concurrency limit (see Retry-After)",
        **_PROBLEM,
    },
    500: {"description": "An unexpected error (logged with the request id)", **_PROBLEM},
    502: {"description": "The model rejected the request or its answer is unusable", **_PROBLEM},
    503: {
        "description": "Overloaded, the model is unavailable, traces cannot be recorded, or the "
        "service is shutting down (see Retry-After)",
        **_PROBLEM,
    },
    504: {"description": "The request passed its deadline", **_PROBLEM},
}
_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
_NAMES = {"type": "array", "items": {"type": "string"}}
_READY = {
    "type": "object",
    "required": ["status", "pipelines"],
    "properties": {
        "status": {"type": "string", "const": "ready"},
        "pipelines": {"type": "object", "additionalProperties": _NAMES},
    },
}
_VERSION = {
    "type": "object",
    "required": ["git", "libraries", "pipelines"],
    "properties": {
        "git": {"anyOf": [{"$ref": "#/components/schemas/GitState"}, {"type": "null"}]},
        "libraries": {
            "anyOf": [
                {"type": "object", "additionalProperties": {"type": "string"}},
                {"type": "null"},
            ]
        },
        "pipelines": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["path", "answer", "outputs", "inputs", "variants"],
                "properties": {
                    "path": {"type": "string"},
                    "description": {"type": "string"},
                    "answer": {"type": "string"},
                    "outputs": _NAMES,
                    "inputs": _NAMES,
                    "variants": {"type": "object", "additionalProperties": {"type": "object"}},
                },
            },
        },
    },
}
