"""promptdag's benchmarks: `python -m benchmarks` runs them and prints one Markdown table each;
`--write` rewrites docs/benchmarks.md. They measure, they do not assert: they are not tests and
pytest never collects them (no `test_*` names here; pytest's testpaths is `tests`).

Modules: overhead (Hamilton orchestration vs direct calls), fanout (bounded LLM fan-out vs its
lower bound), extraction (PDF pages/s), service (`promptdag serve` under load), gate (LLM calls
of a gated one-prompt change vs a full run). Shared pieces: `_report` (results, stats, Markdown),
`_fakes` (in-process httpx2 transports for the openai SDK).
"""
