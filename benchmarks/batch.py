"""Batch runs (`promptdag batch`): a CPU-bound batch (40 PDFs, the offline model: no latency) on
the local engine with 2 workers and on Ray with 2 CPUs, against the one-process loop; and a
latency-bound batch (a fake model answering after 200 ms, `--concurrency 64`, then with an
`--rpm` that binds) against its bound min(concurrency / latency, rpm)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks._fake_llm import fake_llm
from benchmarks._pdfs import missing, pdf_dir, skipped
from benchmarks._report import Report, at_least, median, require, spread
from benchmarks._timing import fresh_process
from promptdag.batch import BatchOptions, BatchSummary, Limits, run_batch
from promptdag.batch.rows import TIMING_COLUMNS

__all__ = ["NAME", "TITLE", "loop_once", "run"]

NAME = "batch"
TITLE = "Batch runs"
ROOT = Path(__file__).resolve().parents[1]
SHARED = pdf_dir()
# A quarter long (a 293-page novel), the rest short papers and letters; long ones first, so no
# worker is left with a long one at the end.
LONG = ["the-war-of-the-worlds.pdf"]
LONG_COPIES = 10
SHORT = [
    "the-man-without-a-body.pdf",
    "pdflatex-4-pages.pdf",
    "multicolumn.pdf",
    "google-doc-document.pdf",
    "mistitled_outlines_example.pdf",
    "crazyones-pdfa.pdf",
]
PDFS, WORKERS, LATENCY, CONCURRENCY, RPM = 40, 2, 0.2, 64, 6000
GOAL = {"local": 1.8, "ray": 1.6, "latency": 0.9}
OFFLINE = {"llm_cache": "off"}
TEXT = (
    "The council met on Monday to review the budget for the coming year. Spending on roads "
    "rose by twelve percent because two bridges needed repair. The council proposed a new "
    "maintenance fund, and members agreed to revisit its size in the spring."
)


def _folder(root: Path) -> Path:
    """40 PDFs: copies of the shared real-world PDFs, long ones first."""
    folder = root / "pdfs"
    folder.mkdir()
    names = LONG * LONG_COPIES + [SHORT[i % len(SHORT)] for i in range(PDFS - LONG_COPIES)]
    for i, name in enumerate(names):
        shutil.copy(SHARED / name, folder / f"{i:02d}-{name}")
    return folder


def _project(root: Path) -> Path:
    """A copy of the reference app outside git: the build fingerprint stays the same while
    files of this checkout change between runs (the results are compared across runs)."""
    project = root / "app"
    project.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".promptdag")
    for name in ("dataflows", "prompts"):
        shutil.copytree(ROOT / name, project / name, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    return project


def _imported() -> None:
    """What a long-running program has imported before it builds and runs: Hamilton, pandas,
    promptdag and the openai SDK (the worker engines' own import of them, `preload`)."""
    from promptdag.batch.forking import preload
    from promptdag.llm.client import resolve_http_client

    preload(resolve_http_client("auto"))


def loop_once(folder: str, project: str) -> None:
    """In a fresh process, after the imports: the one-process loop (build once, run each PDF in
    turn), timed from the build; prints the answers and the seconds as JSON."""
    _imported()

    async def go() -> list[str]:
        from promptdag.factory import build_pipeline

        pipeline = build_pipeline(pipeline="summarize", overrides=OFFLINE, project=project)
        answers = []
        try:
            for path in sorted(Path(folder).iterdir()):
                result = await pipeline.run(
                    {"pdf_bytes": path.read_bytes(), "source_name": path.name}
                )
                answers.append(str(result.answer))
        finally:
            await pipeline.aclose()
        return answers

    start = time.perf_counter()
    answers = asyncio.run(go())
    print(json.dumps({"answers": answers, "seconds": time.perf_counter() - start}))


def local_once(folder: str, project: str, out: str) -> None:
    """In a fresh process, after the imports: `run_batch` on the local engine (its workers
    forked from this process), timed from the call; prints its summary and the seconds."""
    _imported()
    notes: list[str] = []
    options = BatchOptions(
        source=folder,
        out=Path(out),
        project=project,
        progress=False,
        workers=WORKERS,
        overrides=dict(OFFLINE),
    )
    start = time.perf_counter()
    summary = asyncio.run(run_batch(options, say=notes.append))
    seconds = time.perf_counter() - start
    forked = any(f"{WORKERS} workers ({WORKERS} forked)" in note for note in notes)
    print(json.dumps({"summary": summary.as_dict(), "forked": forked, "seconds": seconds}))


def _batch(
    project: Path, source: Path, out: Path, notes: list[str] | None = None, **options: Any
) -> tuple[float, BatchSummary, list[dict]]:
    start = time.perf_counter()
    say = (notes if notes is not None else []).append
    summary = asyncio.run(
        run_batch(
            BatchOptions(source=str(source), out=out, project=project, progress=False, **options),
            say=say,
        )
    )
    wall = time.perf_counter() - start
    require(summary.failed == 0, f"{summary.failed} items failed: {summary.errors}")
    return wall, summary, _rows(out)


@contextlib.contextmanager
def _local_ray(cpus: int) -> Iterator[None]:
    """A local Ray instance for the Ray runs (started before timing, as a cluster would be);
    token auth from the environment (nothing written to ~/.ray), its files removed after."""
    import ray

    saved = os.environ.get("RAY_AUTH_TOKEN")
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
    temp = tempfile.mkdtemp(prefix="pdbench", dir="/tmp")
    try:
        ray.init(num_cpus=cpus, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_AUTH_TOKEN", None)
        shutil.rmtree(temp, ignore_errors=True)


def _results(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def _cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have exited (their own children
    included once reaped): the loop's fresh process, the local engine's workers and their PDF
    workers. Ray's actors are the raylet's children: not counted."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cpu_bound(
    reps: int, work: Path, project: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]], int]:
    folder = _folder(work)
    walls: dict[str, list[float]] = {"loop": [], "local": [], "ray": []}
    outside: dict[str, list[float]] = {"loop": [], "local": []}
    cpus: dict[str, list[float]] = {"loop": [], "local": []}
    calls = 0
    answers: list[str] = []
    local_rows: list[dict] = []
    out = work / "local.parquet"
    scripts = {
        "loop": f"from benchmarks.batch import loop_once; loop_once({str(folder)!r}, "
        f"{str(project)!r})",
        "local": f"from benchmarks.batch import local_once; local_once({str(folder)!r}, "
        f"{str(project)!r}, {str(out)!r})",
    }
    for rep in range(reps):
        for kind in ("loop", "local")[:: 1 if rep % 2 == 0 else -1]:  # load bursts hit both
            start, cpu = time.perf_counter(), _cpu_seconds()
            report = fresh_process(scripts[kind])
            outside[kind].append(time.perf_counter() - start)
            cpus[kind].append(_cpu_seconds() - cpu)
            walls[kind].append(report["seconds"])
            if kind == "loop":
                answers = report["answers"]
            else:
                require(report["forked"], "the local engine's workers were not forked")
                ok, calls = report["summary"]["counts"]["ok"], report["summary"]["usage"]["calls"]
                require(ok == PDFS, f"local: {ok} of {PDFS} ok")
                local_rows = _rows(out)
    require(
        [r["output_summary"] for r in local_rows] == answers,
        "the local engine's summaries differ from the loop's",
    )
    # Ray only now: its idle daemons take ~8% of a core, which the runs above must not pay.
    with _local_ray(WORKERS):
        for _ in range(reps):
            wall, ray_summary, rows = _batch(
                project,
                folder,
                work / "ray.parquet",
                workers=WORKERS,
                overrides=OFFLINE,
                engine="ray",
            )
            walls["ray"].append(wall)
            require(ray_summary.ok == PDFS, f"ray: {ray_summary.ok} of {PDFS} ok")
            require(_results(rows) == _results(local_rows), "ray ≠ local results")
    return walls, outside, cpus, calls


def _rows(out: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = pq.read_table(out).to_pylist()
    out.unlink()
    return rows


def latency_once(items: int, rpm: float | None, work: str, project: str) -> None:
    """In a fresh process, after the imports (as `promptdag batch` runs: its workers forked
    from it, checked): `_latency_bound`, printed as JSON."""
    _imported()
    print(json.dumps(_latency_bound(items, rpm, Path(work), Path(project))))


def _latency_bound(items: int, rpm: float | None, work: Path, project: Path) -> dict[str, float]:
    """LLM calls per second: over the span from the first item's start to the last item's end
    (the workers running), and over the whole batch (their start included)."""
    source = work / f"texts-{items}-{rpm}.jsonl"
    source.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "text": f"{TEXT} Report {i}."}) + "\n" for i in range(items)
        ),
        encoding="utf-8",
    )
    saved = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "bench"  # the fake ignores it; the factory wants one
    try:
        with fake_llm(LATENCY, work / "fake-llm.log", lean=True) as fake:
            config = {"llm_backend": "openai", "llm_base_url": fake.base_url, "llm_model": "fake"}
            start_cpu, fake_start = _cpu_seconds(), fake.cpu_seconds()
            notes: list[str] = []
            wall, summary, rows = _batch(
                project,
                source,
                work / "latency.parquet",
                notes,
                workers=WORKERS,
                overrides={**OFFLINE, **config},
                limits=Limits(concurrency=CONCURRENCY, rpm=rpm),
            )
            fake_cpu = fake.cpu_seconds() - fake_start
            batch_cpu = _cpu_seconds() - start_cpu
    finally:
        if saved is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = saved
    require(summary.ok == items, f"{summary.ok} of {items} ok")
    forked = f"{WORKERS} workers ({WORKERS} forked)"
    require(any(forked in n for n in notes), f"the workers were not forked: {notes}")
    first = min(r["finished_at"].timestamp() - r["latency_s"] for r in rows)
    last = max(r["finished_at"].timestamp() for r in rows)
    return {
        "running": summary.calls / (last - first),
        "overall": summary.calls / wall,
        "wall": wall,
        "cpu_ms": 1e3 * batch_cpu / summary.calls,
        "fake_ms": 1e3 * fake_cpu / summary.calls,
    }


def run(quick: bool = False) -> Report:
    why = missing(*LONG, *SHORT)
    if why:
        return skipped(NAME, TITLE, why)
    reps = 2 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="pdbatch"))
    try:
        project = _project(work)
        walls, outside, cpus, calls = _cpu_bound(reps, work, project)
        lat_items = 1000 if quick else 2000
        unlimited, limited = (
            fresh_process(
                f"from benchmarks.batch import latency_once; latency_once({n}, {rpm!r}, "
                f"{str(work)!r}, {str(project)!r})"
            )
            for n, rpm in ((lat_items, None), (lat_items // 3, RPM))
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    loop = median(walls["loop"])
    ratio = {
        k: [a / b for a, b in zip(walls["loop"], walls[k], strict=True)] for k in ("local", "ray")
    }
    shell = [a / b for a, b in zip(outside["loop"], outside["local"], strict=True)]
    bound_a = CONCURRENCY / LATENCY
    bound_b = min(CONCURRENCY / LATENCY, RPM / 60)
    goals = [
        at_least(
            "local engine, 2 workers ÷ one-process loop",
            GOAL["local"],
            median(ratio["local"]),
            "×",
            2,
        ),
        at_least("Ray, 2 CPUs ÷ one-process loop", GOAL["ray"], median(ratio["ray"]), "×", 2),
        at_least(
            f"latency-bound, --concurrency {CONCURRENCY}: calls/s ÷ {bound_a:.0f}",
            GOAL["latency"],
            unlimited["running"] / bound_a,
            "×",
            2,
        ),
        at_least(
            f"latency-bound, --rpm {RPM}: calls/s ÷ {bound_b:.0f}",
            GOAL["latency"],
            limited["running"] / bound_b,
            "×",
            2,
        ),
    ]

    def used(kind: str) -> str:
        if kind not in cpus:
            return "n/a (actors)"
        cores = [c / w for c, w in zip(cpus[kind], outside[kind], strict=True)]
        return f"{median(cpus[kind]):.0f} s ({median(cores):.2f} cores)"

    rows = [
        [
            "one-process loop (a fresh process, timed from the build)",
            f"{loop:.1f} s ({spread(walls['loop'], 1, 1)})",
            used("loop"),
            "1.00×",
        ],
        *(
            [
                f"{kind} engine, {WORKERS} workers",
                f"{median(walls[kind]):.1f} s ({spread(walls[kind], 1, 1)})",
                used(kind),
                f"{median(ratio[kind]):.2f}× ({spread(ratio[kind], 1, 2)})",
            ]
            for kind in ("local", "ray")
        ),
        [
            f"from the shell: loop {median(outside['loop']):.1f} s, local engine "
            f"{median(outside['local']):.1f} s (interpreter and imports included)",
            f"{median(outside['local']):.1f} s ({spread(outside['local'], 1, 1)})",
            used("local"),
            f"{median(shell):.2f}× ({spread(shell, 1, 2)})",
        ],
        [
            f"latency-bound, {lat_items} texts, --concurrency {CONCURRENCY}",
            f"{unlimited['wall']:.1f} s",
            f"{unlimited['cpu_ms']:.1f} ms per call (fake model {unlimited['fake_ms']:.2f} ms)",
            f"{unlimited['running']:.0f} calls/s while running, {unlimited['overall']:.0f} overall "
            f"(bound {bound_a:.0f})",
        ],
        [
            f"latency-bound, {lat_items // 3} texts, --rpm {RPM}",
            f"{limited['wall']:.1f} s",
            f"{limited['cpu_ms']:.1f} ms per call (fake model {limited['fake_ms']:.2f} ms)",
            f"{limited['running']:.0f} calls/s while running, {limited['overall']:.0f} overall "
            f"(bound {bound_b:.0f})",
        ],
    ]
    return Report(
        name=NAME,
        title=TITLE,
        goals=goals,
        headers=["Run", "Wall", "CPU (cores used)", "Throughput"],
        rows=rows,
        method=(
            f"**CPU-bound:** the summarizer (variant baseline, offline model, response cache off) "
            f"over {PDFS} PDFs copied from ../shared/pdfs ({LONG_COPIES} × {LONG[0]}, "
            f"{PDFS - LONG_COPIES} short ones; "
            f"{calls} LLM calls in all). All three are timed from the call in a process that has imported Hamilton, pandas, "
            "promptdag and the openai SDK, as a long-running program or a batch of thousands "
            "of inputs sees them (the import, about 2 s here, is paid once per process; the row "
            "*from the shell* times the loop and the local engine from outside instead, their "
            "interpreters and imports included). *Loop:* a fresh process that builds the "
            "pipeline and runs each PDF in turn (`Pipeline.run`), timed from the build. *Local:* "
            f"`run_batch` with {WORKERS} workers in a fresh process (as `promptdag batch` runs "
            "it: its workers forked from that process, checked), timed from the call (the "
            "workers' builds, the runs and the final merge included). "
            f"*Ray:* the same with `engine='ray'` on a local Ray instance with {WORKERS} CPUs "
            "started before timing, as a cluster would be (the actors' start, imports included, "
            "is timed), after the loop and local runs (Ray's idle daemons take about 8% of a "
            "core). Every "
            "run's summaries are checked equal to the loop's, and Ray's result columns to the "
            f"local engine's. {reps} rep(s) of loop and local (alternating which goes first), "
            f"then {reps} of Ray; medians of per-rep ratios. "
            f"**Latency-bound:** the summarizer on one-chunk texts (2 LLM calls each) against "
            f"benchmarks/_fake_llm.py in its own process answering after {LATENCY * 1e3:.0f} ms "
            "(its lean form: a bare ASGI function on uvloop, about half the CPU per request of "
            "the Starlette app the service benchmark uses, since here the fake shares the 2 "
            "cores with the workers it feeds and its CPU is a cost of the instrument), "
            f"{WORKERS} local workers, `--concurrency {CONCURRENCY}` (then also `--rpm {RPM}`), "
            "each batch run in a fresh process after the imports, as `promptdag batch` runs it "
            "(its workers forked, checked); "
            "calls per second while running = all LLM calls over the span from the first item's "
            "start to the last item's end (so the ramp up and down count against it); overall = "
            "all calls over the whole batch, the workers' start included. Their CPU column: the "
            "batch's CPU (this process and its workers, their start included) per LLM call, and "
            "the fake model's own. CPU: user + system "
            "seconds of the run's processes (Ray's actors are not children of this process: "
            "n/a); cores used = CPU / wall."
        ),
        explanation=(
            "The one-process loop needs about one core: its main process and its PDF worker "
            "process take turns. The local engine runs the PDFs on two worker processes (each "
            "with its own PDF worker), so it can keep two cores busy, and it spends about the "
            f"same CPU as the loop (the CPU column: {used('local')} against {used('loop')}): its "
            "workers are forked from the batch process once it has imported Hamilton, pandas and "
            "the openai SDK, so they only build (as fresh interpreters, as before, each imported "
            "all of it again: about a second of CPU per worker). Its wall time can only halve when two cores are free for it: "
            "the cores-used figure shows how many it got while this ran, and on this shared "
            "machine other processes held the rest (see the load caution). What it loses to 2× "
            "beyond that is the workers' start and the tail (one worker finished, the other "
            "not). Ray adds its actors' start and task dispatch. The latency-bound rows are "
            "bound by the CPU of the workers: a call holds its slot of the 64 from the grant "
            "until its answer has been read, so every millisecond that a worker's event loop "
            "is busy elsewhere stretches the 200 ms. Per call a worker spends the openai SDK's "
            "request building and the HTTP stack (aiohttp here, as in the service), Hamilton's "
            "execution of the run, and a share of the limiter's messages, which go out "
            "coalesced, one frame per event-loop pass. Workers freeze what they imported and "
            "built out of the garbage collector's sight once built: before that, its passes "
            "took about a third of a worker's CPU. The rate reached is what the CPU left "
            "allows: on a busy machine (see the load caution) it falls with the CPU the "
            "workers get."
        ),
    )
