"""Fixtures for the eval-suite tests: an isolated data dir, no API key, the repo as cwd, and
helpers that write suite files and build case outputs."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from promptdag.evals import CaseOutput, SuiteResult, load_suite, run_suite

REPO = Path(__file__).resolve().parents[3]
NEWS = (
    "The city council of Riverton voted 7 to 2 on Tuesday to build a new bridge over the Mill "
    "River. The bridge will cost 14 million dollars and is expected to open in 2027. Supporters "
    "said the old bridge, built in 1952, failed its last safety inspection."
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.chdir(REPO)


def output(text: str = "", **kwargs: Any) -> CaseOutput:
    """A case output as the runner would build it."""
    return CaseOutput(case_id=kwargs.pop("case_id", "c"), variant="baseline", text=text, **kwargs)


@pytest.fixture
def suite_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write a suite TOML (dedented) to a temp file and return its path."""

    def write(body: str, name: str = "tmp.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(body), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def real_suite_result(tmp_path_factory: pytest.TempPathFactory) -> SuiteResult:
    """The real `summarize` suite, run once offline (no judge, no cache); the environment is
    restored before the result is handed out."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTDAG_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        mp.delenv("OPENAI_API_KEY", raising=False)
        mp.chdir(REPO)
        return asyncio.run(run_suite(load_suite("summarize"), overrides={"llm_cache": "off"}))
