"""A process that submits traces as fast as it can and prints each request id once its
submit() has returned (flushed), until it is killed:
`python -m tests.promptdag.tracing._writer_child DB [PREFIX]` (ids PREFIX-NNNNNNN, default req)."""

from __future__ import annotations

import asyncio
import sys

from promptdag.tracing.store import TraceWriter
from tests.promptdag.tracing.rows import call_row, request_row


async def main(path: str, prefix: str) -> None:
    writer = TraceWriter(path).start()

    async def one(n: int) -> None:
        request_id = f"{prefix}-{n:07d}"
        await writer.submit(request_row(request_id), [call_row(chunk_index=i) for i in range(3)])
        sys.stdout.write(request_id + "\n")
        sys.stdout.flush()

    n = 0
    while True:
        await asyncio.gather(*(one(n + k) for k in range(8)))
        n += 8


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "req"))
