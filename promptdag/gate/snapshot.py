"""A snapshot of one tree's prompts: every prompt version of every pack with its source hash,
required inputs and rendered text on every fixture; every variant's resolved prompt versions;
and each variant's DAG (for lineage and diagrams). The lockfile is a snapshot without the texts;
the review report diffs two snapshots taken from two git refs, each in its own process
(`promptdag prompts snapshot` run inside a worktree of the ref)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hamilton.graph_types import HamiltonGraph, HamiltonNode, hash_source_code

from promptdag.catalog import PromptVersion, discover_prompts, load_fixtures, version_key
from promptdag.errors import PromptdagError
from promptdag.factory import build_pipeline
from promptdag.llm.tokens import token_counter
from promptdag.pipeline import Pipeline, render_prompts
from promptdag.project import Project, load_project
from promptdag.provenance import sha256_text
from promptdag.render import to_mermaid
from promptdag.variants import load_variants

__all__ = ["SNAPSHOT_VERSION", "fill_tokens", "prompt_key", "take_snapshot"]

SNAPSHOT_VERSION = 2
# Snapshots record prompts, not provenance: the many Drivers built for one need no git reading.
_NO_GIT = {"available": False, "reason": "not read for a prompt snapshot"}


@dataclass
class _Context:
    """One snapshot's project and choices, and the source hashes computed so far (the variants
    share most of their functions; hashing one reads and parses its module's source)."""

    project: Project
    count_tokens: bool = True
    _sources: dict[Callable[..., Any], str] = field(default_factory=dict)
    _versions: dict[Hashable, str | None] = field(default_factory=dict)

    def source_hash(self, function: Callable[..., Any]) -> str:
        if function not in self._sources:
            self._sources[function] = hash_source_code(function, strip=True)
        return self._sources[function]

    def node_version(self, node: HamiltonNode) -> str | None:
        """Hamilton's `node.version` (the hash of its first originating function's source),
        computed once per function."""
        functions = node.originating_functions
        if not functions or not isinstance(functions[0], Hashable):
            return node.version
        if functions[0] not in self._versions:
            self._versions[functions[0]] = node.version
        return self._versions[functions[0]]


def prompt_key(pack: str, node: str, version: str) -> str:
    """How a prompt version is named in locks and reports: `pack/node@version`."""
    return f"{pack}/{node}@{version}"


def _graph(pipeline: Pipeline, graph: HamiltonGraph) -> dict[str, Any]:
    nodes = sorted(graph.nodes, key=lambda n: n.name)
    edges = sorted(
        (dep, n.name) for n in nodes for dep in (*n.required_dependencies, *n.optional_dependencies)
    )
    return {
        "nodes": [{"name": n.name, "external": n.is_external_input} for n in nodes],
        "edges": [list(e) for e in edges],
        "mermaid": to_mermaid(pipeline),
    }


async def _render_version(
    ctx: _Context, pv: PromptVersion, others: dict[str, str], fixtures: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    overrides = {
        **others,
        "prompt_pack": pv.pack,
        version_key(pv.node): pv.version,
        "llm_cache": "off",
    }
    pipeline = build_pipeline(project=ctx.project, overrides=overrides, git=_NO_GIT)
    model = pipeline.config["llm_model"]
    try:
        rendered = {}
        for name, fixture in fixtures.items():
            text = (await render_prompts(pipeline, fixture, name))[pv.node]
            rendered[name] = {
                "text": text,
                "sha256": sha256_text(text),
                "tokens": token_counter(model).count(text) if ctx.count_tokens else None,
            }
    finally:
        await pipeline.aclose()
    return {
        "pack": pv.pack,
        "node": pv.node,
        "version": pv.version,
        "description": pv.description,
        "defined_at": f"{ctx.project.relpath(pv.file)}:{pv.line}",
        "inputs": sorted(pv.inputs),
        "source_sha256": ctx.source_hash(pv.function),
        "tokens_model": model,
        "rendered": rendered,
    }


def _resolved_config(pipeline: Pipeline) -> dict[str, Any]:
    """The variant's resolved build-time config (defaults, app config, variant settings) as
    JSON values, without the cache mode the snapshot itself chose."""
    return {
        k: json.loads(json.dumps(v, default=str))
        for k, v in sorted(pipeline.config.items())
        if k != "llm_cache"
    }


async def _variant(ctx: _Context, name: str, raw: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "weight": raw.weight,
        "description": raw.description,
        "config": raw.config,
    }
    try:
        pipeline = build_pipeline(
            project=ctx.project, variant=name, overrides={"llm_cache": "off"}, git=_NO_GIT
        )
    except PromptdagError as exc:
        return {**out, "error": str(exc)}
    try:
        out["pack"] = pipeline.config["prompt_pack"]
        out["prompts"] = {n: pipeline.config[version_key(n)] for n in sorted(pipeline.prompts)}
        out["model"] = pipeline.config["llm_model"]
        graph = pipeline.graph
        out["graph"] = _graph(pipeline, graph)
        out["resolved"] = _resolved_config(pipeline)
        out["node_versions"] = {
            n.name: ctx.node_version(n) for n in graph.nodes if not n.is_external_input
        }
    finally:
        await pipeline.aclose()
    return out


async def _take(ctx: _Context) -> dict[str, Any]:
    project = ctx.project
    catalog = discover_prompts(project)
    fixtures = load_fixtures(project)
    variants = load_variants(project.variants_path)
    prompts: dict[str, Any] = {}
    for pack, nodes in catalog.packs.items():
        first = {version_key(n): catalog.versions(pack, n)[0] for n in nodes}
        for node in sorted(nodes):
            for version in catalog.versions(pack, node):
                pv = nodes[node][version]
                prompts[prompt_key(pack, node, version)] = await _render_version(
                    ctx, pv, first, fixtures
                )
    return {
        "snapshot_version": SNAPSHOT_VERSION,
        "problems": list(catalog.problems),
        "fixtures": sorted(fixtures),
        "default_variant": variants.default,
        "prices": {k: list(v) for k, v in sorted(variants.prices.items())},
        "prompts": dict(sorted(prompts.items())),
        "variants": {n: await _variant(ctx, n, v) for n, v in sorted(variants.variants.items())},
    }


def take_snapshot(root: str | Path | None = None, *, count_tokens: bool = True) -> dict[str, Any]:
    """The snapshot of the project at `root` (default: the one holding the cwd). Without
    `count_tokens`, rendered texts carry `tokens: None`: `fill_tokens` counts them later, in a
    process that counts anyway (loading an encoding costs about half a second)."""
    project = load_project(root)
    if discover_prompts(project).problems:
        return {
            "snapshot_version": SNAPSHOT_VERSION,
            "problems": list(discover_prompts(project).problems),
        }
    return asyncio.run(_take(_Context(project, count_tokens)))


def fill_tokens(
    snapshot: dict[str, Any],
    like: dict[str, Any],
    count: Callable[[str, list[str]], list[int]] | None = None,
) -> None:
    """Give every rendered text of `snapshot` left uncounted its token count: the count `like`
    (another snapshot) has for the same version, fixture, text and model, else one `count`
    makes (model, texts → counts; default: here, `token_counter`), one call per model."""
    todo: dict[str, list[dict[str, Any]]] = {}
    for key, prompt in snapshot.get("prompts", {}).items():
        other = like.get("prompts", {}).get(key, {})
        same_model = other.get("tokens_model") == prompt["tokens_model"]
        for fixture, rendered in prompt["rendered"].items():
            if rendered["tokens"] is not None:
                continue
            twin = other.get("rendered", {}).get(fixture, {}) if same_model else {}
            if twin.get("sha256") == rendered["sha256"] and twin.get("tokens") is not None:
                rendered["tokens"] = twin["tokens"]
            else:
                todo.setdefault(prompt["tokens_model"], []).append(rendered)
    for model, entries in todo.items():
        texts = [e["text"] for e in entries]
        counts = count(model, texts) if count else [token_counter(model).count(t) for t in texts]
        for entry, n in zip(entries, counts, strict=True):
            entry["tokens"] = n
