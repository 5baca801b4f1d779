"""The process that re-runs recorded requests inside one tree (a git worktree of the ref to
replay at): `python -P -c "from promptdag.replay.child import main; main()"` in the tree's
project directory, a JSON job on stdin, one JSON result per request on stdout. A job of
`graphs` (pipeline, variant, config each) answers with each build's DAG instead (the traces
page draws a run's DAG as its recorded SHA defined it).

It imports that tree's dataflows and prompts, so two refs never mix in one process; the trace
adapters are not attached (a replay is not a served request), the response cache is the
project's (PROMPTDAG_DATA_DIR from the parent), so unchanged calls cost nothing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from promptdag.errors import PromptdagError
from promptdag.factory import build_pipeline
from promptdag.inputs_store import InputsStore
from promptdag.pipeline import RunResult, _jsonable
from promptdag.project import load_project
from promptdag.provenance import dependency_lock, sha256_text
from promptdag.tracing.context import RequestContext, new_request_id, request_scope

__all__ = ["build_graphs", "main", "replay_jobs"]


def _result(out: RunResult, lock: dict[str, str] | None) -> dict[str, Any]:
    """What the parent compares: the answer, the rendered-prompt hashes, each call's prompt hash,
    the tree's dependency lock."""
    return {
        "dependency_lock": lock,
        "answer_text": out.answer_text(),
        "answer": _jsonable(out.answer),
        "outputs": _jsonable(out.outputs),
        "prompts": {n: m.get("rendered_sha256") for n, m in out.fingerprint["prompts"].items()},
        "prompt_versions": {n: m.get("version") for n, m in out.fingerprint["prompts"].items()},
        "fingerprint": out.fingerprint["id"],
        "config_sha256": out.fingerprint["config_sha256"],
        "git": out.fingerprint["git"],
        "libraries": out.fingerprint.get("libraries"),
        "calls": [
            {
                "step": c.step,
                "chunk_index": c.index,
                "prompt_sha256": sha256_text(c.prompt),
                "prompt_text": c.prompt,
                "cached": c.cached,
            }
            for c in out.llm_calls
        ],
        "usage": out.usage,
    }


# Replays run at once in the child (their LLM calls overlap, as a served request's do).
_CONCURRENCY = 4


class _Builds:
    """Each (pipeline, variant, config) built once for every job that replays with it."""

    def __init__(self, project: Any):
        self.project = project
        self.built: dict[str, Any] = {}  # a Pipeline, or the PromptdagError building it raised

    def get(self, stored: Any, overrides: dict[str, Any]) -> Any:
        config = {**stored.config, **overrides}
        key = json.dumps([stored.pipeline, stored.variant, config], sort_keys=True, default=str)
        if key not in self.built:
            try:
                self.built[key] = build_pipeline(
                    pipeline=stored.pipeline,
                    variant=stored.variant,
                    overrides=config,
                    project=self.project,
                )
            except PromptdagError as exc:
                self.built[key] = exc
        return self.built[key]

    async def aclose(self) -> None:
        for built in self.built.values():
            if not isinstance(built, PromptdagError):
                await built.aclose()


async def _one(
    builds: _Builds, store: InputsStore, job: dict[str, Any], lock: dict[str, str] | None
) -> dict[str, Any]:
    stored = store.get(job["request_id"])
    if stored is None:
        return {"request_id": job["request_id"], "error": "its stored inputs are gone"}
    pipeline = builds.get(stored, job.get("overrides", {}))
    if isinstance(pipeline, PromptdagError):
        return {"request_id": job["request_id"], "error": f"{type(pipeline).__name__}: {pipeline}"}
    # The recorded request's API key id and subject: the service's response cache is namespaced
    # by key id (so unchanged calls are hits), and entries written now are erased with the subject.
    ctx = RequestContext(
        request_id=new_request_id(),
        variant=stored.variant,
        assignment="replay",
        subject_id=job.get("subject_id"),
        key_id=job.get("key_id"),
        source="replay",
    )
    try:
        with request_scope(ctx):
            out = await pipeline.run(stored.inputs)
        return {"request_id": job["request_id"], **_result(out, lock)}
    except PromptdagError as exc:
        return {"request_id": job["request_id"], "error": f"{type(exc).__name__}: {exc}"}


async def replay_jobs(
    root: Path, inputs_db: Path, jobs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each job (request_id, overrides) re-run in the project at `root`, up to _CONCURRENCY at
    once, each pipeline built once; the results in the jobs' order."""
    builds = _Builds(load_project(root))
    lock = dependency_lock(root)
    store = InputsStore(inputs_db)
    slots = asyncio.Semaphore(_CONCURRENCY)

    async def bounded(job: dict[str, Any]) -> dict[str, Any]:
        async with slots:
            return await _one(builds, store, job, lock)

    try:
        return list(await asyncio.gather(*(bounded(job) for job in jobs)))
    finally:
        await builds.aclose()
        store.close()


async def build_graphs(root: Path, builds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each build's DAG (`graph_of`) and Hamilton graph version in the project at `root`."""
    from promptdag.ui.graph import graph_of

    project = load_project(root)
    out: list[dict[str, Any]] = []
    for b in builds:
        try:
            pipeline = build_pipeline(
                pipeline=b["pipeline"],
                variant=b.get("variant") or None,
                overrides=b.get("config") or {},
                project=project,
                git={"available": False, "reason": "a DAG for the traces page"},
            )
        except PromptdagError as exc:
            out.append({"error": f"{type(exc).__name__}: {exc}"})
            continue
        try:
            out.append(
                {
                    "graph": graph_of(pipeline),
                    "graph_version": pipeline.build_info()["graph_version"],
                }
            )
        finally:
            await pipeline.aclose()
    return out


def main() -> None:
    job = json.loads(sys.stdin.read())
    try:
        if "graphs" in job:
            results = asyncio.run(build_graphs(Path.cwd(), job["graphs"]))
        else:
            results = asyncio.run(replay_jobs(Path.cwd(), Path(job["inputs_db"]), job["jobs"]))
    except PromptdagError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    sys.stdout.write(json.dumps(results, ensure_ascii=False))
