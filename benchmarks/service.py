"""The service under load: `promptdag serve` (traces on, traces off, the default response cache,
and `--workers 2`) in front of a fake OpenAI-compatible LLM that answers every call after 200 ms,
driven by a closed-loop load generator; throughput and p50/p99 latency against the
critical-path bound, the service's CPU per request, the cost of tracing and of the response
cache, and resident memory over a long run. Every process (the fake LLM, the services, the load
generator) runs on this machine and talks only to 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._fake_llm import FakeLLM, fake_llm
from benchmarks._loadgen import run_load
from benchmarks._report import Report, at_most, median, require, spread, table
from dataflows import chunking
from promptdag.contract import load_contract
from promptdag.llm.tokens import token_counter

__all__ = ["NAME", "TITLE", "run"]

NAME = "service"
TITLE = "Service under load"
REPO = Path(__file__).resolve().parents[1]
PIPELINE = "summarize"  # the reference app's pipeline, sent {"text": ...} as JSON
LATENCY_S, CHUNKS = 0.200, 2
BOUND_S = 2 * LATENCY_S  # the chunk calls side by side (llm_max_concurrency ≥ 2), then the final
LEVELS, GOAL_C = (16, 64, 256), 64
GOAL_P50, GOAL_TRACE, GOAL_RSS, GOAL_WORKERS_P50 = 1.10, 0.05, 0.10, 1.25
WORKERS = 2
CONFIG = {"llm_backend": "openai", "llm_model": "fake", "llm_cache": "off"}
_NEXT_DOCUMENT = 1  # the number of the next new document (--vary): see _load
MARKER = "@@@@@@@@"  # numbered per request by the load generator (--vary): a new document each
FLAGS = ["--variant", "baseline", "--max-in-flight", "1024"]
API_KEY = "bench:benchmark-api-key-0123456789"  # PROMPTDAG_API_KEYS: key id "bench"
AUTH = {"Authorization": f"Bearer {API_KEY.split(':', 1)[1]}"}
READY_TIMEOUT_S, START_ATTEMPTS = 60.0, 3
_SENTENCE = "Route {i} runs from the north depot to the harbour and carries {n} parcels a day."


@dataclass(frozen=True)
class Sizes:
    """Measured requests of each phase (the unmeasured warm-ups come on top)."""

    baseline: int  # at 1 client: the latency floor, same run, same machine
    sweep: dict[int, int]
    trace_reps: int
    trace_requests: int
    memory_requests: int
    memory_every: int
    cache_reps: int  # cache default vs off, alternating, every request a new document
    workers_reps: int  # `serve --workers 2` at GOAL_C clients


FULL = Sizes(16, {16: 320, 64: 512, 256: 1024}, 10, 384, 10_000, 1_000, 3, 3)
QUICK = Sizes(8, {16: 160, 64: 256, 256: 768}, 6, 256, 2_000, 200, 2, 2)


@dataclass(frozen=True)
class Service:
    """A running `promptdag serve`."""

    process: subprocess.Popen[bytes]
    port: int
    traces: bool
    tag: str = ""

    def pids(self) -> dict[str, int]:
        """The server and every process below it (workers), for CPU readings."""
        found, todo = [], [self.process.pid]
        while todo:
            for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
                with contextlib.suppress(OSError):
                    children = [int(c) for c in (task / "children").read_text().split()]
                    found.extend(children)
                    todo.extend(children)
        return {"service": self.process.pid} | {f"service-{p}": p for p in found}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/pipelines/{PIPELINE}/runs"


def _chunk_config() -> tuple[int, int]:
    """The contract's default chunk_tokens and chunk_overlap_tokens."""
    keys = load_contract(REPO).config
    return int(keys["chunk_tokens"].default), int(keys["chunk_overlap_tokens"].default)


def _document(marker: str = "") -> str:
    """About 1.5 windows of numbered sentences: CHUNKS chunks at the default chunk size, cut by
    the pipeline's own chunker (every response is checked for CHUNKS + 1 LLM calls, too). With
    `marker`, the text starts and ends with it (the load generator numbers it per request), so
    each chunk holds it."""
    counter = token_counter(CONFIG["llm_model"])
    window, overlap = _chunk_config()
    sentences: list[str] = [f"Document {marker}."] if marker else []
    while counter.count(" ".join(sentences)) < 1.5 * window:
        sentences.append(_SENTENCE.format(i=len(sentences), n=40 + len(sentences) % 17))
    text = " ".join(sentences) + (f" End of document {marker}." if marker else "")
    chunks = chunking.text_chunks(text, counter.count(text), counter, window, overlap)
    require(len(chunks) == CHUNKS, f"the document makes {len(chunks)} chunks, not {CHUNKS}")
    require(all(marker in c for c in chunks), "a chunk of the numbered document lacks its number")
    return text


# Run in the child before it becomes `promptdag serve`: ask Linux to SIGTERM it when this process
# dies (prctl PR_SET_PDEATHSIG, kept across exec), so a benchmark killed outright leaves no server.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); "
    "os.getppid() == int(sys.argv[1]) or sys.exit('the benchmark is gone'); "
    "os.execv(sys.argv[2], sys.argv[2:])"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    """This environment without OpenAI/promptdag settings or proxies, plus the service's own."""
    proxies = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "PROMPTDAG_")) and k.lower() not in proxies
    }
    return {
        **base,
        "OPENAI_API_KEY": "x",
        "PROMPTDAG_DATA_DIR": str(data_dir),
        "PROMPTDAG_API_KEYS": API_KEY,
    }


def _ready(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as r:
            return int(r.status) == 200
    except OSError:
        return False


def _wait_ready(proc: subprocess.Popen[bytes], port: int) -> str | None:
    """None once /readyz answers 200; else why not."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"it exited with status {proc.returncode}"
        if _ready(port):
            return None
        time.sleep(0.1)
    return f"/readyz did not answer 200 within {READY_TIMEOUT_S:g} s"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def _service(
    workdir: Path, fake: FakeLLM, traces: bool, *, default_cache: bool = False, workers: int = 1
) -> Iterator[Service]:
    """`promptdag serve` on a free port with its own data dir until the block ends (the pattern
    of tests/promptdag/service/live.py: a few attempts, in case another process takes the port).
    `default_cache`: without `llm_cache=off`, i.e. the service's default response cache."""
    exe = str(Path(sys.executable).with_name("promptdag"))
    config = {**CONFIG, "llm_base_url": fake.base_url}
    if default_cache:
        del config["llm_cache"]
    pairs = [a for k, v in config.items() for a in ("--config", f"{k}={v}")]
    flag = "traces" if traces else "no-traces"
    tag = flag + ("-cache" if default_cache else "") + (f"-w{workers}" if workers > 1 else "")
    more = ["--workers", str(workers)] if workers > 1 else []
    failures = []
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        log_path = workdir / f"serve-{tag}-{attempt}.log"
        argv = [exe, "serve", "--port", str(port), *FLAGS, *more, f"--{flag}", *pairs]
        guard = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid())]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                guard + argv,
                cwd=REPO,
                env=_env(workdir / f"data-{tag}"),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            problem = _wait_ready(proc, port)
            if problem is None:
                yield Service(proc, port, traces, tag)
                return
            text = log_path.read_text(errors="replace")
            failures.append(f"`{' '.join(argv[1:])}`: {problem}\n{text[-2000:]}")
            if "address already in use" not in text.lower():
                break
        finally:
            _stop(proc)
    raise RuntimeError("promptdag serve did not start:\n" + "\n".join(failures))


Run = dict[str, Any]  # one load-generator summary (see benchmarks/_loadgen.py)


def _load(
    svc: Service,
    fake: FakeLLM,
    body: bytes,
    clients: int,
    requests: int,
    warmup: int,
    rss_every: int = 0,
    vary: str | None = None,
) -> Run:
    """One closed-loop run; refuses results that did not measure what they claim. The
    service's CPU counts every process of it (workers too). With `vary`, the documents are
    numbered from where the last such run stopped (never the same document twice in a
    benchmark), and every call must have missed the response cache."""
    global _NEXT_DOCUMENT
    first, _NEXT_DOCUMENT = _NEXT_DOCUMENT, _NEXT_DOCUMENT + warmup + requests
    r = run_load(
        svc.url,
        body,
        concurrency=clients,
        requests=requests,
        warmup=warmup,
        time_limit_s=60 + requests / 20,  # ≥ 3× what a run takes at the service's ceiling
        watch={**svc.pids(), "fake": fake.process.pid},
        rss_every=rss_every,
        expect_calls=CHUNKS + 1,
        headers=AUTH,
        vary=vary,
        vary_from=first,
    )
    r["cpu_s"]["service"] = sum(v for k, v in r["cpu_s"].items() if k.startswith("service"))
    require(r["ok"] > 0, f"no request succeeded at {clients} clients: {r['errors']}")
    require(r["wrong_calls"] == 0, f"{r['wrong_calls']} answers did not make {CHUNKS + 1} calls")
    require(
        vary is None or r["cached_calls"] == 0,
        f"{r['cached_calls']} calls of a run of new documents were cache hits",
    )
    return r


def _per_request_ms(r: Run, seconds: float) -> float:
    return 1e3 * seconds / max(1, r["ok"])


def _errors(r: Run) -> str:
    n = sum(r["errors"].values())
    text = f"{n} ({', '.join(f'{k}×{v}' for k, v in r['errors'].items())})" if n else "0"
    return text + (" — stopped by the time limit" if r["stopped_by_time"] else "")


def _latency_row(label: str, r: Run) -> list[str]:
    c = r["concurrency"]
    return [
        label,
        f"{r['ok']:,}",
        f"{r['throughput']:.1f} ({r['throughput'] / (c / BOUND_S):.0%})",
        f"{r['p50_s'] * 1e3:.0f} ms ({r['p50_s'] / BOUND_S:.2f}×)",
        f"{r['server_p50_s'] * 1e3:.0f} ms",
        f"{r['p99_s'] * 1e3:.0f} ms ({r['p99_s'] / BOUND_S:.2f}×)",
        _errors(r),
    ]


def _cpu_row(label: str, r: Run) -> list[str]:
    return [
        label,
        f"{_per_request_ms(r, r['cpu_s']['service']):.1f} ms",
        f"{r['cpu_s']['service'] / r['wall_s']:.2f}",
        f"{_per_request_ms(r, r['cpu_s']['fake']):.2f} ms",
        f"{_per_request_ms(r, r['loadgen_cpu_s']):.2f} ms",
        f"{2 * r['machine_busy']:.2f}",
        f"{r['rss_end']['service'] / 2**20:.0f} MiB",
    ]


@dataclass(frozen=True)
class _Tracing:
    rows: list[list[str]]
    capacity_ratio: float  # pooled (requests per service CPU-second) on ÷ off
    throughput_ratio: float  # median paired requests/s on ÷ off
    extra_cpu_ms: float  # pooled service CPU per request, on − off


def _capacity(r: Run) -> float:
    """Requests per CPU-second of the service: its throughput when it has a core to itself."""
    return r["ok"] / max(1e-9, r["cpu_s"]["service"])


def _tracing(runs: dict[bool, list[Run]]) -> _Tracing:
    """Traces on vs off: a row each, then the median paired ratios (on ÷ off)."""
    pairs = list(zip(runs[True], runs[False], strict=True))
    thr_ratios = [a["throughput"] / b["throughput"] for a, b in pairs]
    cap_ratios = [_capacity(a) / _capacity(b) for a, b in pairs]
    cpu = {on: [_per_request_ms(r, r["cpu_s"]["service"]) for r in runs[on]] for on in runs}
    rows = []
    for on in (True, False):
        thr = [r["throughput"] for r in runs[on]]
        cap = [_capacity(r) for r in runs[on]]
        p50 = [r["p50_s"] * 1e3 for r in runs[on]]
        rows.append(
            [
                "traces on" if on else "traces off",
                f"{median(thr):.1f} ({spread(thr, digits=1)})",
                f"{median(cap):.1f} ({spread(cap, digits=1)})",
                f"{median(cpu[on]):.2f} ms ({spread(cpu[on], digits=2)})",
                f"{median(p50):.0f} ms ({spread(p50)})",
                str(sum(sum(r["errors"].values()) for r in runs[on])),
            ]
        )
    pooled = {on: _pooled_cpu_ms(runs[on]) for on in runs}
    extra_cpu = pooled[True] - pooled[False]
    rows.append(
        [
            "**on ÷ off**: pooled (paired runs: median, range)",
            f"{median(thr_ratios):.3f} ({spread(thr_ratios, digits=3)})",
            f"{pooled[False] / pooled[True]:.3f} ({median(cap_ratios):.3f}, "
            f"{spread(cap_ratios, digits=3)})",
            f"{extra_cpu:+.2f} ms ({extra_cpu / pooled[False]:+.1%})",
            "",
            "",
        ]
    )
    return _Tracing(rows, pooled[False] / pooled[True], median(thr_ratios), extra_cpu)


def _pooled_cpu_ms(runs: list[Run]) -> float:
    """Service CPU per request over all `runs` together: all their CPU over all their
    requests (the estimate of the mean that varies least from run to run)."""
    return 1e3 * sum(r["cpu_s"]["service"] for r in runs) / max(1, sum(r["ok"] for r in runs))


def _drift(r: Run) -> tuple[int, int, float, float]:
    """First and last RSS sample, the largest |sample ÷ first - 1|, and the growth over the
    second half of the run in bytes per 1,000 requests."""
    samples = r["rss_samples"]
    require(len(samples) >= 3, f"only {len(samples)} RSS sample(s): the memory run ended early")
    rss = [s[2] for s in samples]
    mid = samples[len(samples) // 2]
    slope = 1000 * (samples[-1][2] - mid[2]) / max(1, samples[-1][0] - mid[0])
    return rss[0], rss[-1], max(abs(x / rss[0] - 1) for x in rss), slope


@dataclass
class _Results:
    baseline: Run
    sweep: list[Run]
    tracing: dict[bool, list[Run]]
    memory: Run
    text_chars: int
    cache: dict[str, list[Run]] = field(default_factory=dict)
    workers: list[Run] = field(default_factory=list)
    took_s: float = 0.0


def _measure(sizes: Sizes) -> _Results:
    text = _document()
    body = json.dumps({"text": text}).encode()
    distinct = json.dumps({"text": _document(MARKER)}).encode()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="promptdag-bench-service-") as tmp:
        work = Path(tmp)
        with (
            fake_llm(LATENCY_S, work / "fake-llm.log") as fake,
            _service(work, fake, traces=True) as on,
            _service(work, fake, traces=False) as off,
        ):
            # First, while the traced service is fresh: memory over a long run at GOAL_C.
            memory = _load(
                on,
                fake,
                body,
                GOAL_C,
                sizes.memory_requests,
                warmup=2 * GOAL_C,
                rss_every=sizes.memory_every,
            )
            baseline = _load(on, fake, body, 1, sizes.baseline, warmup=2)
            sweep = [_load(on, fake, body, c, sizes.sweep[c], warmup=c) for c in LEVELS]
            # The untraced service first serves as many requests as the traced one has, so the
            # two compared are alike in age (heap, caches) and differ only in tracing.
            served = sizes.memory_requests + 2 * GOAL_C + sizes.baseline + 2
            served += sum(sizes.sweep.values()) + sum(LEVELS)
            _load(off, fake, body, GOAL_C, served, warmup=GOAL_C)
            tracing: dict[bool, list[Run]] = {True: [], False: []}
            for rep in range(sizes.trace_reps):  # alternate, so that drift hits both alike
                for svc in (on, off) if rep % 2 == 0 else (off, on):
                    tracing[svc.traces].append(
                        _load(svc, fake, body, GOAL_C, sizes.trace_requests, warmup=GOAL_C)
                    )
            cache: dict[str, list[Run]] = {"off": [], "default": [], "hits": []}
            with _service(work, fake, traces=True, default_cache=True) as cached:
                for rep in range(sizes.cache_reps):  # a new document each request: misses
                    for name, svc in (("off", on), ("default", cached))[:: 1 if rep % 2 else -1]:
                        cache[name].append(
                            _load(
                                svc,
                                fake,
                                distinct,
                                GOAL_C,
                                sizes.trace_requests,
                                warmup=GOAL_C,
                                vary=MARKER,
                            )
                        )
                # the same document every time: after the first, every call is a hit
                hits = _load(cached, fake, body, GOAL_C, sizes.trace_requests, warmup=GOAL_C)
                calls = hits["ok"] * (CHUNKS + 1)
                require(hits["cached_calls"] == calls, f"{hits['cached_calls']} hits of {calls}")
                cache["hits"].append(hits)
        with (
            fake_llm(LATENCY_S, work / "fake-llm-workers.log") as fake,
            _service(work, fake, traces=True, workers=WORKERS) as pool,
        ):
            workers = [
                _load(pool, fake, body, GOAL_C, sizes.trace_requests, warmup=2 * GOAL_C)
                for _ in range(sizes.workers_reps)
            ]
    results = _Results(baseline, sweep, tracing, memory, len(text), cache, workers)
    results.took_s = time.perf_counter() - started
    return results


def _report(res: _Results, sizes: Sizes) -> Report:
    tr = _tracing(res.tracing)
    at_goal = [r for r in (*res.sweep, *res.tracing[True]) if r["concurrency"] == GOAL_C]
    p50_ratio = median([r["p50_s"] / BOUND_S for r in at_goal])
    first, last, drift, slope = _drift(res.memory)
    mem = res.memory
    goals = [
        at_most(f"p50 ÷ critical-path bound, {GOAL_C} clients", GOAL_P50, p50_ratio, "×", 2),
        at_most(
            f"throughput lost to tracing, {GOAL_C} clients (per service CPU-second)",
            100 * GOAL_TRACE,
            100 * (1 - tr.capacity_ratio),
            "%",
            1,
        ),
        at_most(f"RSS drift over {mem['ok']:,} requests", 100 * GOAL_RSS, 100 * drift, "%", 1),
    ]
    runs = [("1 (baseline)", res.baseline)] + [(str(r["concurrency"]), r) for r in res.sweep]
    sat = res.sweep[-1]
    cpu_sat = _per_request_ms(sat, sat["cpu_s"]["service"])
    cores_sat = sat["cpu_s"]["service"] / sat["wall_s"]
    need = GOAL_C / (GOAL_P50 * BOUND_S)  # Little's law for a closed loop
    cpu_goal = median([_per_request_ms(r, r["cpu_s"]["service"]) for r in at_goal])
    if res.workers:
        goals.append(
            at_most(
                f"p50 ÷ critical-path bound, {GOAL_C} clients, --workers {WORKERS}",
                GOAL_WORKERS_P50,
                median([r["p50_s"] / BOUND_S for r in res.workers]),
                "×",
                2,
            )
        )
    missed = [g.metric for g in goals if not g.met]
    mem_rows = [["0 (after warm-up)", "0", f"{mem['rss_start']['service'] / 2**20:.1f} MiB"]]
    mem_rows += [
        [f"{n:,}", f"{t:.0f}", f"{rss / 2**20:.1f} MiB"] for n, t, rss in mem["rss_samples"]
    ]
    return Report(
        name=NAME,
        title=TITLE,
        goals=goals,
        headers=[
            "Clients",
            "Requests",
            "Requests/s (% of clients ÷ bound)",
            "p50 (÷ bound)",
            "p50 inside the pipeline",
            "p99 (÷ bound)",
            "Errors",
        ],
        rows=[_latency_row(label, r) for label, r in runs],
        extra=[
            "CPU per request of each process, and memory, in the same runs (cores: CPU seconds "
            "per wall second; *machine* counts every process on the machine, others' too):",
            table(
                [
                    "Clients",
                    "Service CPU / request",
                    "Service cores",
                    "Fake LLM CPU / request (3 calls)",
                    "Load generator CPU / request",
                    "Machine cores busy (of 2)",
                    "Service RSS",
                ],
                [_cpu_row(label, r) for label, r in runs],
            ),
            f"Tracing on vs off at {GOAL_C} clients: medians (ranges) of {len(res.tracing[True])} "
            f"alternating runs of {sizes.trace_requests} requests each. On ÷ off, the goal's "
            "figure is pooled: all the requests of each service's runs over all their CPU "
            "(a run's CPU per request varies by about ±5% from run to run here, so the median "
            "of a few paired ratios could not tell 5% from noise); the median and range of the "
            "ratios of runs made one after the other are in brackets:",
            table(
                [
                    "Service",
                    "Requests/s",
                    "Requests per service CPU-second",
                    "Service CPU / request",
                    "p50",
                    "Errors",
                ],
                tr.rows,
            ),
            f"Resident memory of the traced service over {mem['ok']:,} requests at {GOAL_C} clients "
            f"({mem['throughput']:.1f} requests/s, p50 {mem['p50_s'] * 1e3:.0f} ms, p99 "
            f"{mem['p99_s'] * 1e3:.0f} ms, errors {_errors(mem)}): first sample "
            f"{first / 2**20:.1f} MiB, last {last / 2**20:.1f} MiB ({last / first - 1:+.1%}), "
            f"largest deviation from the first {drift:.1%}; over the second half it grew "
            f"{slope / 2**20:+.2f} MiB per 1,000 requests.",
            table(["After requests", "Seconds", "Service RSS"], mem_rows),
            *_cache_section(res),
            *_workers_section(res),
            _environment(),
            f"The whole benchmark took {res.took_s:.0f} s, including starting and stopping the "
            "processes.",
        ],
        method=(
            f"`promptdag serve {' '.join(FLAGS)} "
            f"{' '.join(f'--config {k}={v}' for k, v in CONFIG.items())} --config "
            "llm_base_url=http://127.0.0.1:PORT/v1` with OPENAI_API_KEY=x, one API key "
            "(PROMPTDAG_API_KEYS=bench:KEY, sent by every request: the key id is checked, "
            "limited and recorded) and a temporary PROMPTDAG_DATA_DIR, twice: `--traces` and "
            "`--no-traces`; both write the JSON access log (the default) to their log file. "
            "With traces on, every request's row records its key id, HTTP status and request "
            "ids (trace schema v3+). The LLM is "
            "`benchmarks/_fake_llm.py`, an OpenAI-compatible Starlette app on uvicorn in its own "
            f"process that answers each call after `asyncio.sleep({LATENCY_S:g})`. Each request "
            f'is JSON `{{"text": ...}}` to `POST /v1/pipelines/{PIPELINE}/runs`, a '
            f"{res.text_chars:,}-character text that the default chunker "
            f"(chunk_tokens={_chunk_config()[0]}) cuts into {CHUNKS} chunks; every "
            f"answer is checked for usage.calls = {CHUNKS + 1}. Critical-path bound: the "
            f"{CHUNKS} chunk calls side by side ({LATENCY_S * 1e3:.0f} ms), then the final call "
            f"({LATENCY_S * 1e3:.0f} ms): {BOUND_S * 1e3:.0f} ms; C clients in a closed loop can "
            f"at best make C ÷ {BOUND_S:g} s requests/s. The load generator "
            "(`benchmarks/_loadgen.py`, its own process, one keep-alive HTTP/1.1 connection per "
            "client) runs a closed loop: each client sends its next request as soon as the last "
            "is answered; each run starts with an unmeasured warm-up (one request per client; "
            f"{2 * GOAL_C} for the memory run). *p50 inside the pipeline* is the service's own "
            "`latency_s`; the rest of the end-to-end time is HTTP and queueing in front of the "
            "pipeline. CPU: utime + stime of each process (all threads) from /proc over the "
            "measured requests; RSS from /proc/PID/statm. Order: the memory run first, on the "
            "freshly started traced service; then 1 client; the sweep; then the tracing runs, "
            "alternating which service goes first, after the untraced service has served as many "
            "requests as the traced one had (so both are alike in age; the traced one has stored "
            "every earlier request in its trace database, as a long-running one would). The p50 "
            "goal takes the median over every "
            f"traced run at {GOAL_C} clients (sweep and tracing runs). The RSS goal compares "
            f"every sample (one per {sizes.memory_every:,} answered requests) with the first."
        ),
        explanation=(
            "**What limits these numbers.** One 2-core machine, shared with other work, runs the "
            "fake LLM, both services and the load generator: they compete for the same two "
            "cores (*Machine cores busy* counts other tenants too). The service is one Python "
            "process with one event loop, so it uses one core at most: at "
            f"{cpu_sat:.1f} ms of CPU per request it saturates near {1e3 / cpu_sat:.0f} "
            f"requests/s. At {sat['concurrency']} clients it ran at {cores_sat:.2f} cores and "
            f"served {sat['throughput']:.0f} requests/s of the {sat['concurrency'] / BOUND_S:.0f} "
            "a closed loop of that size could ask for; the other clients queue (p50 "
            f"{sat['p50_s'] / BOUND_S:.1f}× the bound, most of it inside the pipeline, where "
            "each step waits its turn on the busy event loop). A p50 within "
            f"{GOAL_P50:.2f}× the bound at {GOAL_C} clients takes about {need:.0f} requests/s, "
            f"under {1e3 / need:.1f} ms of CPU per request on a core of its own, "
            f"{1e3 / need / cpu_goal:.0%} of the {cpu_goal:.1f} ms measured at {GOAL_C} clients: "
            "out of reach for one process here, whatever the noise; it needs less CPU per "
            "request or more worker processes (`promptdag serve` runs one). With one client the "
            f"service adds {(res.baseline['p50_s'] - BOUND_S) * 1e3:.0f} ms to the bound. The "
            "fake LLM and the load generator cost little next to the service (second table). "
            "Where the service's CPU goes: the client side of the 3 LLM calls was the largest "
            "share (~43% in a py-spy profile taken when this benchmark was written, with "
            "`chat.completions.create` over httpx2, whose connection pool walks all its "
            "connections on every request); the service now sends each call with the SDK's "
            "`client.post` (no typed body transform, no pydantic answer model) over the SDK's "
            "aiohttp client, which measured about a third of the client CPU per call of "
            "`create` over httpx2 at 64 calls in flight. The rest: Hamilton's async driver, "
            "promptdag's own code, the event loop, uvicorn (on uvloop and httptools, see the "
            "environment below), tiktoken, tracing and FastAPI/Starlette. "
            f"Tracing adds {tr.extra_cpu_ms:+.2f} ms of CPU per request: the adapter "
            "building the rows on the event loop, and the writer thread (same process, same GIL) "
            "committing them to SQLite (under load, many requests per transaction); each request "
            "also waits for its commit before it is "
            "answered. As the service is CPU-bound at this load, its "
            "throughput with a core to itself falls by that share, which is what the goal "
            "measures (requests per CPU-second of the service). The raw requests/s ratio, "
            f"{tr.throughput_ratio:.3f}, also moves with how much CPU other processes left the "
            "service during each run (see its range). "
            + ("All goals are met." if not missed else f"**Missed: {'; '.join(missed)}.**")
        ),
    )


def _run_row(label: str, r: Run) -> list[str]:
    return [
        label,
        f"{r['throughput']:.1f}",
        f"{_capacity(r):.1f}",
        f"{_per_request_ms(r, r['cpu_s']['service']):.2f} ms",
        f"{r['p50_s'] * 1e3:.0f} ms ({r['p50_s'] / BOUND_S:.2f}×)",
        f"{r['p99_s'] * 1e3:.0f} ms",
        _errors(r),
    ]


_RUN_HEADERS = [
    "Service",
    "Requests/s",
    "Requests per service CPU-second",
    "Service CPU / request",
    "p50 (÷ bound)",
    "p99",
    "Errors",
]


def _cache_section(res: _Results) -> list[str]:
    """The response cache at its default (use, namespaced per API key) against off."""
    if not res.cache:
        return []
    rows = []
    for name, label in (
        ("off", "llm_cache=off, a new document each request"),
        ("default", "default cache (use), a new document each request: every call a miss"),
        ("hits", "default cache (use), the same document: every call a hit"),
    ):
        rows += [_run_row(label, r) for r in res.cache.get(name, [])]
    return [
        f"The response cache, traces on, {GOAL_C} clients: the service as it starts by default "
        "(`llm_cache` not set: `use`, namespaced by API key) against `llm_cache=off`, in "
        "alternating runs where every request is a new document (the load generator numbers "
        "each body, so every call misses and is written to the cache: what the cache costs "
        "real traffic), then one run of the same document over and over (every call a hit, "
        "no model call: the latency bound does not apply):",
        table(_RUN_HEADERS, rows),
    ]


def _workers_section(res: _Results) -> list[str]:
    """`serve --workers 2` at GOAL_C clients, and the cores the fake and the load took."""
    if not res.workers:
        return []
    fake = median([r["cpu_s"]["fake"] / r["wall_s"] for r in res.workers])
    load = median([r["loadgen_cpu_s"] / r["wall_s"] for r in res.workers])
    service = median([r["cpu_s"]["service"] / r["wall_s"] for r in res.workers])
    busy = median([2 * r["machine_busy"] for r in res.workers])
    return [
        f"`promptdag serve --workers {WORKERS}` (traces on, cache off, the same fake model at "
        f"{LATENCY_S * 1e3:.0f} ms and {CHUNKS}-chunk documents), {GOAL_C} clients, its own "
        "fake model, alone on the machine (the other services stopped); service CPU counts "
        f"every process of the server (supervisor and workers). The service used {service:.2f} "
        f"cores, the fake model {fake:.2f}, the load generator {load:.2f} (medians; the "
        f"machine, others' work included, {busy:.2f} of 2):",
        table(_RUN_HEADERS, [_run_row(f"--workers {WORKERS}", r) for r in res.workers]),
    ]


def _environment() -> str:
    """What `promptdag serve` runs on here, read from the installed packages."""
    from importlib.metadata import PackageNotFoundError, version

    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    loop = "uvloop" if v("uvloop") != "not installed" else "asyncio"
    from promptdag.llm.client import resolve_http_client

    client = resolve_http_client("auto")  # the services start without PROMPTDAG_* settings
    return (
        f"Environment: uvicorn {v('uvicorn')} with `loop=auto` and `http=auto` (what `promptdag "
        f"serve` uses) runs on {loop} (uvloop {v('uvloop')}) with the "
        f"{AutoHTTPProtocol.__name__} parser (httptools {v('httptools')}, h11 {v('h11')}); "
        f"the service's LLM client is the openai SDK {v('openai')} over {client} (aiohttp "
        f"{v('aiohttp')}: PROMPTDAG_LLM_HTTP_CLIENT unset, i.e. auto; =httpx selects httpx2 "
        f"{v('httpx2')}); "
        f"{os.cpu_count()} CPUs."
    )


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM (`timeout`, `kill`) raises SystemExit meanwhile, so every child is stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(quick: bool = False) -> Report:
    sizes = QUICK if quick else FULL
    with _sigterm_unwinds():
        results = _measure(sizes)
    return _report(results, sizes)
