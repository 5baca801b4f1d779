"""The one driver factory: the CLI, the service and batch jobs all build Drivers here.

It resolves config (defaults < variant < overrides), validates every problem at once (unknown
keys, packs, prompt versions, convention breaks), builds Hamilton's async Driver from the
project's dataflow modules plus exactly one prompt pack, and guards the graph so no prompt node
can be left as an external input that a request could fill in.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hamilton import async_driver, lifecycle
from hamilton.graph_types import HamiltonGraph
from hamilton.lifecycle.base import ValidationException

from promptdag.catalog import PromptCatalog, discover_prompts, version_key
from promptdag.config import LLM_BACKENDS, ConfigSchema, data_dir
from promptdag.contract import Contract, PipelineSpec
from promptdag.errors import ConfigError
from promptdag.llm.cache import CACHE_MODES, ResponseCache
from promptdag.llm.client import LLM, LLMSettings, make_openai_client
from promptdag.node_tasks import use_node_tasks
from promptdag.pipeline import LLM_INPUT, NodeScope, Pipeline
from promptdag.project import Project, load_project, project_modules
from promptdag.provenance import git_state, require_clean
from promptdag.redaction import redact_url
from promptdag.settled_graph import settle_graph
from promptdag.variants import VariantsFile, load_variants

__all__ = ["PromptGuard", "build_pipeline", "check_links", "resolve_config"]


class PromptGuard(lifecycle.StaticValidator):
    """Fails the build when a prompt node is an external input (unknown version, missing key,
    or a pack that lacks the node): otherwise a caller could pass prompt text in `inputs`."""

    def __init__(self, prompt_nodes: Sequence[str]):
        self.prompt_nodes = set(prompt_nodes)

    def run_to_validate_graph(
        self, graph: HamiltonGraph, **future_kwargs: Any
    ) -> tuple[bool, str | None]:
        loose = sorted(
            n.name for n in graph.nodes if n.is_external_input and n.name in self.prompt_nodes
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
            f"prompt_pack={pack!r} is not a pack in {catalog.package}/. Defined: {', '.join(sorted(catalog.packs))}."
        )
        return
    for node in catalog.nodes(pack):
        key = version_key(node)
        defined = ", ".join(catalog.versions(pack, node))
        if key not in config:
            problems.append(f"{key} is not set. Defined in {catalog.package}/{pack}.py: {defined}.")
        elif config[key] not in catalog.packs[pack][node]:
            problems.append(
                f"{key}={config[key]!r} is not defined in {catalog.package}/{pack}.py. Defined: {defined}."
            )
    for node in catalog.all_nodes():
        key = version_key(node)
        if key in config and node not in catalog.packs[pack]:
            problems.append(f"{key} is set but {catalog.package}/{pack}.py has no {node}.")


def _switch_pack(
    config: dict[str, Any], overrides: Mapping[str, Any], catalog: PromptCatalog
) -> None:
    """An override that switches the pack takes that pack's latest version of every prompt
    the override does not pin itself (the variant's pins belong to its own pack)."""
    pack = config["prompt_pack"]
    if "prompt_pack" not in overrides or pack not in catalog.packs:
        return
    for node in catalog.all_nodes():
        key = version_key(node)
        if key in overrides:
            continue
        if node in catalog.packs[pack]:
            config[key] = catalog.versions(pack, node)[-1]
        else:
            config.pop(key, None)


def resolve_config(
    variant_config: Mapping[str, Any],
    overrides: Mapping[str, Any],
    catalog: PromptCatalog,
    schema: ConfigSchema | None = None,
) -> dict[str, Any]:
    """defaults < variant < overrides, type-checked; raises one ConfigError with every problem.
    `schema`: the project's config keys (framework keys only when None)."""
    schema = schema or ConfigSchema.for_contract({})
    problems = list(catalog.problems)
    known = set(schema.defaults) | set(catalog.version_keys())
    config: dict[str, Any] = dict(schema.defaults)
    for source, values in (("variant", variant_config), ("override", overrides)):
        for key, value in values.items():
            if key not in known:
                problems.append(
                    f"unknown config key {key!r} ({source}). Known: {', '.join(sorted(known))}."
                )
                continue
            coerced, problem = schema.coerce(key, value)
            if problem:
                problems.append(problem)
            else:
                config[key] = coerced
    _switch_pack(config, overrides, catalog)
    if config["llm_backend"] not in LLM_BACKENDS:
        problems.append(
            f"llm_backend={config['llm_backend']!r} is not a backend. Use one of: {', '.join(LLM_BACKENDS)}."
        )
    if config["llm_cache"] not in CACHE_MODES:
        problems.append(
            f"llm_cache={config['llm_cache']!r} is not a cache mode. Use one of: {', '.join(CACHE_MODES)}."
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
        allow_incomplete=config["llm_allow_incomplete"],
    )
    if settings.backend != "offline" and settings.base_url:
        _check_base_url(settings.base_url)
    key = os.environ.get("OPENAI_API_KEY", "")
    cache = ResponseCache(data_dir(project.root) / "llm-cache.sqlite", config["llm_cache"])
    # The SDK client is made when the first call needs it: building, checking and rendering a
    # pipeline never import the SDK.
    return LLM(
        settings, lambda: make_openai_client(settings, key), cache=cache, prices=variants.prices
    )


def _check_base_url(url: str) -> None:
    """The endpoint's URL, checked when the pipeline is built (the SDK client is made only at
    the first call): an http(s) URL with a host and a valid port, else a ConfigError."""
    problem = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
    if problem:
        raise ConfigError(
            [
                f"llm_base_url {redact_url(url)!r} is not a usable endpoint URL: {problem}. "
                "Use e.g. http://127.0.0.1:8000/v1 or https://api.openai.com/v1."
            ]
        )


def _upstream(graph: HamiltonGraph, names: Sequence[str]) -> set[str]:
    """`names` and every node they depend on."""
    nodes = {n.name: n for n in graph.nodes}
    seen: set[str] = set()
    stack = [n for n in names if n in nodes]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = nodes[name]
        stack.extend(
            d for d in (*node.required_dependencies, *node.optional_dependencies) if d in nodes
        )
    return seen


def check_links(
    graph: HamiltonGraph,
    contract: Contract,
    spec: PipelineSpec,
    prompt_nodes: Sequence[str],
    config: Mapping[str, Any],
    version_inputs: Collection[str] = (),
) -> list[str]:
    """Every broken link between the contract and the built graph: LLM steps whose node or
    prompt is missing (or not upstream), prompt nodes no step uses, pipeline outputs and inputs
    the graph does not have, and graph inputs the pipeline does not declare. A declared input
    that this graph lacks is fine when some other prompt version renders from it
    (`version_inputs`): a variant that does not select that version simply does not use it."""
    nodes = {n.name: n for n in graph.nodes}
    problems: list[str] = []
    where = "[tool.promptdag.llm_steps"
    for step in contract.llm_steps.values():
        if step.node not in nodes:
            problems.append(
                f"{where}.{step.name}] node = {step.node!r} is not a node of the dataflow."
            )
            continue
        if step.prompt not in prompt_nodes:
            problems.append(
                f"{where}.{step.name}] prompt = {step.prompt!r} is not a prompt node of the "
                f"selected pack. Prompt nodes: {', '.join(sorted(prompt_nodes)) or 'none'}."
            )
            continue
        upstream = _upstream(graph, [step.node])
        if step.prompt not in upstream:
            problems.append(
                f"{where}.{step.name}] node {step.node!r} does not depend on {step.prompt!r}."
            )
        if step.rendered is not None and step.rendered not in upstream:
            problems.append(
                f"{where}.{step.name}] rendered = {step.rendered!r} is not upstream of {step.node!r}."
            )
    linked = {s.prompt for s in contract.llm_steps.values()}
    for prompt in sorted(set(prompt_nodes) - linked):
        problems.append(
            f"prompt node {prompt!r} is used by no declared LLM step: add "
            f'[tool.promptdag.llm_steps.NAME] with prompt = "{prompt}" and the node that calls the LLM.'
        )
    pwhere = f"[tool.promptdag.pipelines.{spec.name}]"
    for name in spec.final_vars:
        if name not in nodes:
            problems.append(f"{pwhere} output {name!r} is not a node of the dataflow.")
    needed = _upstream(graph, [n for n in spec.final_vars if n in nodes])
    for name in spec.inputs:
        if name not in nodes and name in version_inputs:
            continue
        if name not in nodes or not nodes[name].is_external_input:
            problems.append(f"{pwhere} input {name!r} is not an input of the dataflow.")
    missing = sorted(
        n
        for n in needed
        if nodes[n].is_external_input
        and n not in spec.inputs
        and n != LLM_INPUT
        and n not in prompt_nodes
        and n not in config
    )
    for name in missing:
        problems.append(
            f"{pwhere} does not declare input {name!r}, which its outputs need: add "
            f"[tool.promptdag.pipelines.{spec.name}.inputs.{name}]."
        )
    return problems


def build_pipeline(
    *,
    pipeline: str | None = None,
    variant: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    project: Project | str | Path | None = None,
    adapters: Sequence[lifecycle.LifecycleAdapter] = (),
    require_clean_tree: bool = False,
    git: dict[str, Any] | None = None,
) -> Pipeline:
    """Build and validate the Driver of the declared `pipeline` (default: the contract's) for
    `variant` (default: the variants file's) with `overrides` on top. Raises ConfigError,
    VariantError or ProjectError listing what is defined.
    `git`: the tree's git state when the caller already read it (several Drivers of one tree)."""
    proj = project if isinstance(project, Project) else load_project(project)
    spec = proj.contract.pipeline(pipeline)
    git = git if git is not None else git_state(proj.root)
    if require_clean_tree:
        require_clean(git)
    variants = load_variants(proj.variants_path)
    chosen = variants.get(variant)
    catalog = discover_prompts(proj)
    schema = ConfigSchema.for_contract(proj.contract.config)
    config = resolve_config(chosen.config, dict(overrides or {}), catalog, schema)
    pack = config["prompt_pack"]
    prompts = {n: catalog.packs[pack][n][config[version_key(n)]] for n in catalog.nodes(pack)}
    try:
        with project_modules(proj):
            driver = settle_graph(
                use_node_tasks(
                    async_driver.Builder()
                    .with_modules(*proj.dataflow_modules, proj.packs[pack])
                    .with_config(config)
                    .with_adapters(
                        PromptGuard(list(prompts)),
                        NodeScope({s.node: s.name for s in proj.contract.llm_steps.values()}),
                        *adapters,
                    )
                    .build_without_init()
                )
            )
    except (ValueError, ValidationException) as exc:  # Hamilton's graph and validator failures
        raise ConfigError(
            [f"the dataflow does not build with prompt pack {pack!r}: {exc}"]
        ) from exc
    graph = HamiltonGraph.from_graph(driver.graph)
    version_inputs = {
        i
        for nodes in catalog.packs.values()
        for vs in nodes.values()
        for v in vs.values()
        for i in v.inputs
    }
    problems = check_links(graph, proj.contract, spec, list(prompts), config, version_inputs)
    if problems:
        raise ConfigError(problems)
    return Pipeline(
        project=proj,
        spec=spec,
        variant=chosen.name,
        config=config,
        driver=driver,
        llm=_llm(config, proj, variants),
        prompts=prompts,
        git=git,
    )
