"""Document text → token windows for the per-chunk LLM calls.

Inputs: document_text.
Config: llm_model (picks the tokenizer), chunk_tokens, chunk_overlap_tokens, max_document_tokens.
Outputs: tokenizer, document_tokens, text_chunks.
"""

from __future__ import annotations

from collections.abc import Callable

from dataflows._text import MAX_TOKEN_CHARS, bounded_count, token_windows
from promptdag import ConfigError, InputError, LimitExceededError, TokenCounter, token_counter


def tokenizer(llm_model: str) -> TokenCounter:
    """The tokenizer of the configured model (or the bundled one, marked approximate)."""
    return token_counter(llm_model)


def document_tokens(document_text: str, tokenizer: TokenCounter, max_document_tokens: int) -> int:
    """How many tokens the document holds; over the cap is an error, not a truncation. A text
    too long to fit by its length alone is refused before the tokenizer sees it, and counting
    stops as soon as the cap is passed."""
    if not document_text.strip():
        raise InputError("the document has no text to summarize. Send a document with text in it.")
    ceiling = max_document_tokens * MAX_TOKEN_CHARS
    if len(document_text) > ceiling:
        raise LimitExceededError(
            "document length",
            f"{len(document_text)} characters",
            f"{ceiling} characters ({max_document_tokens} tokens of at most {MAX_TOKEN_CHARS})",
            "Send a shorter document, or raise max_document_tokens in the config.",
        )
    n, seen = bounded_count(document_text, tokenizer.count, max_document_tokens)
    if n > max_document_tokens:
        where = "" if seen == len(document_text) else f" in its first {seen} characters"
        raise LimitExceededError(
            "document length",
            f"{n} tokens{where}",
            f"{max_document_tokens} tokens",
            "Send a shorter document, or raise max_document_tokens in the config.",
        )
    return n


def text_chunks(
    document_text: str,
    document_tokens: int,
    tokenizer: TokenCounter,
    chunk_tokens: int,
    chunk_overlap_tokens: int,
) -> list[str]:
    """The document cut into windows of about `chunk_tokens` tokens, overlapping by whole sentences."""
    if chunk_tokens < 16 or not 0 <= chunk_overlap_tokens < chunk_tokens:
        raise ConfigError(
            [
                f"chunk_tokens={chunk_tokens}, chunk_overlap_tokens={chunk_overlap_tokens}: need "
                "chunk_tokens >= 16 and 0 <= chunk_overlap_tokens < chunk_tokens."
            ]
        )
    enc = tokenizer.encoding
    return token_windows(
        document_text,
        window=chunk_tokens,
        overlap=chunk_overlap_tokens,
        count=_counter(tokenizer),
        encode=enc.encode_ordinary,
        decode=enc.decode,
    )


def _counter(tokenizer: TokenCounter) -> Callable[[str], int]:
    """`tokenizer.count` without its scan for special tokens: it allows none, so they count as
    plain text either way, and `encode_ordinary` gives the same tokens."""
    encode = tokenizer.encoding.encode_ordinary
    return lambda text: len(encode(text))
