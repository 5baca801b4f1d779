"""promptdag: prompts as code on an Apache Hamilton DAG.

Every pipeline step and every prompt version is a plain Python function in a Hamilton DAG; the
prompt version is chosen when the Driver is built, so a git SHA fixes prompt and code together.
This module is the public API; names load on first use, so `import promptdag` stays cheap.

    import promptdag

    pipeline = promptdag.build_pipeline(pipeline="triage", variant="baseline")
    result = await pipeline.run({"ticket": "The app crashes on login"})
    print(result.answer, result.fingerprint["id"])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    "ReplayError": "promptdag.replay",
    "ReplayResult": "promptdag.replay",
    "replay_request": "promptdag.replay",
    "InputsStore": "promptdag.inputs_store",
    "run_batch": "promptdag.batch",
    "Limits": "promptdag.batch",
    "BatchSummary": "promptdag.batch",
    "BatchOptions": "promptdag.batch",
    "project_root_of": "promptdag.workers",
    "call_in_project": "promptdag.workers",
    "shutdown_pools": "promptdag.workers",
    "worker_pool": "promptdag.workers",
    "WorkerPool": "promptdag.workers",
    "OverloadedError": "promptdag.errors",
    "WorkerError": "promptdag.errors",
    "WorkerLimitError": "promptdag.errors",
    "LargeBytes": "promptdag.inputs",
    "LargeText": "promptdag.inputs",
    "token_counter": "promptdag.llm.tokens",
    "TokenCounter": "promptdag.llm.tokens",
    "DocumentError": "promptdag.errors",
    "CacheMissError": "promptdag.errors",
    "ChatPrompt": "promptdag.prompting",
    "ConfigError": "promptdag.errors",
    "ConfigKey": "promptdag.contract",
    "Contract": "promptdag.contract",
    "DeadlineExceededError": "promptdag.errors",
    "DirtyTreeError": "promptdag.errors",
    "ForbiddenInputError": "promptdag.errors",
    "GateError": "promptdag.errors",
    "InputError": "promptdag.errors",
    "InputSpec": "promptdag.contract",
    "LLM": "promptdag.llm.client",
    "LLMCall": "promptdag.llm.client",
    "LLMError": "promptdag.errors",
    "LLMIncompleteError": "promptdag.errors",
    "LLMMalformedResponseError": "promptdag.errors",
    "LLMOutputError": "promptdag.errors",
    "LLMRequestError": "promptdag.errors",
    "LLMSettings": "promptdag.llm.client",
    "LLMStep": "promptdag.contract",
    "LLMUnavailableError": "promptdag.errors",
    "LimitExceededError": "promptdag.errors",
    "Message": "promptdag.prompting",
    "Pipeline": "promptdag.pipeline",
    "PipelineSpec": "promptdag.contract",
    "Project": "promptdag.project",
    "ProjectError": "promptdag.errors",
    "PromptdagError": "promptdag.errors",
    "RenderError": "promptdag.errors",
    "RequestContext": "promptdag.tracing.context",
    "RunResult": "promptdag.pipeline",
    "TraceAdapter": "promptdag.tracing.adapter",
    "TraceStoreError": "promptdag.errors",
    "TraceWriter": "promptdag.tracing.store",
    "VariantError": "promptdag.errors",
    "build_pipeline": "promptdag.factory",
    "chat": "promptdag.prompting",
    "git_state": "promptdag.provenance",
    "load_contract": "promptdag.contract",
    "load_project": "promptdag.project",
    "prompt_text": "promptdag.prompting",
    "render_dag": "promptdag.render",
    "render_prompts": "promptdag.pipeline",
    "request_scope": "promptdag.tracing.context",
    "trace_writer": "promptdag.tracing.store",
    "write_stamp": "promptdag.provenance",
}
_RENAMED = {"render_dag": "render"}

__all__ = [
    "LLM",
    "BatchOptions",
    "BatchSummary",
    "CacheMissError",
    "ChatPrompt",
    "ConfigError",
    "ConfigKey",
    "Contract",
    "DeadlineExceededError",
    "DirtyTreeError",
    "DocumentError",
    "ForbiddenInputError",
    "GateError",
    "InputError",
    "InputSpec",
    "InputsStore",
    "LLMCall",
    "LLMError",
    "LLMIncompleteError",
    "LLMMalformedResponseError",
    "LLMOutputError",
    "LLMRequestError",
    "LLMSettings",
    "LLMStep",
    "LLMUnavailableError",
    "LargeBytes",
    "LargeText",
    "LimitExceededError",
    "Limits",
    "Message",
    "OverloadedError",
    "Pipeline",
    "PipelineSpec",
    "Project",
    "ProjectError",
    "PromptdagError",
    "RenderError",
    "ReplayError",
    "ReplayResult",
    "RequestContext",
    "RunResult",
    "TokenCounter",
    "TraceAdapter",
    "TraceStoreError",
    "TraceWriter",
    "VariantError",
    "WorkerError",
    "WorkerLimitError",
    "WorkerPool",
    "__version__",
    "build_pipeline",
    "call_in_project",
    "chat",
    "git_state",
    "load_contract",
    "load_project",
    "project_root_of",
    "prompt_text",
    "render_dag",
    "render_prompts",
    "replay_request",
    "request_scope",
    "run_batch",
    "shutdown_pools",
    "token_counter",
    "trace_writer",
    "worker_pool",
    "write_stamp",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'promptdag' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from promptdag.batch import BatchOptions, BatchSummary, Limits, run_batch
    from promptdag.contract import (
        ConfigKey,
        Contract,
        InputSpec,
        LLMStep,
        PipelineSpec,
        load_contract,
    )
    from promptdag.errors import (
        CacheMissError,
        ConfigError,
        DeadlineExceededError,
        DirtyTreeError,
        DocumentError,
        ForbiddenInputError,
        GateError,
        InputError,
        LimitExceededError,
        LLMError,
        LLMIncompleteError,
        LLMMalformedResponseError,
        LLMOutputError,
        LLMRequestError,
        LLMUnavailableError,
        OverloadedError,
        ProjectError,
        PromptdagError,
        RenderError,
        TraceStoreError,
        VariantError,
        WorkerError,
        WorkerLimitError,
    )
    from promptdag.factory import build_pipeline
    from promptdag.inputs import LargeBytes, LargeText
    from promptdag.inputs_store import InputsStore
    from promptdag.llm.client import LLM, LLMCall, LLMSettings
    from promptdag.llm.tokens import TokenCounter, token_counter
    from promptdag.pipeline import Pipeline, RunResult, render_prompts
    from promptdag.project import Project, load_project
    from promptdag.prompting import ChatPrompt, Message, chat, prompt_text
    from promptdag.provenance import git_state, write_stamp
    from promptdag.render import render as render_dag
    from promptdag.replay import ReplayError, ReplayResult, replay_request
    from promptdag.tracing.adapter import TraceAdapter
    from promptdag.tracing.context import RequestContext, request_scope
    from promptdag.tracing.store import TraceWriter, trace_writer
    from promptdag.workers import (
        WorkerPool,
        call_in_project,
        project_root_of,
        shutdown_pools,
        worker_pool,
    )
