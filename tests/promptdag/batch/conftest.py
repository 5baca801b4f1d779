"""Fixtures of the batch tests: the projects (outside any git checkout), a private data
directory, and a helper that runs a batch in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from promptdag.batch import BatchOptions, BatchSummary, run_batch
from tests.promptdag.batch.projects import copy_summarizer, copy_triage, write_greet_project

RunBatch = Callable[..., tuple[BatchSummary, list[dict[str, Any]]]]


@pytest.fixture(autouse=True)
def _private_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data dir of the test's own (response cache off anyway), no real OpenAI settings."""
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTDAG_PROJECT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def greet_project(tmp_path: Path) -> Path:
    return write_greet_project(tmp_path / "greet")


@pytest.fixture(scope="module")
def triage_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_triage(tmp_path_factory.mktemp("projects") / "triage")


@pytest.fixture(scope="module")
def summarizer_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_summarizer(tmp_path_factory.mktemp("projects") / "summarizer")


@pytest.fixture
def batch(tmp_path: Path) -> RunBatch:
    """`batch(project, source, **options)` runs a batch (response cache off) in this process
    and returns its summary and the output's rows."""

    def run(project: Path, source: str | Path, **options: Any) -> tuple[BatchSummary, list]:
        out = options.pop("out", tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.parquet")
        overrides = {"llm_cache": "off", **options.pop("overrides", {})}
        opts = BatchOptions(
            source=str(source),
            out=Path(out),
            project=project,
            overrides=overrides,
            progress=False,
            **options,
        )
        summary = asyncio.run(run_batch(opts))
        rows = pq.read_table(opts.out).to_pylist() if opts.out.exists() else []
        return summary, rows

    return run
