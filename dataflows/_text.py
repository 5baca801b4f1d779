"""Text helpers for the dataflows (plain functions, not nodes): PDF-text clean-up, chunking into
token windows on paragraph/sentence boundaries in linear time, and delimiting untrusted text."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["clean_text", "delimit", "token_windows"]

_HYPHEN_WRAP = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…؟。])[\"'”’)\]]*\s+")


def clean_text(text: str) -> str:
    """Undo PDF line wrapping: join hyphen-wrapped words and wrapped lines, keep paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _HYPHEN_WRAP.sub("", text)
    paragraphs = []
    for block in _PARAGRAPHS.split(text):
        joined = _SPACES.sub(" ", " ".join(line.strip() for line in block.split("\n"))).strip()
        if joined:
            paragraphs.append(joined)
    return "\n\n".join(paragraphs)


def delimit(text: str, tag: str) -> str:
    """`text` inside <tag>…</tag>, with any closing tag inside it escaped so it cannot break out."""
    safe = text.replace(f"</{tag}>", f"<\\/{tag}>")
    return f"<{tag}>\n{safe}\n</{tag}>"


@dataclass
class _Segment:
    text: str
    tokens: int
    new_paragraph: bool


def _segments(
    text: str,
    count: Callable[[str], int],
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    window: int,
) -> list[_Segment]:
    out: list[_Segment] = []
    for paragraph in text.split("\n\n"):
        first = True
        for sentence in _SENTENCE_END.split(paragraph):
            if not sentence:
                continue
            n = count(sentence)
            if n <= window:
                out.append(_Segment(sentence, n, first))
            else:  # a sentence longer than a window: hard-split it on token boundaries
                ids = encode(sentence)
                for start in range(0, len(ids), window):
                    piece = ids[start : start + window]
                    out.append(_Segment(decode(piece), len(piece), first and start == 0))
            first = False
    return out


def _join(segments: list[_Segment]) -> str:
    parts: list[str] = []
    for i, seg in enumerate(segments):
        if i:
            parts.append("\n\n" if seg.new_paragraph else " ")
        parts.append(seg.text)
    return "".join(parts)


def token_windows(
    text: str,
    *,
    window: int,
    overlap: int,
    count: Callable[[str], int],
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
) -> list[str]:
    """Windows of at most ~`window` tokens that end on sentence or paragraph boundaries where
    possible, each starting with up to `overlap` tokens of whole sentences from the one before.
    Each segment is encoded once and carried over at most once per window: linear time."""
    segments = _segments(text, count, encode, decode, window)
    chunks: list[str] = []
    current: list[_Segment] = []
    size = 0
    for seg in segments:
        if current and size + seg.tokens > window:
            chunks.append(_join(current))
            carry: list[_Segment] = []
            carried = 0
            for prev in reversed(current):
                if carried + prev.tokens > overlap or carried + prev.tokens + seg.tokens > window:
                    break
                carry.insert(0, prev)
                carried += prev.tokens
            current, size = carry, carried
        current.append(seg)
        size += seg.tokens
    if current:
        chunks.append(_join(current))
    return chunks
