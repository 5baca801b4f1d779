"""The one driver factory: the CLI, the service and batch jobs all build Drivers here.

It resolves config (defaults < variant < overrides), validates every problem at once (unknown
keys, packs, prompt versions, convention breaks), builds Hamilton's async Driver from the
project's dataflow modules plus exactly one prompt pack, and guards the graph so no prompt node
can be left as an external input that a request could fill in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hamilton import async_driver, lifecycle
from hamilton.graph_types import HamiltonGraph
from hamilton.lifecycle.base import ValidationException

from promptdag.catalog import PromptCatalog, discover_prompts, version_key
from promptdag.config import DEFAULTS, LLM_BACKENDS, coerce, data_dir
from promptdag.errors import ConfigError
from promptdag.llm.cache import CACHE_MODES, ResponseCache
from promptdag.llm.client import LLM, LLMSettings, make_openai_client
from promptdag.pipeline import Pipeline
from promptdag.project import Project, load_project
from promptdag.provenance import git_state, require_clean
from promptdag.variants import VariantsFile, load_variants

__all__ = ["PromptGuard", "build_pipeline", "resolve_config"]


class PromptGuard(lifecycle.StaticValidator):
    """Fails the build when a prompt node is an external input (unknown version, missing key,
    or a pack that lacks the node): otherwise a caller could pass prompt text in `inputs`."""

    def __init__(self, prompt_nodes: Sequence[str]):
        self.prompt_nodes = set(prompt_nodes)

    def run_to_validate_graph(
        self, graph: HamiltonGraph, **future_kwargs: Any
    ) -> tuple[bool, str | None]:
        loose = sorted(
            n.name
            for n in graph.nodes
            if n.is_external_input and (n.name in self.prompt_nodes or n.name.endswith("_prompt"))
        )
        if loose:
            return False, (
                f"unresolved prompt nodes: {loose}. Each needs a version selected with "
                "<node>_version in the config, defined in the selected prompt pack."
            )
        return True, None


def _check_prompts(config: dict[str, Any], catalog: PromptCatalog, problems: list[str]) -> None:
    pack = config["prompt_pack"]
    if pack not in catalog.packs:
        problems.append(
            f"prompt_pack={pack!r} is not a pack in prompts/. Defined: {', '.join(sorted(catalog.packs))}."
        )
        return
    for node in catalog.nodes(pack):
        key = version_key(node)
        defined = ", ".join(catalog.versions(pack, node))
        if key not in config:
            problems.append(f"{key} is not set. Defined in prompts/{pack}.py: {defined}.")
        elif config[key] not in catalog.packs[pack][node]:
            problems.append(
                f"{key}={config[key]!r} is not defined in prompts/{pack}.py. Defined: {defined}."
            )
    for key in sorted(k for k in config if k.endswith("_prompt_version")):
        if key.removesuffix("_version") not in catalog.packs[pack]:
            problems.append(
                f"{key} is set but prompts/{pack}.py has no {key.removesuffix('_version')}."
            )


def resolve_config(
    variant_config: Mapping[str, Any], overrides: Mapping[str, Any], catalog: PromptCatalog
) -> dict[str, Any]:
    """DEFAULTS < variant < overrides, type-checked; raises one ConfigError with every problem."""
    problems = list(catalog.problems)
    known = set(DEFAULTS) | {version_key(n) for n in catalog.all_nodes()}
    config: dict[str, Any] = dict(DEFAULTS)
    for source, values in (("variant", variant_config), ("override", overrides)):
        for key, value in values.items():
            if key not in known:
                problems.append(
                    f"unknown config key {key!r} ({source}). Known: {', '.join(sorted(known))}."
                )
                continue
            coerced, problem = coerce(key, value)
            if problem:
                problems.append(problem)
            else:
                config[key] = coerced
    if config["llm_backend"] not in LLM_BACKENDS:
        problems.append(
            f"llm_backend={config['llm_backend']!r} is not a backend. Use one of: {', '.join(LLM_BACKENDS)}."
        )
    if config["llm_cache"] not in CACHE_MODES:
        problems.append(
            f"llm_cache={config['llm_cache']!r} is not a cache mode. Use one of: {', '.join(CACHE_MODES)}."
        )
    if config["chunk_overlap_tokens"] >= config["chunk_tokens"]:
        problems.append(
            f"chunk_overlap_tokens={config['chunk_overlap_tokens']} must be below chunk_tokens={config['chunk_tokens']}."
        )
    if config["llm_backend"] == "openai" and not os.environ.get("OPENAI_API_KEY"):
        problems.append(
            "llm_backend=openai needs OPENAI_API_KEY in the environment (any non-empty "
            "value for a local OpenAI-compatible server that ignores keys)."
        )
    _check_prompts(config, catalog, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _llm(config: dict[str, Any], project: Project, variants: VariantsFile) -> LLM:
    settings = LLMSettings(
        backend=config["llm_backend"],
        model=config["llm_model"],
        temperature=config["llm_temperature"],
        max_output_tokens=config["llm_max_output_tokens"],
        timeout_s=config["llm_timeout_s"],
        max_retries=config["llm_max_retries"],
        max_concurrency=config["llm_max_concurrency"],
        base_url=config["llm_base_url"] or os.environ.get("OPENAI_BASE_URL", ""),
    )
    client = make_openai_client(settings, os.environ.get("OPENAI_API_KEY", ""))
    cache = ResponseCache(data_dir(project.root) / "llm-cache.sqlite", config["llm_cache"])
    return LLM(settings, client, cache=cache, prices=variants.prices)


def build_pipeline(
    *,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    project: Project | str | Path | None = None,
    adapters: Sequence[lifecycle.LifecycleAdapter] = (),
    require_clean_tree: bool = False,
    git: dict[str, Any] | None = None,
) -> Pipeline:
    """Build and validate the Driver for `variant` (default: the variants file's default) with
    `overrides` on top. Raises ConfigError/VariantError/ProjectError listing what is defined.
    `git`: the tree's git state when the caller already read it (several Drivers of one tree)."""
    proj = project if isinstance(project, Project) else load_project(project)
    git = git if git is not None else git_state(proj.root)
    if require_clean_tree:
        require_clean(git)
    variants = load_variants(proj.variants_path)
    chosen = variants.get(variant)
    catalog = discover_prompts(proj)
    config = resolve_config(chosen.config, dict(overrides or {}), catalog)
    pack = config["prompt_pack"]
    prompts = {n: catalog.packs[pack][n][config[version_key(n)]] for n in catalog.nodes(pack)}
    try:
        driver = (
            async_driver.Builder()
            .with_modules(*proj.dataflow_modules, proj.packs[pack])
            .with_config(config)
            .with_adapters(PromptGuard(list(prompts)), *adapters)
            .build_without_init()
        )
    except (ValueError, ValidationException) as exc:  # Hamilton's graph and validator failures
        raise ConfigError(
            [f"the dataflow does not build with prompt pack {pack!r}: {exc}"]
        ) from exc
    return Pipeline(
        project=proj,
        variant=chosen.name,
        config=config,
        driver=driver,
        llm=_llm(config, proj, variants),
        prompts=prompts,
        git=git,
    )
