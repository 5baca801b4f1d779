"""Batch runs: one declared pipeline over many inputs (files or table rows), on this machine's
cores (`local`) or on a Ray cluster (`ray`), one Parquet row per input, resumable, with rate,
concurrency and cost limits shared by every worker. `promptdag batch` is its command line.

    from promptdag import BatchOptions, run_batch

    summary = await run_batch(BatchOptions(source="papers/*.pdf", out=Path("runs/p.parquet")))
    print(summary.line(), summary.exit_code)

Modules: `sources` (inputs), `worker` (builds the pipeline once, runs items), `rows` (the
output's columns), `store` (part files, merge, resume), `limits` (the shared limiter), `local`
and `ray_engine` (the engines), `progress`, `runner`.
"""

from __future__ import annotations

from promptdag.batch.limits import Limits
from promptdag.batch.runner import BatchOptions, BatchSummary, run_batch

__all__ = ["BatchOptions", "BatchSummary", "Limits", "run_batch"]
