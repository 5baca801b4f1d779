"""The rendered text of every prompt version of every pack on every fixture, compared with a
committed snapshot: a reviewer sees any change to what the model is sent as a text diff.
Refresh after an intended change: PROMPTDAG_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/prompts"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from promptdag.catalog import discover_prompts, load_fixtures, version_key
from promptdag.factory import build_pipeline
from promptdag.pipeline import render_prompts
from promptdag.project import load_project

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
PROJECT = load_project(REPO)
CATALOG = discover_prompts(PROJECT)
FIXTURES = load_fixtures(PROJECT)
CASES = [
    (pack, node, version, fixture)
    for pack, nodes in CATALOG.packs.items()
    for node in sorted(nodes)
    for version in CATALOG.versions(pack, node)
    for fixture in FIXTURES
]


def render(pack: str, node: str, version: str, fixture: str) -> str:
    others = {version_key(n): CATALOG.versions(pack, n)[0] for n in CATALOG.nodes(pack)}
    overrides = {**others, "prompt_pack": pack, version_key(node): version}

    async def go() -> str:
        pipeline = build_pipeline(project=PROJECT, overrides=overrides)
        try:
            return (await render_prompts(pipeline, FIXTURES[fixture]))[node]
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path))


def test_there_is_something_to_snapshot() -> None:
    assert len(FIXTURES) >= 2 and len(CASES) >= 2 * 9


@pytest.mark.parametrize(("pack", "node", "version", "fixture"), CASES, ids=lambda v: str(v))
def test_rendered_prompt_matches_snapshot(pack: str, node: str, version: str, fixture: str) -> None:
    text = render(pack, node, version, fixture)
    path = SNAPSHOTS / pack / f"{node}@{version}.{fixture}.txt"
    if os.environ.get("PROMPTDAG_UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), (
        f"no snapshot {path.relative_to(REPO)}: run PROMPTDAG_UPDATE_SNAPSHOTS=1 pytest tests/prompts"
    )
    assert text == path.read_text(encoding="utf-8")


def test_no_stale_snapshots() -> None:
    expected = {SNAPSHOTS / p / f"{n}@{v}.{f}.txt" for p, n, v, f in CASES}
    assert set(SNAPSHOTS.rglob("*.txt")) <= expected


def test_chunk_prompts_delimit_the_document() -> None:
    for pack, node, version, fixture in CASES:
        if node == "chunk_summary_prompt":
            text = render(pack, node, version, fixture)
            assert "<document>\n" in text and text.rstrip().endswith("</document>")


def test_final_prompts_delimit_the_key_points_and_carry_the_query() -> None:
    for pack, node, version, _ in CASES:
        if node == "final_summary_prompt":
            text = render(pack, node, version, "story_with_query")
            assert "<key_points>" in text and "</key_points>" in text
            assert "Why did only the head arrive?" in text
