"""Chunks → per-chunk summaries → one final summary, with every LLM call a node.

Inputs: text_chunks (chunking.py), chunk_summary_prompt and final_summary_prompt (the prompt
pack), llm (the LLM client the driver factory built for this Driver).
Config: none directly; the client carries model, concurrency, retries and cache.
Outputs: chunk_summary_requests (rendered per-chunk prompts), chunk_summary_responses,
chunk_summaries, final_summary_response, summary. The LLM steps (which node calls the model with
which prompt) are declared in pyproject.toml; promptdag records every call and its usage.
"""

from __future__ import annotations

from string import Template

from dataflows._text import delimit
from promptdag import LLM, ConfigError, LLMCall, LLMError


def chunk_summary_requests(text_chunks: list[str], chunk_summary_prompt: str) -> list[str]:
    """Each chunk's rendered prompt: the template with the chunk, delimited as untrusted, in `$chunk`."""
    if "$chunk" not in chunk_summary_prompt and "${chunk}" not in chunk_summary_prompt:
        raise ConfigError(
            ["chunk_summary_prompt has no $chunk placeholder: add one where the text goes."]
        )
    template = Template(chunk_summary_prompt)
    return [template.substitute(chunk=delimit(chunk, "document")) for chunk in text_chunks]


async def chunk_summary_responses(chunk_summary_requests: list[str], llm: LLM) -> list[LLMCall]:
    """One LLM call per chunk, a bounded number at once, results in chunk order."""
    return await llm.complete_all(chunk_summary_requests)


def chunk_summaries(chunk_summary_responses: list[LLMCall]) -> list[str]:
    """The summary text of each chunk; an empty answer fails the run naming the chunk."""
    empty = [c.index for c in chunk_summary_responses if not c.text.strip()]
    if empty:
        raise LLMError(
            f"the model returned an empty summary for chunk(s) {empty}; no summary is made "
            "with gaps. Retry, or try another model or prompt version.",
            step="chunk_summary",
        )
    return [c.text.strip() for c in chunk_summary_responses]


async def final_summary_response(final_summary_prompt: str, llm: LLM) -> LLMCall:
    """The LLM call that writes the final summary from the chunk summaries."""
    return await llm.complete(final_summary_prompt)


def summary(final_summary_response: LLMCall) -> str:
    """The final summary text."""
    text = final_summary_response.text.strip()
    if not text:
        raise LLMError(
            "the model returned an empty final summary. Retry, or try another model or prompt version.",
            step="final_summary",
        )
    return text
