"""A closed-loop HTTP load generator in its own process: C clients each send the next request as
soon as their previous one is answered, first a warm-up, then a measured batch bounded in count
and in time; it prints one JSON summary line.

    python -m benchmarks._loadgen --url http://127.0.0.1:8000/v1/pipelines/summarize/runs \\
        --concurrency 64 --requests 640 --warmup 128 --time-limit 60 --watch server=1234 < body.json

The request body is read from stdin and POSTed as JSON over one keep-alive HTTP/1.1 connection
per client, with a minimal asyncio client: httpx.AsyncClient, tried first, spent 4 ms of CPU per
request at 64 connections and 16 ms at 256 (its pool walks every connection on every request),
more than a lot of what it was meant to measure; this one spends ~0.15 ms.

`--header 'Name: value'` (repeatable) is sent with every request (an API key, say).
`--vary MARKER`: the body holds MARKER (ASCII) and each request, warm-up included, gets it
(every occurrence) replaced by its own number of the same width, so every request is a different document (a
response cache then misses every time, as it does for real traffic); `--vary-from N` is the
first number, so that runs against one service do not repeat each other's documents. Each
answer's `usage.cached_calls` is summed (`cached_calls`), so a run can check it missed.
`--watch NAME=PID` reports the CPU seconds (utime + stime, all threads) each watched process
spent during the measured batch, and its resident memory, from /proc; `--rss-every K` samples
the first watched process's RSS every K answered requests; `--expect-calls N` counts the 200
answers whose `usage.calls` is not N and collects their `latency_s` (the service's own time).
Only 127.0.0.1 URLs are accepted. `run_load()` runs it as a subprocess and returns the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["run_load"]

REQUEST_TIMEOUT_S = 60.0
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def run_load(
    url: str,
    body: bytes,
    *,
    concurrency: int,
    requests: int,
    warmup: int,
    time_limit_s: float,
    watch: Mapping[str, int],
    rss_every: int = 0,
    expect_calls: int | None = None,
    headers: Mapping[str, str] | None = None,
    vary: str | None = None,
    vary_from: int = 1,
) -> dict[str, Any]:
    """Run the load generator in a fresh process and return its summary (see the module doc)."""
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "benchmarks._loadgen", "--url", url]
    argv += ["--concurrency", str(concurrency), "--requests", str(requests)]
    argv += ["--warmup", str(warmup), "--time-limit", str(time_limit_s)]
    argv += ["--rss-every", str(rss_every)]
    argv += [] if expect_calls is None else ["--expect-calls", str(expect_calls)]
    argv += [a for name, pid in watch.items() for a in ("--watch", f"{name}={pid}")]
    argv += [a for k, v in (headers or {}).items() for a in ("--header", f"{k}: {v}")]
    argv += [] if vary is None else ["--vary", vary, "--vary-from", str(vary_from)]
    # The generator stops sending at its time limit and its requests time out after
    # REQUEST_TIMEOUT_S; the outer limit only catches a generator that hangs.
    outer = 2 * time_limit_s + REQUEST_TIMEOUT_S + 30
    proc = subprocess.run(
        argv, cwd=root, input=body, capture_output=True, timeout=outer, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the load generator failed:\n{proc.stderr.decode()[-2000:]}")
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def _cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return total - idle, total


@dataclass
class _Batch:
    """What one phase recorded: latency of each answered request and outcomes by kind."""

    latencies: list[float] = field(default_factory=list)
    server_latencies: list[float] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    wrong_calls: int = 0
    cached_calls: int = 0
    issued: int = 0
    stopped_by_time: bool = False
    rss: list[tuple[int, float, int]] = field(default_factory=list)


class _Connection:
    """One keep-alive HTTP/1.1 connection: a request at a time, reopened after a failure or a
    `Connection: close`. Enough HTTP for a JSON POST to uvicorn (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")[1:] if ln)
        }
        if b"content-length" in headers:
            body = await self.reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = await self._chunked()
        else:
            body = await self.reader.read()
            self.close()
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append((await self.reader.readexactly(size + 2))[:-2])
        while await self.reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then a blank line
            pass
        return b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Requests:
    """The request bytes to send next: always the same, or (with a marker) numbered."""

    def __init__(self, request: bytes, marker: bytes | None, first: int = 1) -> None:
        self.parts, self.width, self.sent = [request], 0, first - 1
        if marker:
            if marker not in request:
                raise SystemExit(f"--vary {marker.decode()!r}: the body does not hold it.")
            self.parts = request.split(marker)
            self.width = len(marker)

    def next(self) -> bytes:
        self.sent += 1
        if not self.width:
            return self.parts[0]
        number = str(self.sent).zfill(self.width)[-self.width :].encode()
        return number.join(self.parts)


async def _phase(
    connections: list[_Connection],
    request: _Requests,
    count: int,
    deadline: float,
    rss_pid: int | None = None,
    rss_every: int = 0,
    expect_calls: int | None = None,
) -> _Batch:
    batch = _Batch()
    started = time.perf_counter()

    async def one_client(conn: _Connection) -> None:
        while batch.issued < count:
            if time.monotonic() >= deadline:
                batch.stopped_by_time = True
                return
            batch.issued += 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, body = await conn.post(request.next())
            except (
                OSError,
                TimeoutError,
                ValueError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
            ) as exc:
                conn.close()
                batch.outcomes[type(exc).__name__] += 1
                continue
            batch.latencies.append(time.perf_counter() - t0)
            batch.outcomes[str(status)] += 1
            if status == 200 and expect_calls is not None:
                calls, cached, latency = _answer_facts(body)
                batch.wrong_calls += calls != expect_calls
                batch.cached_calls += cached or 0
                if latency is not None:
                    batch.server_latencies.append(latency)
            done = sum(batch.outcomes.values())
            if rss_pid is not None and rss_every and done % rss_every == 0:
                batch.rss.append((done, time.perf_counter() - started, _rss_bytes(rss_pid)))

    await asyncio.gather(*(one_client(c) for c in connections))
    return batch


def _answer_facts(body: bytes) -> tuple[Any, Any, float | None]:
    """`usage.calls`, `usage.cached_calls` and `latency_s` of a run's answer (None where
    missing or not JSON)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return None, None, None
    if not isinstance(answer, dict):
        return None, None, None
    usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
    latency = answer.get("latency_s")
    latency_s = float(latency) if isinstance(latency, int | float) else None
    return usage.get("calls"), usage.get("cached_calls"), latency_s


def _percentile(values: list[float], q: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _main(args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    extra = "".join(f"{h.strip()}\r\n" for h in args.header)
    request = (
        f"POST {url.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    requests = _Requests(request, args.vary.encode() if args.vary else None, args.vary_from)
    watch = {name: int(pid) for name, _, pid in (w.partition("=") for w in args.watch)}
    first_pid = next(iter(watch.values()), None)
    deadline = time.monotonic() + args.time_limit
    connections = [_Connection(host, port) for _ in range(args.concurrency)]
    try:
        warm = await _phase(connections, requests, args.warmup, deadline)
        cpu0 = {n: _cpu_s(p) for n, p in watch.items()}
        rss0 = {n: _rss_bytes(p) for n, p in watch.items()}
        busy0, own0 = _machine_busy(), time.process_time()
        t0 = time.perf_counter()
        batch = await _phase(
            connections,
            requests,
            args.requests,
            deadline,
            first_pid,
            args.rss_every,
            args.expect_calls,
        )
        wall = time.perf_counter() - t0
        busy1, own1 = _machine_busy(), time.process_time()
        cpu1 = {n: _cpu_s(p) for n, p in watch.items()}
        rss1 = {n: _rss_bytes(p) for n, p in watch.items()}
    finally:
        for conn in connections:
            conn.close()
    ok = batch.outcomes.get("200", 0)
    return {
        "concurrency": args.concurrency,
        "requested": args.requests,
        "answered": len(batch.latencies),
        "ok": ok,
        "errors": {k: v for k, v in sorted(batch.outcomes.items()) if k != "200"},
        "warmup_errors": {k: v for k, v in sorted(warm.outcomes.items()) if k != "200"},
        "wrong_calls": batch.wrong_calls,
        "cached_calls": batch.cached_calls,
        "stopped_by_time": batch.stopped_by_time or warm.stopped_by_time,
        "wall_s": wall,
        "throughput": ok / wall if wall > 0 else 0.0,
        "p50_s": _percentile(batch.latencies, 50),
        "p90_s": _percentile(batch.latencies, 90),
        "p99_s": _percentile(batch.latencies, 99),
        "max_s": max(batch.latencies, default=None),
        "server_p50_s": _percentile(batch.server_latencies, 50),
        "cpu_s": {n: cpu1[n] - cpu0[n] for n in watch},
        "loadgen_cpu_s": own1 - own0,
        "rss_start": rss0,
        "rss_end": rss1,
        "rss_samples": batch.rss,
        "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
    }


def _local_url(url: str) -> str:
    if urlsplit(url).hostname != "127.0.0.1":
        raise SystemExit(f"--url {url}: the load generator only talks to 127.0.0.1.")
    return url


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks._loadgen", description=__doc__)
    parser.add_argument("--url", type=_local_url, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--requests", type=int, required=True, help="measured requests")
    parser.add_argument("--warmup", type=int, default=0, help="requests sent before measuring")
    parser.add_argument("--time-limit", type=float, required=True, help="seconds, whole run")
    parser.add_argument("--watch", action="append", default=[], help="NAME=PID (repeatable)")
    parser.add_argument("--rss-every", type=int, default=0)
    parser.add_argument("--expect-calls", type=int, default=None, help="usage.calls to check")
    parser.add_argument(
        "--header", action="append", default=[], help="'Name: value' sent with every request"
    )
    parser.add_argument("--vary", default=None, help="MARKER in the body to number per request")
    parser.add_argument("--vary-from", type=int, default=1, help="the first number (--vary)")
    cli = parser.parse_args()
    print(json.dumps(asyncio.run(_main(cli, sys.stdin.buffer.read()))))
