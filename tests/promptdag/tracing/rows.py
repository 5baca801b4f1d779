"""Request and call rows as the TraceAdapter submits them, with defaults a test can override,
and a trace database of known rows for the query and CLI tests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from promptdag.tracing.store import TraceWriter


def request_row(request_id: str, **values: Any) -> dict[str, Any]:
    now = time.time()
    row: dict[str, Any] = {
        "request_id": request_id,
        "started_ts": now - 1.0,
        "finished_ts": now,
        "latency_s": 1.0,
        "source": "service",
        "variant": "baseline",
        "assignment": "sticky",
        "backend": "offline",
        "model": "offline-extractive",
        "git_sha": "a" * 40,
        "git_dirty": False,
        "prompt_versions": {"chunk_summary_prompt": {"version": "v2", "source_sha256": "b" * 64}},
        "prompt_set": "chunk_summary_prompt@v2",
        "status": "ok",
        "calls": 1,
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.001,
    }
    row.update(values)
    return row


def call_row(**values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "node": "chunk_summary_responses",
        "dataflow": "dataflows.summarize",
        "step": "chunk_summary",
        "chunk_index": 0,
        "prompt_node": "chunk_summary_prompt",
        "prompt_version": "v2",
        "prompt_source_sha256": "b" * 64,
        "prompt_text": "Summarize this text: the professor sent a cat over the wire.",
        "response_text": "A cat travelled by telegraph.",
        "model": "offline-extractive",
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.001,
        "latency_s": 0.5,
        "attempts": 1,
        "cached": False,
        "finish_reason": "stop",
        "finished_ts": time.time(),
    }
    row.update(values)
    return row


# variant, prompt set, model, latency, input tokens, output tokens, cost, status, age in hours
KNOWN = [
    ("A", "p@v1", "offline-extractive", 1.0, 10, 1, 0.1, "ok", 1),
    ("A", "p@v1", "offline-extractive", 2.0, 20, 2, 0.1, "ok", 2),
    ("A", "p@v1", "offline-extractive", 3.0, 30, 3, 0.1, "ok", 3),
    ("A", "p@v1", "offline-extractive", 4.0, 40, 4, None, "ok", 4),
    ("A", "p@v1", "offline-extractive", 5.0, 50, 5, 0.1, "error", 5),
    ("B", "p@v2", "gpt-4o-mini", 10.0, 100, 10, 1.0, "ok", 6),
    ("B", "p@v2", "gpt-4o-mini", 20.0, 200, 20, 2.0, "ok", 7),
    (None, "p@v1", "offline-extractive", 7.0, 70, 7, 0.0, "ok", 72),
]


def write_known(path: Path) -> list[str]:
    writer = TraceWriter(path).start()
    now = time.time()
    ids = []

    async def main() -> None:
        for n, (variant, prompts, model, latency, tin, tout, cost, status, hours) in enumerate(
            KNOWN
        ):
            started = now - hours * 3600
            request_id = f"{n:02d}{'abcdef'[n % 6]}" + "0" * 29
            ids.append(request_id)
            row = request_row(
                request_id,
                variant=variant,
                prompt_set=prompts,
                model=model,
                latency_s=latency,
                input_tokens=tin,
                output_tokens=tout,
                cost_usd=cost,
                status=status,
                error_type="InputError" if status == "error" else None,
                error_message="the document has no text" if status == "error" else None,
                started_ts=started,
                finished_ts=started + latency,
            )
            calls = [call_row(chunk_index=0), call_row(step="final_summary", chunk_index=None)]
            await writer.submit(row, calls)

    asyncio.run(main())
    writer.close()
    return ids
