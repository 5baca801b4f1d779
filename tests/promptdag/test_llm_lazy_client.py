"""The SDK client is made when the first call needs it: building, checking and rendering a
pipeline never import the openai SDK (about a second of imports, on every gate and CLI run),
and an LLM and all its node views share the one client."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from promptdag.llm.client import LLM, LLMSettings, make_openai_client

REPO = Path(__file__).resolve().parents[2]
OFFLINE = LLMSettings("offline", "offline-extractive", 0.0, 64, 5.0, 0, 2)


def test_building_a_pipeline_does_not_import_the_sdk_and_running_it_does(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys; from promptdag.factory import build_pipeline; "
        "p = build_pipeline(overrides={'llm_cache': 'off'}); "
        "print('openai' in sys.modules); "
        "r = asyncio.run(p.run({'text': 'A cat sat on the mat. The mat was red.'})); "
        "print('openai' in sys.modules, r.usage['calls'] > 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PROMPTDAG_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]


def test_the_client_is_made_once_on_first_use_and_shared_by_every_view() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(make_openai_client(OFFLINE, ""))
        return made[-1]

    llm = LLM(OFFLINE, make)  # type: ignore[arg-type]
    views = [llm.bound(f"node_{i}", "step", ["node_0", "node_1"]) for i in range(2)]
    assert made == []
    assert views[1].client is views[0].client is llm.client
    assert len(made) == 1
    asyncio.run(llm.aclose())


def test_closing_an_llm_that_never_called_makes_no_client() -> None:
    made: list[int] = []
    llm = LLM(OFFLINE, lambda: made.append(1))  # type: ignore[arg-type, return-value]
    asyncio.run(llm.aclose())
    assert made == []
