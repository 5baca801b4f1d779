"""Rendering helpers shared by the prompt packs (not nodes). The prompt lockfile hashes the
rendered text of every version, so a change here is caught even though Hamilton's code hash
of a prompt function cannot see it."""

from __future__ import annotations

from dataflows._text import delimit

__all__ = ["key_points", "query_line"]


def key_points(chunk_summaries: list[str]) -> str:
    """The chunk summaries as one delimited, untrusted block."""
    return delimit("\n\n".join(s.strip() for s in chunk_summaries), "key_points")


def query_line(user_query: str, label: str = "User query", none: str = "(none)") -> str:
    """`User query: …` on one line; newlines in the query cannot start new instructions."""
    text = " ".join(user_query.split()) or none
    return f"{label}: {text}"
