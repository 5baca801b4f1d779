"""`promptdag serve --workers 2` as real processes: both workers answer (each response names
its worker in X-Promptdag-Worker), /metrics on either adds up both, a SIGKILLed worker loses no
trace of an answered request and the master replaces it, and SIGTERM drains both.

A client is pinned to a worker by its kept-alive connection: `pinned` opens connections until
each worker holds `per_worker` of them, so the tests need no luck to reach both. Network:
127.0.0.1 only; the model is the offline one, or the local fake where a request must be slow.
Timing checks are hang guards (generous: a worker starts in seconds, slower on a busy machine)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.service.conftest import SUMMARIZE, TEXT
from tests.promptdag.service.live import LiveServer, live_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

WORKER = "x-promptdag-worker"
START_S = 120.0  # a worker imports, builds its Drivers and opens the trace store


def pinned(server: LiveServer, per_worker: int, workers: int = 2) -> dict[int, list[httpx.Client]]:
    """Clients whose kept-alive connection is held by each of `workers` worker processes,
    `per_worker` each (waiting for workers still starting)."""
    by_pid: dict[int, list[httpx.Client]] = {}
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        client = server.client()
        pid = int(client.get("/healthz").headers[WORKER])
        if len(by_pid.setdefault(pid, [])) < per_worker:
            by_pid[pid].append(client)
        else:
            client.close()
        full = [p for p, cs in by_pid.items() if len(cs) == per_worker]
        if len(full) >= workers:
            return {p: by_pid[p] for p in full[:workers]}
        time.sleep(0.05 if len(by_pid) >= workers else 0.25)
    raise AssertionError(f"{workers} workers did not both answer within {START_S:g} s: {by_pid}")


def metric(server: LiveServer, client: httpx.Client, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels`, as /metrics shows it."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    return sum(
        s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def trace_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)  # read-write: recovers the write-ahead log of a killed writer
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        orphans = conn.execute(
            "SELECT count(*) FROM llm_calls WHERE request_id NOT IN (SELECT request_id FROM requests)"
        ).fetchone()[0]
        assert orphans == 0
        return {row[0] for row in conn.execute("SELECT request_id FROM requests")}
    finally:
        conn.close()


def is_child(pid: int, parent: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent


def wait_for(predicate: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def exited(pid: int) -> bool:
    """The process is gone, or a zombie nobody reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_two_workers_serve_metrics_add_up_and_a_killed_master_leaves_no_worker(
    tmp_path,
) -> None:
    with live_server(tmp_path, flags=["--workers", "2"], ready_timeout_s=START_S) as server:
        clients = pinned(server, per_worker=1)
        pids = set(clients)
        assert all(is_child(pid, server.process.pid) for pid in pids), pids
        served: dict[int, int] = {}
        for _ in range(3):
            for client in (c for cs in clients.values() for c in cs):
                r = client.post(SUMMARIZE, json={"text": TEXT})
                assert r.status_code == 200, r.text
                served[int(r.headers[WORKER])] = served.get(int(r.headers[WORKER]), 0) + 1
        assert set(served) == pids and sum(served.values()) == 6, served
        for client in (cs[0] for cs in clients.values()):  # each worker reports both
            assert metric(server, client, "promptdag_requests_total", status="ok") == 6
            assert metric(server, client, "promptdag_request_seconds_count") == 6
            assert metric(server, client, "promptdag_responses_total", status="200") >= 6
            assert metric(server, client, "promptdag_in_flight") == 0
        key = b"PROMETHEUS_MULTIPROC_DIR="
        environ = Path(f"/proc/{min(pids)}/environ").read_bytes().split(b"\0")
        (shared,) = [v[len(key) :] for v in environ if v.startswith(key)]
        assert server.kill() == -signal.SIGKILL  # the master only: it cannot stop its workers
        assert wait_for(lambda: all(exited(pid) for pid in pids), 60), server.log()
        shutil.rmtree(os.fsdecode(shared))  # a killed master cannot remove it
    assert "the master" in server.log() and "is gone; draining" in server.log()


@dataclass
class Load:
    """Threads posting runs, each on its own client (a pinned one first; a new one after its
    worker is gone), until `stop`; `acked` holds every request id answered 200, by worker."""

    server: LiveServer
    acked: dict[int, set[str]] = field(default_factory=dict)
    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, client: httpx.Client, n: int) -> None:
        for i in range(10_000):
            if self.stop.is_set():
                return
            try:
                r = client.post(SUMMARIZE, json={"text": TEXT, "subject_id": f"load-{n}-{i}"})
            except httpx.TransportError as exc:  # its worker was killed: connect anew
                with self.lock:
                    self.errors.append(type(exc).__name__)
                client = self.server.client()
                time.sleep(0.05)
                continue
            with self.lock:
                self.statuses.append(r.status_code)
                if r.status_code == 200:
                    pid = int(r.headers[WORKER])
                    self.acked.setdefault(pid, set()).add(r.json()["request_id"])

    def count(self, pid: int) -> int:
        with self.lock:
            return len(self.acked.get(pid, ()))

    @contextlib.contextmanager
    def running(self, clients: list[httpx.Client]) -> Iterator[None]:
        pool = [
            threading.Thread(target=self.run, args=(c, n), daemon=True)
            for n, c in enumerate(clients)
        ]
        for t in pool:
            t.start()
        try:
            yield
        finally:
            self.stop.set()
            for t in pool:
                t.join(timeout=30)
        assert not any(t.is_alive() for t in pool), "a load thread hung"


def test_a_sigkilled_worker_loses_no_answered_trace_and_is_replaced(tmp_path) -> None:
    with live_server(tmp_path, flags=["--workers", "2"], ready_timeout_s=START_S) as server:
        clients = pinned(server, per_worker=3)
        victim, survivor = sorted(clients)
        load = Load(server)
        with load.running([c for cs in clients.values() for c in cs]):
            assert wait_for(lambda: min(load.count(victim), load.count(survivor)) >= 20, 60)
            os.kill(victim, signal.SIGKILL)  # the worker only: the master stays
            assert wait_for(lambda: load.errors, 10), "no request was cut by the kill"
            assert wait_for(lambda: load.count(survivor) >= 50, 60)
        assert server.alive(), server.log()
        assert set(load.statuses) == {200}, load.statuses
        # The master replaces the dead worker: new connections reach a third process.
        (replacement,) = set(pinned(server, per_worker=1)) - {survivor}
        assert replacement != victim and is_child(replacement, server.process.pid)
        client = server.client()
        acked = set().union(*load.acked.values())
        assert metric(server, client, "promptdag_requests_total", status="ok") >= len(acked)
        # the dead worker's in-flight requests are not counted as in flight for ever
        assert wait_for(lambda: metric(server, client, "promptdag_in_flight") == 0, 10)
        code = server.terminate()
    assert code == 0, server.log()
    assert f"worker {victim} died" in server.log()
    missing = acked - trace_ids(server.db_path)
    assert not missing, f"{len(missing)} of {len(acked)} answered requests have no trace"


def test_sigterm_drains_every_worker_and_keeps_their_traces(tmp_path) -> None:
    with OpenAIServer(default_delay_s=1.0) as fake:  # two calls per request: about 2 s each
        env = {"OPENAI_API_KEY": "sk-workers-test-0123456789", "OPENAI_BASE_URL": fake.base_url}
        config = {"llm_backend": "openai", "llm_model": "fake-model", "llm_cache": "off"}
        with live_server(
            tmp_path,
            config=config,
            env=env,
            flags=["--workers", "2", "--graceful-timeout", "30"],
            ready_timeout_s=START_S,
        ) as server:
            clients = pinned(server, per_worker=2)
            results: list[httpx.Response | Exception] = []

            def send(client: httpx.Client, i: int) -> None:
                try:
                    results.append(client.post(SUMMARIZE, json={"text": TEXT}))
                except httpx.HTTPError as exc:
                    results.append(exc)

            threads = [
                threading.Thread(target=send, args=(c, i), daemon=True)
                for i, c in enumerate(c for cs in clients.values() for c in cs)
            ]
            for t in threads:
                t.start()
            assert wait_for(lambda: len(fake.history) >= 4, 60), "requests never reached the model"
            server.process.send_signal(signal.SIGTERM)
            for t in threads:
                t.join(timeout=60)
            code = server.process.wait(timeout=60)
            log = server.log()
    assert [r.status_code if isinstance(r, httpx.Response) else repr(r) for r in results] == [
        200
    ] * 4, log
    responses = [r for r in results if isinstance(r, httpx.Response)]
    assert {int(r.headers[WORKER]) for r in responses} == set(clients), log
    assert code == 0, log
    assert "Traceback" not in log, log
    assert {r.json()["request_id"] for r in responses} <= trace_ids(server.db_path)


def test_readme_serve_commands_use_only_options_serve_has() -> None:
    from typer.main import get_command

    from promptdag.cli import app

    serve = get_command(app).commands["serve"]  # type: ignore[attr-defined]
    known = {o for p in serve.params for o in p.opts}
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    lines = [x.split("#")[0] for x in readme.splitlines() if "promptdag serve " in x]
    used = {w.split("=")[0] for x in lines for w in x.split() if w.startswith("--")}
    assert "--workers" in used and used <= known, used - known
