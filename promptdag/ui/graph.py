"""The DAG a run actually used, for the traces page: the running build's when its Hamilton
graph version is the one the run recorded, else the one its recorded git SHA defines (built in
a worktree of that commit, as replay does, and cached per commit on disk), else nothing and a
line saying why (no SHA recorded): never the current build's DAG passed off as the run's."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptdag.errors import PromptdagError

if TYPE_CHECKING:
    from promptdag.pipeline import Pipeline

__all__ = ["Current", "GraphsAt", "RunDag", "RunDags", "graph_of", "graph_version_of"]

log = logging.getLogger("promptdag.ui")

# The running build's DAG of (pipeline, variant) and its graph version, when there is one.
Current = Callable[[str, str], tuple[dict[str, Any], str] | None]
# (sha, builds) -> one result per build: {"graph", "graph_version"} or {"error"}.
GraphsAt = Callable[[str, Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


def graph_of(pipeline: Pipeline) -> dict[str, Any]:
    """A built pipeline's DAG as nodes and edges (what the page draws): the nodes its outputs
    depend on, without the config values and the LLM client every node could take."""
    from promptdag.factory import _upstream
    from promptdag.pipeline import LLM_INPUT

    hamilton_graph = pipeline.graph
    graph = {n.name: n for n in hamilton_graph.nodes}
    needed = _upstream(hamilton_graph, pipeline.spec.final_vars)
    hidden = {LLM_INPUT, *pipeline.config}
    nodes = sorted(
        (graph[n] for n in needed if not (graph[n].is_external_input and n in hidden)),
        key=lambda n: n.name,
    )
    kept = {n.name for n in nodes}
    return {
        "nodes": [{"name": n.name, "external": n.is_external_input} for n in nodes],
        "edges": [
            [d, n.name]
            for n in nodes
            for d in (*n.required_dependencies, *n.optional_dependencies)
            if d in kept
        ],
    }


def graph_version_of(pipeline: Pipeline) -> str:
    """The Hamilton graph version a run of `pipeline` records (its trace's graph_version)."""
    return str(pipeline.build_info()["graph_version"])


@dataclass(frozen=True)
class RunDag:
    """What the run page draws: the graph (None: nothing to draw), where it comes from, and a
    warning when it may not be exactly the run's."""

    graph: dict[str, Any] | None
    source: str
    warning: str | None = None


class RunDags:
    """Each run's DAG, resolved as the module says; DAGs read at a commit are cached in memory
    and as JSON files in `cache_dir` (a commit's DAG never changes)."""

    def __init__(self, cache_dir: Path, current: Current, graphs_at: GraphsAt):
        self.cache_dir = cache_dir
        self.current = current
        self.graphs_at = graphs_at
        self._memory: dict[str, dict[str, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def for_run(self, row: Mapping[str, Any], config: Mapping[str, Any] | None) -> RunDag:
        """The DAG of the recorded run `row` (a trace's request row), served with `config`
        (the stored serve config; None when its inputs were not stored)."""
        pipeline, variant = str(row.get("pipeline") or ""), str(row.get("variant") or "")
        recorded = row.get("graph_version")
        try:
            now = self.current(pipeline, variant)
        except PromptdagError as exc:  # the running build cannot be read: use the SHA
            log.info("no current DAG for %s/%s: %s", pipeline, variant, exc)
            now = None
        if now is not None and recorded and now[1] == recorded:
            return RunDag(
                now[0],
                "The DAG of the running build: its graph version is the one this run recorded "
                f"({str(recorded)[:12]}).",
            )
        sha = row.get("git_sha")
        if not sha:
            return RunDag(
                None,
                "",
                "This run recorded no git SHA (it was served from a tree without .git and "
                "without a `promptdag stamp`), and the running build is not the one it ran "
                f"(graph version {str(recorded or 'not recorded')[:12]} then, "
                f"{'none' if now is None else now[1][:12]} now), so its DAG cannot be drawn.",
            )
        got = self._at(str(sha), pipeline, variant, dict(config or {}))
        if "error" in got:
            return RunDag(
                None,
                "",
                f"The DAG at the recorded commit {sha[:12]} cannot be built: {got['error']}",
            )
        source = f"The DAG as the recorded commit {sha[:12]} defines it."
        if not recorded or got["graph_version"] == recorded:
            return RunDag(got["graph"], source)
        why = (
            "it was served from a tree with uncommitted changes, which the commit does not hold"
            if row.get("git_dirty")
            else "another Hamilton version, or a change outside git"
        )
        return RunDag(
            got["graph"],
            source,
            f"Its graph version ({str(got['graph_version'])[:12]}) is not the one the run "
            f"recorded ({str(recorded)[:12]}): {why}. The run's own DAG may differ from this one.",
        )

    def _at(self, sha: str, pipeline: str, variant: str, config: dict[str, Any]) -> dict[str, Any]:
        build = {"pipeline": pipeline, "variant": variant, "config": config}
        canonical = json.dumps([sha, build], sort_keys=True, default=str)
        key = hashlib.sha256(canonical.encode()).hexdigest()[:32]
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one worktree per DAG, however many pages ask at once
            if key in self._memory:
                return self._memory[key]
            path = self.cache_dir / f"dag-{key}.json"
            try:
                got: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                try:
                    got = self.graphs_at(sha, [build])[0]
                except PromptdagError as exc:
                    got = {"error": str(exc)}
                else:
                    if "error" not in got:
                        _write(path, got)
            self._memory[key] = got
            return got


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write the cached DAG atomically (a page reading it meanwhile sees all or nothing)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot cache the DAG in %s: %s", path, exc)
