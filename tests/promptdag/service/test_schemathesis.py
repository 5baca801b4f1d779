"""Schemathesis against the app's own OpenAPI: every operation, and every declared request body
media type of /v1/pipelines/summarize/runs (JSON, multipart, raw PDF), gets generated requests
with a valid API key, through the ASGI app with its lifespan running (every variant built,
tracing on); so does every operation of a small project with a JSON-only pipeline and a
text-file pipeline (see conftest.py)

No generated request may get a 5xx. Valid requests must also get answers the spec declares
(status code, content type, body schema); invalid ones (schemathesis' negative mode) must not
get a 5xx either."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.asgi import ASGI_TRANSPORT
from schemathesis.transport.requests import REQUESTS_TRANSPORT
from schemathesis.transport.wsgi import WSGI_TRANSPORT

from promptdag.service.app import create_app
from promptdag.service.settings import ServiceSettings
from tests.promptdag.service.conftest import AUTH, KEY, REPO, SAMPLE, SUMMARIZE

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 40
FIELD_BODIES = ("application/json", "multipart/form-data")
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The spec alone, without starting the app: what the parametrization below must cover.
SPEC = create_app(ServiceSettings(api_keys=frozenset({KEY}), project=REPO)).openapi()
TARGETS = [
    (method.upper(), path, media_type)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
    for media_type in ((operation.get("requestBody") or {}).get("content") or [None])
]
BODY_TYPES = [t for m, p, t in TARGETS if (m, p) == ("POST", SUMMARIZE)]


@pytest.fixture(scope="module", autouse=True)
def pdf_bodies() -> Iterator[None]:
    """Schemathesis has no serializer for application/pdf and silently skips such bodies: send
    the generated binary as it is, for this module only."""
    schemathesis.serializer.alias("application/pdf", "application/octet-stream")
    yield
    for transport in (ASGI_TRANSPORT, REQUESTS_TRANSPORT, WSGI_TRANSPORT):
        transport.unregister_serializer("application/pdf")


@pytest.fixture
def api(tmp_path, monkeypatch) -> Iterator[Any]:
    """The schema loaded from a fresh app; loading it starts the app's lifespan."""
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(REPO)
    app = create_app(ServiceSettings(api_keys=frozenset({KEY}), traces=True, project=REPO))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        asgi.shutdown_lifespans()  # builds closed, traces flushed, before the data dir goes


def run_cases(cases: Any, mode: GenerationMode, examples: int = MAX_EXAMPLES) -> list[Any]:
    """Send `examples` generated requests and check each answer; the cases sent."""
    sent: list[Any] = []

    @given(case=cases)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,  # one body media type of three: counted below
        ],
    )
    def check(case: Any) -> None:
        sent.append(case)
        response = case.call(headers=AUTH)
        positive = mode is GenerationMode.POSITIVE
        checks = CONFORMANCE if positive else [not_a_server_error]
        case.validate_response(response, checks=checks, headers=AUTH)

    check()
    return sent


def strategy(operation: Any, media_type: str | None, mode: GenerationMode) -> Any:
    cases = operation.as_strategy(generation_mode=mode)
    if media_type is None:
        return cases
    # One body media type per test, so each gets all its examples.
    return cases.filter(lambda case: case.media_type == media_type)


def test_schema_parametrization_covers_every_operation_and_body_type() -> None:
    assert set(BODY_TYPES) == {"application/json", "multipart/form-data", "application/pdf"}
    assert {p for _, p, _ in TARGETS} >= {"/healthz", "/readyz", "/v1/version", "/metrics"}


@pytest.mark.parametrize(
    ("method", "path", "media_type"),
    TARGETS,
    ids=[f"{m} {p}{' ' + t if t else ''}" for m, p, t in TARGETS],
)
def test_schema_generated_requests_get_no_5xx_and_conform(api, method, path, media_type) -> None:
    mode = GenerationMode.POSITIVE
    sent = run_cases(strategy(api[path][method], media_type, mode), mode)
    assert {c.media_type for c in sent} == {media_type}
    assert media_type is None or len(sent) >= MAX_EXAMPLES // 2


# Not application/pdf: any bytes are a valid binary body, so schemathesis can negate nothing
# there; the damaged-PDF test below covers that body instead.
@pytest.mark.parametrize("media_type", FIELD_BODIES)
def test_schema_invalid_summary_requests_get_no_5xx(api, media_type) -> None:
    mode = GenerationMode.NEGATIVE
    sent = run_cases(strategy(api[SUMMARIZE]["POST"], media_type, mode), mode)
    assert {c.media_type for c in sent} == {media_type}
    assert len(sent) >= MAX_EXAMPLES // 2


def test_schema_truncated_and_corrupted_pdfs_get_no_5xx(api) -> None:
    """Generated binary rarely looks like a PDF: cut and corrupt a real one instead, so the
    PDF reader's failures are reached."""
    pdf = SAMPLE.read_bytes()
    operation = api[SUMMARIZE]["POST"]

    def damaged(cut: int, flips: list[tuple[int, int]]) -> bytes:
        data = bytearray(pdf[:cut])
        for at, byte in flips:
            if data:
                data[at % len(data)] = byte
        return bytes(data)

    bodies = st.builds(
        damaged,
        st.integers(5, len(pdf)),
        st.lists(st.tuples(st.integers(0, len(pdf)), st.integers(0, 255)), max_size=8),
    )
    cases = bodies.flatmap(
        lambda body: operation.as_strategy(body=body, media_type="application/pdf")
    )
    sent = run_cases(cases, GenerationMode.POSITIVE, examples=30)
    assert {c.media_type for c in sent} == {"application/pdf"}


def _multipart(fields: int = 0, files: int = 1) -> dict[str, Any]:
    pdf = SAMPLE.read_bytes()
    return {
        "files": [("pdf_bytes", (f"d{i}.pdf", pdf, "application/pdf")) for i in range(files)],
        "data": {f"extra_{i}": "x" for i in range(fields)},
    }


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        pytest.param("POST", SUMMARIZE, _multipart(fields=12), id="too-many-fields"),
        pytest.param("POST", SUMMARIZE, _multipart(files=7), id="too-many-files"),
        pytest.param("POST", SUMMARIZE, _multipart(files=2), id="two-files"),
        pytest.param(
            "POST",
            SUMMARIZE,
            {"content": b"x", "headers": {"Content-Type": "multipart/form-data"}},
            id="no-boundary",
        ),
        pytest.param("GET", SUMMARIZE, {}, id="wrong-method"),
        pytest.param("GET", "/v1/nothing-here", {}, id="unknown-path"),
    ],
)
def test_schema_refusals_from_starlette_are_problem_responses(
    make_client, method, path, kwargs
) -> None:
    """Found while fuzzing: refusals raised by Starlette itself, not by promptdag."""
    headers = {**AUTH, **kwargs.pop("headers", {})}
    r = make_client().request(method, path, headers=headers, **kwargs)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), (r.headers, r.text)
    assert {"type", "title", "status", "detail"} <= set(r.json()), r.text
    declared = SPEC["paths"].get(path, {}).get(method.lower(), {}).get("responses", {})
    assert not declared or str(r.status_code) in declared, (r.status_code, sorted(declared))


@pytest.fixture
def tiny_api(tiny_project, tmp_path, monkeypatch) -> Iterator[Any]:
    """The small project's schema, from a fresh app with its lifespan running."""
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    app = create_app(ServiceSettings(api_keys=frozenset({KEY}), traces=True, project=tiny_project))
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)
    finally:
        asgi.shutdown_lifespans()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_every_operation_of_every_pipeline_gets_no_5xx(tiny_api, mode) -> None:
    """Every operation and body type of a project with two pipelines: a JSON-only one (typed
    string, integer and boolean inputs) and a text-file one (raw or multipart, a secret header).
    Negative mode only where a body can be invalid (not a raw file, not a bodiless GET)."""
    covered = set()
    for path, operations in tiny_api.raw_schema["paths"].items():
        for method, operation in operations.items():
            for media_type in (operation.get("requestBody") or {}).get("content") or [None]:
                if mode is GenerationMode.NEGATIVE and media_type not in FIELD_BODIES:
                    continue
                cases = strategy(tiny_api[path][method.upper()], media_type, mode)
                sent = run_cases(cases, mode, examples=25)
                covered |= {(path, c.media_type) for c in sent}
    assert {
        ("/v1/pipelines/poem/runs", "application/json"),
        ("/v1/pipelines/poem/runs", "multipart/form-data"),
        ("/v1/pipelines/words/runs", "multipart/form-data"),
    } <= covered, covered
    if mode is GenerationMode.POSITIVE:
        assert ("/v1/pipelines/words/runs", "text/plain") in covered, covered
        assert ("/healthz", None) in covered, covered
