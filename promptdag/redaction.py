"""Credentials in URLs never leave the process in text promptdag stores or prints.

`llm_base_url` (or OPENAI_BASE_URL) may carry credentials: `https://user:pass@host/v1`, or a
key in the query (`?api_key=...`, `?token=...`). `redact_url` replaces them; `redact_urls` does
it for every URL inside a longer text (an error message); `redact_config` for the values of a
config mapping. The fingerprint's config, the response cache's rows and keys, the traces and
the LLM client's error messages all go through these, so there is one definition of what a
credential in a URL looks like.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["REDACTED", "redact_config", "redact_url", "redact_urls"]

REDACTED = "<redacted>"

# scheme://userinfo@ : everything between "//" and the last "@" before the path is a
# credential (greedy, so a password with an unescaped "@" is covered whole).
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s?#\"'<>]+)@")
# A query or fragment parameter whose name says it holds a secret.
_SECRET_PARAM = re.compile(
    r"(?i)([?&#;](?:[\w.\-]*?)(?:key|token|secret|passw(?:or)?d|pwd|sig|signature|auth|"
    r"credential|session)[\w.\-]*=)[^&#\s\"'<>]*"
)
_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.\-]*://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """`url` with its userinfo (`user:pass@`) and secret query values replaced by <redacted>;
    a URL without credentials comes back unchanged."""
    if "://" not in url:
        return url
    out = _USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", url)
    return _SECRET_PARAM.sub(lambda m: f"{m.group(1)}{REDACTED}", out)


def redact_urls(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` whose string values have their URLs' credentials redacted."""
    return {k: redact_urls(v) if isinstance(v, str) else v for k, v in config.items()}
