"""Bounded fan-out: the whole summarizer pipeline on a document of exactly 32 chunks, each LLM call
answered after a simulated latency, at concurrency 8; wall time against a lower bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from benchmarks import _schedule as sched
from benchmarks._fakes import CannedTransport, use_transport
from benchmarks._report import Report, at_most, median, require, spread, table
from benchmarks._schedule import SEGMENTS, Timeline
from dataflows import chunking
from promptdag.factory import build_pipeline
from promptdag.pipeline import Pipeline

__all__ = ["NAME", "TITLE", "run"]

NAME = "fanout"
TITLE = "LLM fan-out"
N, C, L, SIGMA, SEED = 32, 8, 0.050, 0.5, 20_240_601
GOAL = {"fixed": 1.05, "lognormal": 1.3}
OVERRIDES = {"llm_cache": "off", "chunk_tokens": 64, "chunk_overlap_tokens": 8}


def _document(p: Pipeline) -> str:
    """The shortest text of numbered sentences the pipeline's own chunker cuts into N chunks."""
    c = p.config
    counter = chunking.token_counter(c["llm_model"])
    sentences: list[str] = []
    while True:
        sentences.append(f"Sentence {len(sentences)} reports one plain fact about the fleet.")
        text = " ".join(sentences)
        chunks = chunking.text_chunks(
            text, counter.count(text), counter, c["chunk_tokens"], c["chunk_overlap_tokens"]
        )
        if len(chunks) == N:
            return text
        require(len(chunks) < N, f"could not build a text of exactly {N} chunks")


async def _run(
    p: Pipeline, t: CannedTransport, text: str, latency: Callable[[int], float]
) -> tuple[float, float, Timeline]:
    """Wall seconds, CPU seconds and the timeline of one whole request."""
    t.reset(latency)
    cpu, start = time.process_time(), time.perf_counter()
    out = await p.execute(["summary", "text_chunks"], {}, overrides={"document_text": text})
    end, cpu = time.perf_counter(), time.process_time() - cpu
    require(len(out["text_chunks"]) == N, f"{len(out['text_chunks'])} chunks, not {N}")
    require(len(t.history) == N + 1, f"{len(t.history)} LLM calls, not {N + 1}")
    return end - start, cpu, sched.timeline(start, end, t.arrived, t.answered, t.history, C)


async def _measure(runs: int) -> Report:
    p = build_pipeline(variant="baseline", overrides={**OVERRIDES, "llm_max_concurrency": C})
    transport = CannedTransport()
    await use_transport(p, transport)
    text = _document(p)
    await _run(p, transport, text, lambda i: 0.001)  # warm-up: Driver init, tokenizer, SDK
    rows: list[list[str]] = []
    med: dict[str, float] = {}
    lines: dict[str, list[float]] = {k: [] for k in SEGMENTS}
    for mode in ("fixed", "lognormal"):
        lower, ideal, cpus, walls = [], [], [], []
        for run in range(runs):
            draws = sched.lognormal(N + 1, L, SIGMA, SEED + run)
            latency = (lambda i: L) if mode == "fixed" else draws.__getitem__
            wall, cpu, line = await _run(p, transport, text, latency)
            lats = transport.history
            fixed = mode == "fixed"
            lower.append(
                wall / (sched.fixed_bound(N, C, L) if fixed else sched.lower_bound(lats, C))
            )
            ideal.append(wall / sched.ideal_pool(lats, C))
            cpus.append(cpu)
            walls.append(wall)
            for key in lines if fixed else ():
                lines[key].append(getattr(line, key))
        med[mode], med[f"{mode}-ideal"] = median(lower), median(ideal)
        rows.append(
            [
                mode,
                f"{median(walls) * 1e3:.0f} ms",
                f"{med[mode]:.3f}× ({spread(lower, 1, 3)})",
                f"{med[f'{mode}-ideal']:.3f}× ({spread(ideal, 1, 3)})",
                f"{median(cpus) * 1e3:.1f} ms ({spread(cpus, 1e3)})",
            ]
        )
    await p.aclose()
    lg = GOAL["lognormal"]
    goals = [
        at_most("wall / (⌈N/C⌉·L + L), fixed", GOAL["fixed"], med["fixed"], "×", 3),
        at_most("wall / ideal pool, lognormal", lg, med["lognormal-ideal"], "×", 3),
        at_most("wall / (max(Σ/C, longest) + final), lognormal", lg, med["lognormal"], "×", 3),
    ]
    over_ms = (med["fixed"] - 1) * sched.fixed_bound(N, C, L) * 1e3
    breakdown = [[v, f"{median(lines[k]) * 1e3:.2f} ms"] for k, v in SEGMENTS.items()]
    breakdown.append(["measured wall − bound (median)", f"{over_ms:.2f} ms"])
    missed = [g.metric for g in goals if not g.met]
    per_call_ms = median(lines["first_wave_spread"]) / (C - 1) * 1e3
    return Report(
        name=NAME,
        title=TITLE,
        goals=goals,
        headers=["Latency", "Wall", "÷ lower bound", "÷ ideal pool", "CPU / request"],
        rows=rows,
        extra=[
            "Where the time beyond the fixed-latency bound goes (fixed runs, medians):",
            table(["Segment", "Time"], breakdown),
        ],
        method=(
            f"`Pipeline.execute(['summary', 'text_chunks'])` (variant `baseline`, config "
            f"`{OVERRIDES}`, llm_max_concurrency C={C}) on a {len(text)}-character text that the "
            f"pipeline cuts into exactly N={N} chunks (checked on every run, as are the {N + 1} "
            "LLM calls). The SDK's httpx2 transport sleeps (`asyncio.sleep`) before answering. "
            f"**Fixed:** every call L={L * 1e3:.0f} ms; bound ⌈N/C⌉·L + L = "
            f"{sched.fixed_bound(N, C, L) * 1e3:.0f} ms. **Lognormal:** median {L * 1e3:.0f} ms, "
            f"σ={SIGMA}, seeded per run, handed out in arrival order; two bounds: the makespan of "
            "an ideal (zero-overhead) work-conserving pool of C slots taking the calls in the same "
            "order, plus the final call; and the looser max(Σ chunk latencies / C, longest chunk "
            f"latency) + final latency, which no scheduler can beat. Medians of {runs} runs; CPU "
            "is `time.process_time` over the request."
        ),
        explanation=(
            f"Fixed latency: {med['fixed']:.3f}× the bound, {over_ms:.0f} ms over. No slot waits "
            "idle: the time over is CPU on the one event loop (the openai SDK building and parsing "
            f"each request, {per_call_ms:.2f} ms a call judging by the first wave, plus Hamilton "
            "and chunking) and timers firing late while that loop is busy; the breakdown shows it "
            "lands on the critical path before the first wave, at each hand-off and around the "
            "final call. Lognormal: "
            f"{med['lognormal-ideal']:.3f}× an ideal work-conserving pool, so `LLM.complete_all` "
            f"loses little to scheduling; against the looser bound it is {med['lognormal']:.3f}×, "
            "most of which no pool can recover (C slots cannot split 32 uneven calls evenly, and a "
            "long call that starts late sets the finish). "
            + (
                "All goals are met."
                if not missed
                else f"**Missed: {'; '.join(missed)}.** Closing that gap means less CPU per "
                "LLM call on the event loop (the SDK's request building and response parsing); "
                "the concurrency limit itself is already work-conserving."
            )
        ),
    )


def run(quick: bool = False) -> Report:
    return asyncio.run(_measure(runs=5 if quick else 11))
