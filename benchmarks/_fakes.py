"""An in-process LLM endpoint for the benchmarks: an httpx2 transport that answers every request
with a canned `chat.completion`, at once or after a simulated latency, under the real openai SDK."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx2
import openai

from promptdag.pipeline import Pipeline

__all__ = ["CannedTransport", "use_transport"]

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench-canned",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A canned summary sentence."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
).encode()


class CannedTransport(httpx2.AsyncBaseTransport):
    """Answers each request with the same completion. With `latency`, the i-th request to arrive
    (from 0, counted since the last `reset`) first sleeps `latency(i)` seconds; `history` keeps
    the latencies used, and `arrived`/`answered` the `perf_counter` times, in arrival order."""

    def __init__(self, latency: Callable[[int], float] | None = None):
        self.reset(latency)

    def reset(self, latency: Callable[[int], float] | None) -> None:
        self.latency = latency
        self.history: list[float] = []
        self.arrived: list[float] = []
        self.answered: list[float] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        if self.latency is not None:
            i = len(self.history)
            self.arrived.append(time.perf_counter())
            self.history.append(self.latency(i))
            self.answered.append(0.0)
            await asyncio.sleep(self.history[i])
            self.answered[i] = time.perf_counter()
        headers = {"content-type": "application/json"}
        return httpx2.Response(200, content=_COMPLETION, headers=headers)


async def use_transport(pipeline: Pipeline, transport: CannedTransport) -> None:
    """Replace the SDK client inside `pipeline.llm` with one on `transport` (same retries and
    timeout); everything above the SDK (the LLM class, the cache setting) stays as built."""
    settings = pipeline.llm.settings
    old = pipeline.llm.client
    pipeline.llm.client = openai.AsyncOpenAI(
        api_key="bench",
        base_url="http://bench.invalid/v1",
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
        http_client=httpx2.AsyncClient(transport=transport),
    )
    await old.close()
