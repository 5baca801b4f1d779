"""The Ray engine on one local Ray instance for the module (starting Ray costs seconds): the
same results as the local engine, and a rate limit that holds across Ray workers."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from promptdag.batch import Limits
from promptdag.batch.rows import TIMING_COLUMNS
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.batch.conftest import RunBatch
from tests.promptdag.batch.projects import GREET_MODEL, TICKETS, write_jsonl, write_text_docs

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    """A local Ray instance with 2 CPUs, token authentication from the environment (nothing
    written to ~/.ray), its session files in a temporary directory removed afterwards."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.pop("RAY_AUTH_MODE", None)  # ray.init turns token mode on (and reads the token)
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    temp = tempfile.mkdtemp(prefix="pdray", dir="/tmp")  # short: Ray's socket paths are capped
    try:
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(temp, ignore_errors=True)


def _results(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]


def test_local_and_ray_engines_give_the_same_results(
    ray_instance: None,
    triage_project: Path,
    summarizer_project: Path,
    tmp_path: Path,
    batch: RunBatch,
) -> None:
    tickets = write_jsonl(
        tmp_path / "tickets.jsonl",
        [
            {"id": f"t{i:02d}", "ticket": f"{TICKETS[i % len(TICKETS)]} (case {i})"}
            for i in range(20)
        ],
    )
    docs = write_text_docs(tmp_path / "docs", 20)
    for project, source, count in ((triage_project, tickets, 20), (summarizer_project, docs, 20)):
        local, local_rows = batch(project, source, workers=2)
        on_ray, ray_rows = batch(project, source, engine="ray", workers=2)
        assert local.ok == on_ray.ok == count and local.exit_code == on_ray.exit_code == 0
        assert _results(local_rows) == _results(ray_rows)
        assert local.build_id == on_ray.build_id
        assert len({r["worker"] for r in ray_rows}) == 2  # both Ray workers ran items
        assert {r["worker"] for r in ray_rows}.isdisjoint({r["worker"] for r in local_rows})


def test_the_rate_limit_holds_across_ray_workers(
    ray_instance: None,
    greet_project: Path,
    tmp_path: Path,
    batch: RunBatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")  # passed to the workers by the engine
    rpm, per_second, items = 300, 5, 24
    names = write_jsonl(tmp_path / "names.jsonl", [{"name": f"n{i:02d}"} for i in range(items)])
    with OpenAIServer() as server:  # answers at once: only the limiter paces the requests
        config = {
            "llm_backend": "openai",
            "llm_model": GREET_MODEL,
            "llm_base_url": server.base_url,
        }
        summary, rows = batch(
            greet_project,
            names,
            engine="ray",
            workers=2,
            in_flight=16,
            overrides=config,
            limits=Limits(rpm=rpm),
        )
    assert summary.ok == items and len({r["worker"] for r in rows}) == 2
    times = sorted(h["time"] for h in server.history)
    assert len(times) == items
    # In any one-second window at most the rate, plus one for the window's edge, one for the
    # limiter's tolerance (a burst of two at the start) and one because a request may go up to
    # that tolerance after its slot; without the limiter all 24 come at once.
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= per_second + 3, [round(t - times[0], 2) for t in times]
    assert times[-1] - times[0] >= (items - 2) / per_second - 0.3
