"""Text helpers for the dataflows (plain functions, not nodes): PDF-text clean-up, token counting
with a bound, chunking into token windows on paragraph/sentence boundaries in linear time, and
delimiting untrusted text."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from dataflows._normalize import dehyphenate

__all__ = ["MAX_TOKEN_CHARS", "bounded_count", "clean_text", "delimit", "token_windows"]

# The longest token of cl100k_base is 128 bytes, so no token holds more than 128 characters: a
# text longer than 128 × N characters has more than N tokens, whatever it is made of.
MAX_TOKEN_CHARS = 128
# bounded_count hands the tokenizer at most this many characters at a time (tiktoken's working
# memory grows to ~32 bytes per input byte: a 1 GB string makes it abort the process).
COUNT_PIECE_CHARS = 1 << 20

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_SPACES_TO_COLLAPSE = ("  ", "\t", "\f", "\v", "\u00a0")  # what _SPACES changes
_PARAGRAPHS = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?…؟。])[\"'”’)\]]*\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
# A single space between two non-spaces: no token of a BPE pre-tokenizer spans it, so counting
# the text in pieces cut there gives the same total as counting it whole.
_CUT = re.compile(r"(?<=\S) (?=\S)")


def clean_text(text: str) -> str:
    """Undo PDF line wrapping: join words hyphenated at a line end (a compound keeps its hyphen:
    `dehyphenate`) and wrapped lines, keep paragraphs; drop control characters (NUL, escapes)
    but newlines, tabs and form feeds."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = dehyphenate(text)
    # The paragraphs travel as one text, NUL-separated (no NUL is left in it), through the
    # collapsing of spaces, which most texts do not need (one space between words).
    joined = "\0".join(
        " ".join(line.strip() for line in block.split("\n")) for block in _PARAGRAPHS.split(text)
    )
    if any(s in joined for s in _SPACES_TO_COLLAPSE):
        joined = _SPACES.sub(" ", joined)
    return "\n\n".join(p for p in (block.strip() for block in joined.split("\0")) if p)


def bounded_count(
    text: str, count: Callable[[str], int], cap: int, piece: int = COUNT_PIECE_CHARS
) -> tuple[int, int]:
    """Tokens in `text`, counted piece by piece (cut between words, so the total is exact) and
    stopped as soon as it passes `cap`: (tokens counted, characters counted). Exact unless a
    piece finds no single space to end on within 4,096 characters (then it is cut there)."""
    total = start = 0
    while start < len(text):
        end = len(text)
        if end - start > piece:
            cut = _CUT.search(text, start + piece, start + piece + 4096)
            end = cut.start() if cut else start + piece
        total += count(text[start:end])
        start = end
        if total > cap:
            break
    return total, start


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
