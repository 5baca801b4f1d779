"""A bullet-point prompt pack: every answer is a short list, for skimming.

Prompt nodes: chunk_summary_prompt, final_summary_prompt (same contract as prompts/default.py).
"""

from __future__ import annotations

from hamilton.function_modifiers import config

from prompts._render import key_points, query_line


@config.when(chunk_summary_prompt_version="v1")
def chunk_summary_prompt__v1(content_type: str = "a document") -> str:
    """Three bullet points per chunk."""
    return (
        f"List the 3 most important points of this text from {content_type} as bullet points, "
        "one sentence each.\n\nContent:\n$chunk"
    )


@config.when(final_summary_prompt_version="v1")
def final_summary_prompt__v1(
    chunk_summaries: list[str], content_type: str = "a document", user_query: str = ""
) -> str:
    """At most 7 bullet points over the whole document."""
    return (
        f"Merge these key points from {content_type} into at most 7 bullet points, "
        "most important first, and answer the user's query if there is one.\n"
        f"{query_line(user_query)}\n"
        f"Key points:\n{key_points(chunk_summaries)}\nSummary:\n"
    )
