"""The traces page as an ASGI app (Starlette): `promptdag ui` serves it on its own, and the
service mounts it at /ui behind its API keys (`mount_ui`).

Pages: runs (filters: pipeline, variant, prompt version, SHA prefix, status, since), one run
(the DAG it ran, `promptdag.ui.graph`; each LLM call's rendered prompt, answer, tokens, cost,
latency and finish reason, the feedback form, the replay button), variants compared, two
variants side by side, cost per day; a run's replay and its export as an eval case. A replay
runs in the background (`promptdag.ui.jobs`): the button leads to the replay's page, which
shows it running, reloads itself, and shows the diff when it is done.

Behind keys, a browser signs in with HTTP Basic auth (any user name, the API key as password:
the browser asks for it) or sends `Authorization: Bearer KEY`. Forms are POSTs checked against
their Origin, and every response forbids scripts, frames and outside resources (CSP). Nothing
secret is shown: traces hold no keys (only their ids), stored inputs are not displayed, and a
case export leaves secret inputs out."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from promptdag.errors import NoTracesError, PromptdagError
from promptdag.inputs_store import INPUTS_FILE, InputsStore
from promptdag.ui import pages
from promptdag.ui.data import RunFilters, Traces
from promptdag.ui.feedback import all_feedback, feedback_for, set_feedback
from promptdag.ui.graph import Current, RunDags, graph_of, graph_version_of
from promptdag.ui.jobs import ReplayJobs

if TYPE_CHECKING:
    from fastapi import FastAPI

    from promptdag.replay.core import ReplayResult
    from promptdag.service.app import ServiceState
    from promptdag.service.keys import KeyRing

__all__ = ["UI_PATH", "UIConfig", "create_ui", "graph_of", "mount_ui", "project_graphs"]

log = logging.getLogger("promptdag.ui")
UI_PATH = "/ui"
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' "
    "data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class UIConfig:
    """What the page reads and who may read it."""

    traces_db: Path
    project_root: Path
    # The running build's DAG and graph version of (pipeline, variant), if any: a run whose
    # recorded graph version is that one is drawn from it, any other from its recorded SHA.
    graphs: Current = field(default=lambda pipeline, variant: None)
    keys: Callable[[], KeyRing | None] | None = None  # None: no key needed (local `promptdag ui`)
    replay: bool = True
    # The Host names accepted (None: any). Without keys, a page on this machine only answers to
    # its own names, so a web page elsewhere cannot read it through DNS rebinding.
    hosts: tuple[str, ...] | None = None


def project_graphs(project_root: Path) -> Current:
    """DAGs built on demand from the project as it is now (once per pipeline and variant)."""
    cache: dict[tuple[str, str], tuple[dict[str, Any], str] | None] = {}
    lock = threading.Lock()

    def graphs(pipeline: str, variant: str) -> tuple[dict[str, Any], str] | None:
        import asyncio

        from promptdag.factory import build_pipeline

        with lock:
            if (pipeline, variant) not in cache:
                try:
                    built = build_pipeline(
                        pipeline=pipeline,
                        variant=variant or None,
                        overrides={"llm_cache": "off"},
                        project=project_root,
                        git={"available": False, "reason": "not read for the traces page"},
                    )
                except PromptdagError as exc:
                    log.info("no DAG for %s/%s: %s", pipeline, variant, exc)
                    cache[(pipeline, variant)] = None
                else:
                    cache[(pipeline, variant)] = graph_of(built), graph_version_of(built)
                    asyncio.run(built.aclose())
            return cache[(pipeline, variant)]

    return graphs


def _key_of(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def create_ui(config: UIConfig) -> Starlette:
    """The page's app; mount it anywhere (its links follow the mount path)."""
    traces = Traces(config.traces_db)
    dags = RunDags(config.traces_db.parent / "dags", config.graphs, _graphs_at(config))
    jobs = ReplayJobs(_replayer(config))

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def denied(request: Request) -> Response | None:
        if config.keys is None:
            return None
        ring = config.keys()
        key = _key_of(request)
        if ring is not None and key is not None and ring.identify(key) is not None:
            return None
        return PlainTextResponse(
            "Sign in with an API key: user name anything, password the key.",
            status_code=401,
            headers={**_HEADERS, "WWW-Authenticate": 'Basic realm="promptdag traces"'},
        )

    def foreign(request: Request) -> Response | None:
        """A form posted from another site (CSRF): refused."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return PlainTextResponse("cross-site form refused", status_code=403, headers=_HEADERS)
        return None

    def guarded(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            refusal = denied(request)
            if refusal is not None:
                return refusal
            try:
                return handler(request)
            except NoTracesError:
                return _html(
                    pages.message_page(
                        base(request),
                        "No traces yet",
                        f"There is no trace database at {config.traces_db.name} yet: runs served "
                        "by `promptdag serve` are recorded there.",
                    )
                )
            except (PromptdagError, ValueError) as exc:
                return _html(pages.message_page(base(request), "Cannot show this", str(exc)), 400)

        return endpoint

    def runs(request: Request) -> Response:
        q = request.query_params
        filters = RunFilters(**{k: q.get(k, "").strip() for k in RunFilters.__dataclass_fields__})
        limit = 200
        rows = traces.runs(filters, limit)
        text = pages.runs_page(
            base(request),
            rows,
            filters,
            traces.choices(),
            all_feedback(config.traces_db.parent),
            limit,
        )
        return _html(text)

    def one(request: Request) -> Response:
        rid = request.path_params["rid"]
        found = traces.run(rid)
        if found is None:
            return _html(pages.message_page(base(request), "No such run", f"No run {rid}."), 404)
        request_row, calls = found
        served_with = _stored_config(config, rid)
        dag = dags.for_run(request_row, served_with)
        text = pages.run_page(
            base(request),
            request_row,
            calls,
            pages.dag_section(dag, {c["node"] for c in calls if c.get("node")}),
            feedback_for(config.traces_db.parent, rid),
            config.replay and served_with is not None,
        )
        return _html(text)

    def variants(request: Request) -> Response:
        since = request.query_params.get("since", "").strip()
        pipeline = request.query_params.get("pipeline", "").strip()
        tables = traces.variants_by_pipeline(since, pipeline)
        choices = traces.choices()["pipeline"]
        return _html(pages.variants_page(base(request), tables, since, pipeline, choices))

    def compare(request: Request) -> Response:
        a = request.query_params.get("a", "").strip()
        b = request.query_params.get("b", "").strip()
        pipeline = request.query_params.get("pipeline", "").strip()
        pairs = traces.side_by_side(a, b, pipeline=pipeline) if a and b else []
        choices = traces.choices()
        return _html(
            pages.compare_page(
                base(request), choices["variant"], a, b, pairs, pipeline, choices["pipeline"]
            )
        )

    def costs(request: Request) -> Response:
        return _html(pages.costs_page(base(request), traces.costs_per_day()))

    def case(request: Request) -> Response:
        from promptdag.replay.cases import case_for

        rid = request.path_params["rid"]
        return PlainTextResponse(
            case_for(rid, config.project_root),
            headers={**_HEADERS, "Content-Type": "text/plain; charset=utf-8"},
        )

    async def feedback(request: Request) -> Response:
        refusal = denied(request) or foreign(request)
        if refusal is not None:
            return refusal
        rid = request.path_params["rid"]
        form = await request.form()
        found = await run_in_threadpool(traces.run, rid)
        if found is None:
            return _html(pages.message_page(base(request), "No such run", f"No run {rid}."), 404)
        try:
            rating = int(str(form.get("rating", "0")))
            await run_in_threadpool(
                set_feedback,
                config.traces_db.parent / "feedback.sqlite",
                rid,
                rating,
                str(form.get("comment", "")).strip(),
                found[0].get("subject_id"),
            )
        except (ValueError, PromptdagError) as exc:
            return _html(pages.message_page(base(request), "Feedback not saved", str(exc)), 400)
        return RedirectResponse(f"{base(request)}/runs/{quote(rid)}#main", status_code=303)

    async def replay(request: Request) -> Response:
        refusal = denied(request) or foreign(request)
        if refusal is not None:
            return refusal
        if not config.replay:
            return _html(
                pages.message_page(base(request), "Replay is off", "Replay is off here."), 403
            )
        rid = request.path_params["rid"]
        at = str((await request.form()).get("at", "")).strip() or None
        if await run_in_threadpool(traces.run, rid) is None:
            return _html(pages.message_page(base(request), "No such run", f"No run {rid}."), 404)
        job = jobs.start(rid, at)
        return RedirectResponse(f"{base(request)}/replays/{quote(job.id)}", status_code=303)

    def replay_job(request: Request) -> Response:
        job = jobs.get(request.path_params["job"])
        if job is None:
            return _html(
                pages.message_page(
                    base(request),
                    "No such replay",
                    "No replay with this id: replays are kept while the page's server runs "
                    "(the most recent 100). Start it again from the run's page.",
                ),
                404,
            )
        if not job.done:
            return _html(pages.replay_running_page(base(request), job))
        try:
            result = job.future.result()
        except PromptdagError as exc:
            return _html(pages.message_page(base(request), "Cannot replay", str(exc)))
        return _html(pages.replay_page(base(request), result))

    routes = [
        Route("/", guarded(runs), methods=["GET"]),
        Route("/runs/{rid}", guarded(one), methods=["GET"]),
        Route("/runs/{rid}/case.toml", guarded(case), methods=["GET"]),
        Route("/runs/{rid}/feedback", feedback, methods=["POST"]),
        Route("/runs/{rid}/replay", replay, methods=["POST"]),
        Route("/replays/{job}", guarded(replay_job), methods=["GET"]),
        Route("/variants", guarded(variants), methods=["GET"]),
        Route("/compare", guarded(compare), methods=["GET"]),
        Route("/costs", guarded(costs), methods=["GET"]),
    ]
    middleware = (
        [Middleware(TrustedHostMiddleware, allowed_hosts=list(config.hosts))]
        if config.hosts
        else []
    )
    return Starlette(routes=routes, middleware=middleware)


def _stored_config(config: UIConfig, request_id: str) -> dict[str, Any] | None:
    """The config the request was served with, when its inputs are stored (else None)."""
    path = config.traces_db.parent / INPUTS_FILE
    if not path.is_file():
        return None
    store = InputsStore(path)
    try:
        return store.configs([request_id]).get(request_id)
    finally:
        store.close()


def _graphs_at(config: UIConfig) -> Callable[[str, Any], list[dict[str, Any]]]:
    def at(sha: str, builds: Any) -> list[dict[str, Any]]:
        from promptdag.replay.core import graphs_at

        return graphs_at(sha, builds, config.project_root)

    return at


def _replayer(config: UIConfig) -> Callable[[str, str | None], ReplayResult]:
    def replay(request_id: str, at: str | None) -> ReplayResult:
        from promptdag.replay.core import replay_request

        return replay_request(request_id, at=at, project_root=config.project_root)

    return replay


def mount_ui(app: FastAPI, state: ServiceState) -> None:
    """Mount the page at /ui in the service, behind its API keys (open only with
    --insecure-no-auth), over the service's own trace store and built pipelines."""
    from promptdag.config import data_dir
    from promptdag.project import find_project

    root = find_project(state.settings.project)

    def graphs(pipeline: str, variant: str) -> tuple[dict[str, Any], str] | None:
        built = state.pipelines.get(pipeline, {}).get(variant)
        return None if built is None else (graph_of(built), graph_version_of(built))

    def keys() -> KeyRing | None:
        return state.keys

    config = UIConfig(
        traces_db=data_dir(root) / "traces.sqlite",
        project_root=root,
        graphs=graphs,
        keys=None if state.settings.insecure_no_auth else keys,
    )
    app.mount(UI_PATH, create_ui(config))
