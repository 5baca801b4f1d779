"""examples/library_app.py, the README's "Use it as a library": it serves, it traces each run
with the pipeline's variant and fingerprint, and it leaves no process-wide side effects."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[2]
STORY = (
    "The professor sent his body over the telegraph wire. Only his head arrived in Boston, "
    "because the battery failed halfway. He asked for a chair and sat down, surprised."
)


def test_the_library_example_answers_and_traces_like_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path))
    from examples.library_app import app

    path_before, factory_before = list(sys.path), asyncio.get_event_loop_policy()
    filters_before = {n: list(logging.getLogger(n).filters) for n in ("hamilton.async_driver",)}
    with TestClient(app) as client:
        ok = client.post("/summaries", json={"text": STORY, "user_query": "Why the head?"})
        bad = client.post("/summaries", json={"text": "   "})
    assert ok.status_code == 200, ok.text
    assert "head" in ok.json()["summary"].lower()
    assert bad.status_code == 422 and "input text is empty" in bad.json()["detail"]
    rows = (
        sqlite3.connect(tmp_path / "traces.sqlite")
        .execute(
            "SELECT source, variant, pipeline, fingerprint_id, status FROM requests ORDER BY started_ts"
        )
        .fetchall()
    )
    # The blank text is refused by the input checks, before the DAG runs: traced as an error.
    assert rows == [
        ("library", "baseline", "summarize", ok.json()["fingerprint"], "ok"),
        ("library", "baseline", "summarize", None, "error"),
    ]
    assert sys.path == path_before and asyncio.get_event_loop_policy() is factory_before
    assert {n: list(logging.getLogger(n).filters) for n in filters_before} == filters_before
