"""An `LLM` pointed at the fake OpenAI-compatible server, built the way the driver factory builds
one (real SDK, real transport), closed on exit. Shared by the LLM client and cache tests."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from promptdag.llm.cache import ResponseCache
from promptdag.llm.client import LLM, LLMSettings, make_openai_client
from tests.fakes.openai_server import OpenAIServer

API_KEY = "sk-test-secret"
PRICES = {"gpt-test": (1.0, 2.0)}


@contextlib.asynccontextmanager
async def open_llm(
    server: OpenAIServer, *, cache: ResponseCache | None = None, **settings: Any
) -> AsyncIterator[LLM]:
    base = LLMSettings(
        backend="openai",
        model="gpt-test",
        temperature=0.0,
        max_output_tokens=64,
        timeout_s=5.0,
        max_retries=2,
        max_concurrency=4,
        base_url=server.base_url,
    )
    llm_settings = dataclasses.replace(base, **settings)
    llm = LLM(
        llm_settings, make_openai_client(llm_settings, api_key=API_KEY), cache=cache, prices=PRICES
    )
    try:
        yield llm
    finally:
        await llm.aclose()
