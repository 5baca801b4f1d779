"""PDF extraction and chunking throughput on a 293-page novel: `extract_pdf` + `clean_text` +
`token_windows` called directly (timed apart), and the pipeline's nodes up to `text_chunks`;
with one worker and, where `extract_pdf` has worker processes, one per core; cold and warm."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path

from benchmarks._report import Report, at_least, median, require, spread
from benchmarks._timing import fresh_process
from dataflows._pdf import PdfLimits, extract_pdf
from dataflows._text import clean_text, token_windows
from promptdag.config import ConfigSchema
from promptdag.contract import load_contract
from promptdag.factory import build_pipeline
from promptdag.llm.tokens import token_counter
from promptdag.pipeline import Pipeline

__all__ = ["NAME", "TITLE", "cold_once", "run"]

NAME = "extraction"
TITLE = "PDF extraction and chunking"
PDF = Path(__file__).resolve().parents[2] / "shared" / "pdfs" / "the-war-of-the-worlds.pdf"
GOAL, PAGES = 300.0, 293
# The app's config defaults, as the contract in pyproject.toml declares them.
DEFAULTS = ConfigSchema.for_contract(
    load_contract(Path(__file__).resolve().parents[1]).config
).defaults
WINDOW, OVERLAP = DEFAULTS["chunk_tokens"], DEFAULTS["chunk_overlap_tokens"]
_FIELDS = {f.name for f in dataclasses.fields(PdfLimits)}
PARALLEL = "workers" in _FIELDS and "pdf_workers" in DEFAULTS  # extract_pdf has worker processes
HEADERS = ["Path, config, state", "Extract ms", "Clean+chunk ms", "Total ms", "Pages/s", "Runs"]
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
CAPS = (2**62, DEFAULTS["pdf_max_pages"], DEFAULTS["pdf_max_seconds"])  # bytes: the contract's
Timing = tuple[float, float, int, float]  # extract s (or whole run), chunk s, chunks, extract CPU s


def _functions(data: bytes, workers: int) -> Timing:
    c = token_counter(DEFAULTS["llm_model"])
    count, encode, decode = c.count, c.encode, c.encoding.decode
    limits = PdfLimits(*CAPS, workers=workers) if PARALLEL else PdfLimits(*CAPS)
    start, cpu = time.perf_counter(), time.process_time()
    doc = extract_pdf(data, source=PDF.name, limits=limits)
    mid, cpu = time.perf_counter(), time.process_time() - cpu
    require(len(doc.pages) == PAGES, f"{PDF.name} has {len(doc.pages)} pages, not {PAGES}")
    text = clean_text(doc.text)
    chunks = token_windows(
        text, window=WINDOW, overlap=OVERLAP, count=count, encode=encode, decode=decode
    )
    return mid - start, time.perf_counter() - mid, len(chunks), cpu


def _pipeline_for(workers: int) -> Pipeline:
    extra = {"pdf_workers": workers} if PARALLEL else {}
    return build_pipeline(variant="baseline", overrides={"llm_cache": "off", **extra})


def _through_pipeline(runner: asyncio.Runner, p: Pipeline, data: bytes) -> Timing:
    start = time.perf_counter()
    out = runner.run(p.execute(["text_chunks"], {"pdf_bytes": data, "source_name": PDF.name}))
    return time.perf_counter() - start, 0.0, len(out["text_chunks"]), 0.0


def cold_once(workers: int, pipeline: bool) -> None:
    """In a fresh process: print the first call's Timing as JSON (imports, build: untimed)."""
    token_counter(DEFAULTS["llm_model"]).count("load the tokenizer")
    data = PDF.read_bytes()
    with asyncio.Runner() as runner:
        p = _pipeline_for(workers) if pipeline else None
        print(json.dumps(_through_pipeline(runner, p, data) if p else _functions(data, workers)))


def _tag(path: str, w: int, state: str) -> str:
    return f"{path}, pdf_workers={w}{' (default)' * (w == DEFAULTS.get('pdf_workers', 1))}, {state}"


def _measure(workers: list[int], runs: int, cold_runs: int) -> dict[str, list[Timing]]:
    """Every config's timings; in each rep the order rotates, so load bursts hit all alike."""
    data = PDF.read_bytes()
    kinds = [(path, w) for w in workers for path in ("functions", "pipeline")]
    m: dict[str, list[Timing]] = {_tag(p, w, s): [] for p, w in kinds for s in ("cold", "warm")}
    for _ in range(cold_runs):
        for path, w in kinds:
            code = f"from benchmarks.extraction import cold_once; cold_once({w}, {path[0] == 'p'})"
            m[_tag(path, w, "cold")].append(tuple(fresh_process(code)))
    with asyncio.Runner() as runner:
        pipes = {w: _pipeline_for(w) for w in workers}
        for rep in range(runs + 1):  # rep 0 warms up: Driver init, tokenizer, worker pools
            for path, w in kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]:
                fn = path == "functions"
                timing = _functions(data, w) if fn else _through_pipeline(runner, pipes[w], data)
                if rep:
                    m[_tag(path, w, "warm")].append(timing)
        for p in pipes.values():
            runner.run(p.aclose())
    return m


def _row(label: str, ts: list[Timing]) -> tuple[list[str], list[float]]:
    total = [a + b for a, b, *_ in ts]
    rate = [PAGES / t for t in total]
    parts = [median([t[i] for t in ts]) * 1e3 for i in (0, 1)]
    split = ["—", "—"] if label.startswith("pipeline") else [f"{x:.0f}" for x in parts]
    cells = [f"{median(total) * 1e3:.0f}", f"{median(rate):.0f} ({spread(rate)})", str(len(ts))]
    return [label, *split, *cells], rate


def run(quick: bool = False) -> Report:
    require(PDF.is_file(), f"{PDF} is missing; the benchmark reads ../shared/pdfs/ beside the repo")
    many = max(2, CORES) if PARALLEL else 0
    m = _measure([1, many] if many else [1], *((3, 2) if quick else (7, 3)))
    chunks = {t[2] for ts in m.values() for t in ts}
    require(len(chunks) == 1, f"the paths cut the novel into different numbers of chunks: {chunks}")
    done = {label: _row(label, ts) for label, ts in m.items()}
    rows, rates = [r for r, _ in done.values()], {k: rate for k, (_, rate) in done.items()}
    single, multi = _tag("functions", 1, "warm"), _tag("functions", many, "warm")
    one, share = median(rates[single]), median([a / (a + b) for a, b, *_ in m[single]])
    pypdf_rate = PAGES / median([t[3] for t in m[single]])
    parallel = "This extract_pdf has no worker-process option. "
    if many:
        ratio = [b / a for a, b in zip(rates[single], rates[multi], strict=True)]
        parallel = (
            f"Worker processes (pdf_workers={many}, one per core) scale warm throughput "
            f"{median(ratio):.2f}× (median of per-rep ratios, range {spread(ratio, 1, 2)}); a cold "
            "call also starts the pool (forkserver; workers import pypdf), as a one-shot CLI does. "
        )
    return Report(
        name=NAME,
        title=TITLE,
        goals=[at_least(k, GOAL, median(v), " pages/s") for k, v in rates.items()],
        headers=HEADERS,
        rows=rows,
        method=(
            f"`{PDF.name}` ({PAGES} pages) into {chunks.pop()} chunks of {WINDOW} tokens (overlap "
            f"{OVERLAP}). *functions*: `extract_pdf` (timed alone), then `clean_text` + "
            "`token_windows`. *pipeline*: `Pipeline.execute(['text_chunks'], {'pdf_bytes': ...})` "
            "(pypdf in a worker thread; also counts tokens). *cold*: first call in a new process "
            "(imports, build untimed; a worker pool starts in the call). *warm*: later calls, "
            "configs interleaved. Each column is its own median (range)."
        ),
        explanation=(
            f"Extraction is {share:.0%} of the work: pypdf parses content streams in pure Python, "
            f"holding the GIL, at about {pypdf_rate:.0f} pages per CPU-second here; cleaning and "
            "chunking the whole novel takes a few tens of ms. One process therefore "
            f"{'meets' if one >= GOAL else '**misses**'} the {GOAL:.0f} pages/s goal whatever its "
            f"threads do. {parallel}On this shared machine a neighbour busy on "
            "one core leaves two workers one core between them: the parallel rows vary most."
        ),
    )
