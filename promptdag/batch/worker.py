"""A batch worker: builds its pipeline once through the one factory, then runs items through
`Pipeline.run` (input checks, deadline, provenance), one row per item. Both engines run this
same code (a local worker process, a Ray actor), so both give the same rows."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptdag.batch.limits import Limits, RemoteLimiter, SharedLimiter
from promptdag.batch.rows import OutputColumns, RowContext, error_row, ok_row
from promptdag.batch.sources import BatchItem, content_hash, item_inputs
from promptdag.llm.client import CALL_LISTENERS, LLMCall
from promptdag.pipeline import Pipeline, usage_of
from promptdag.provenance import fingerprint_id
from promptdag.tracing.context import RequestContext, current_request, request_scope

__all__ = ["BatchWorker", "WorkerLost", "WorkerSetup", "build_id_of"]


class WorkerLost(Exception):
    """The worker running an item died (a crash, the OOM killer); the item's row records it."""


def build_id_of(pipeline: Pipeline) -> str:
    """The fingerprint of a build: everything fixed when the Driver was built (git state,
    config, graph and prompt versions, libraries). A run's own fingerprint adds the hashes of
    its rendered prompts, which follow from the build and the inputs."""
    return fingerprint_id(pipeline.build_info())


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker needs to build the batch's pipeline exactly as the batch did."""

    root: str
    pipeline: str
    variant: str | None
    overrides: dict[str, Any]
    constants: dict[str, Any] = field(repr=False)
    git: dict[str, Any]
    batch_run: str
    limits: Limits = field(default_factory=Limits)
    http_client: str = "httpx"  # the SDK's HTTP stack for a real endpoint: "httpx" or "aiohttp"


class BatchWorker:
    """Builds the pipeline (its `build_id` must be the batch's: the engine checks) and runs
    items."""

    def __init__(
        self, setup: WorkerSetup, remote: RemoteLimiter | None = None, *, name: str | None = None
    ):
        from promptdag.factory import build_pipeline
        from promptdag.project import load_project

        self.setup = setup
        self.pipeline = build_pipeline(
            pipeline=setup.pipeline,
            variant=setup.variant,
            overrides=setup.overrides,
            project=load_project(Path(setup.root)),
            git=setup.git,
        )
        self.build_id = build_id_of(self.pipeline)
        self.name = name or _name()
        self.spec = self.pipeline.spec
        self.ctx = RowContext(
            pipeline=self.pipeline.name,
            variant=self.pipeline.variant,
            prompt_versions=json.dumps(self.pipeline.selected_versions(), sort_keys=True),
            build_id=self.build_id,
            batch_run=setup.batch_run,
            worker=self.name,
            columns=OutputColumns.of(self.pipeline),
        )
        if remote is not None:
            counter = None
            if setup.limits.tpm:
                from promptdag.llm.tokens import token_counter

                counter = token_counter(self.pipeline.llm.settings.model).count
            self.pipeline.llm.limiter = SharedLimiter(remote, count_tokens=counter)
        self._calls: dict[str, list[LLMCall]] = {}
        self.started = False
        CALL_LISTENERS.append(self._on_call)

    def _on_call(self, call: LLMCall) -> None:
        """Collects each item's answered calls, so a failed item still reports its usage."""
        ctx = current_request()
        if ctx is not None and ctx.request_id in self._calls:
            self._calls[ctx.request_id].append(call)

    async def start(self) -> None:
        """Ready to run, on the event loop that will run the items: the LLM on the batch's HTTP
        stack (an aiohttp session belongs to one loop). Once only."""
        if self.started:
            return
        self.started = True
        await self.pipeline.llm.use_http_client(self.setup.http_client)
        # the model's token encoding, loaded now rather than in the first item's run
        self.pipeline.llm_token_note()

    async def run(self, item: BatchItem) -> dict[str, Any]:
        """The item's row; a failure of the item is its row's error, never an exception."""
        await self.start()
        started = time.perf_counter()
        request_id = f"{self.setup.batch_run}-{item.index}"
        self._calls[request_id] = []
        digest: str | None = None
        try:
            inputs = item_inputs(item, self.spec, self.setup.constants)
            digest = content_hash(inputs)
            ctx = RequestContext(
                request_id=request_id,
                variant=self.pipeline.variant,
                assignment="batch",
                source="batch",
            )
            with request_scope(ctx):
                result = await self.pipeline.run(inputs)
            took = time.perf_counter() - started
            return ok_row(self.ctx, item.index, item.id, digest, result, took)
        except Exception as exc:  # the item failed: its row says how, and the batch goes on
            calls = self._calls.get(request_id, [])
            return error_row(
                self.ctx,
                item.index,
                item.id,
                digest,
                type(exc).__name__,
                str(exc),
                usage_of(calls),
                calls[-1].model if calls else None,
                time.perf_counter() - started,
            )
        finally:
            self._calls.pop(request_id, None)

    async def aclose(self) -> None:
        if self._on_call in CALL_LISTENERS:
            CALL_LISTENERS.remove(self._on_call)
        await self.pipeline.aclose()


def _name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
