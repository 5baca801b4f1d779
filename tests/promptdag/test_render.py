"""Diagrams of the DAG: every node, prompt versions that stand out, marked inputs and outputs,
byte-identical text across processes, images through `dot`, and clear errors without it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import promptdag.render as render_module
from promptdag.errors import RenderError
from promptdag.factory import build_pipeline
from promptdag.pipeline import Pipeline
from promptdag.project import load_project
from promptdag.render import FORMATS, render, to_dot, to_mermaid
from promptdag.variants import load_variants

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ("chunk_summary_prompt", "final_summary_prompt")
REQUEST_INPUTS = (
    "content_type", "llm", "pdf_bytes", "pdf_password", "source_name", "text", "user_query",
)  # fmt: skip
SUMMARY_OUTPUTS = (
    "chunk_summaries", "document_notes", "document_pages", "document_tokens", "summary",
)  # fmt: skip
VARIANTS = sorted(load_variants(load_project(ROOT).variants_path).variants)
_DUMP = (
    "import sys\n"
    "from promptdag.factory import build_pipeline\n"
    "from promptdag.render import to_dot, to_mermaid\n"
    "p = build_pipeline()\n"
    "sys.stdout.buffer.write(to_dot(p).encode() + b'\\0' + to_mermaid(p).encode())\n"
)


def _close(pipeline: Pipeline) -> None:
    asyncio.run(pipeline.aclose())


@pytest.fixture(scope="module")
def baseline() -> Iterator[Pipeline]:
    pipeline = build_pipeline()
    yield pipeline
    _close(pipeline)


@pytest.fixture(scope="module")
def concise() -> Iterator[Pipeline]:
    pipeline = build_pipeline(variant="concise")
    yield pipeline
    _close(pipeline)


def _dot_node(dot: str, name: str) -> str:
    """The DOT statement that declares node `name`."""
    (line,) = [ln for ln in dot.splitlines() if ln.startswith(f'  "{name}" [')]
    return line


def _fill(line: str) -> str:
    match = re.search(r'fillcolor="(#[0-9a-f]{6})"', line)
    assert match, line
    return match.group(1)


def _mermaid_class_of(mermaid: str, name: str) -> str:
    for line in mermaid.splitlines():
        if line.startswith("  class ") and f"n_{name}" in line.split()[1].split(","):
            return line.split()[2]
    raise AssertionError(f"no class for {name}")


def test_public_surface_is_sorted_and_lists_the_formats() -> None:
    assert render_module.__all__ == sorted(render_module.__all__)
    assert FORMATS == ("svg", "png", "dot", "mermaid")


def test_dot_and_mermaid_contain_every_graph_node(baseline: Pipeline) -> None:
    dot, mermaid = to_dot(baseline), to_mermaid(baseline)
    names = [n.name for n in baseline.graph.nodes]
    assert {"pdf_bytes", "chunk_tokens", "summary", *PROMPTS} <= set(names)
    for name in names:
        assert _dot_node(dot, name)
        assert f'  n_{name}["{name}<br/>' in mermaid


def test_edges_run_from_dependency_to_node_optional_ones_dashed(baseline: Pipeline) -> None:
    dot, mermaid = to_dot(baseline), to_mermaid(baseline)
    assert '  "text_chunks" -> "chunk_summary_requests";\n' in dot
    assert '  "content_type" -> "chunk_summary_prompt" [style=dashed];\n' in dot
    assert "  n_text_chunks --> n_chunk_summary_requests\n" in mermaid
    assert "  n_user_query -.-> n_final_summary_prompt\n" in mermaid


def test_prompt_nodes_carry_their_version_and_a_fill_no_other_node_has(baseline: Pipeline) -> None:
    dot, mermaid = to_dot(baseline), to_mermaid(baseline)
    prompt_fills = {_fill(_dot_node(dot, name)) for name in PROMPTS}
    other = {_fill(_dot_node(dot, n.name)) for n in baseline.graph.nodes if n.name not in PROMPTS}
    assert len(prompt_fills) == 1 and not prompt_fills & other
    assert all("penwidth=3" in _dot_node(dot, name) for name in PROMPTS)
    assert "@v2 (default)" in _dot_node(dot, "chunk_summary_prompt")
    assert "@v1 (default)" in _dot_node(dot, "final_summary_prompt")
    assert '["chunk_summary_prompt<br/>str<br/>@v2 (default)"]' in mermaid
    assert {_mermaid_class_of(mermaid, name) for name in PROMPTS} == {"prompt"}
    assert "prompt" not in {
        _mermaid_class_of(mermaid, "summary"),
        _mermaid_class_of(mermaid, "llm"),
    }


def test_changing_a_prompt_version_changes_its_label_and_the_title(concise: Pipeline) -> None:
    override = build_pipeline(overrides={"chunk_summary_prompt_version": "v1"})
    try:
        dot_v1 = to_dot(override)
    finally:
        _close(override)
    assert "@v1 (default)" in _dot_node(dot_v1, "chunk_summary_prompt")
    assert "@v2" not in _dot_node(dot_v1, "chunk_summary_prompt")
    dot, mermaid = to_dot(concise), to_mermaid(concise)
    assert "@v3 (default)" in _dot_node(dot, "chunk_summary_prompt")
    assert "@v2 (default)" in _dot_node(dot, "final_summary_prompt")
    title = "promptdag variant concise: chunk_summary_prompt@v3 (default), final_summary_prompt@v2"
    assert title in dot.splitlines()[1]
    assert mermaid.startswith(f'---\ntitle: "{title} (default)"\n---\nflowchart LR\n')


def test_request_inputs_config_values_llm_calls_and_outputs_are_marked(baseline: Pipeline) -> None:
    dot, mermaid = to_dot(baseline), to_mermaid(baseline)
    fills = {kind: _fill(_dot_node(dot, name)) for kind, name in [
        ("input", "pdf_bytes"), ("config", "chunk_tokens"), ("prompt", "chunk_summary_prompt"),
        ("llm", "chunk_summary_responses"), ("step", "text_chunks"), ("output", "summary"),
    ]}  # fmt: skip
    assert len(set(fills.values())) == len(fills)
    for name in REQUEST_INPUTS:
        assert _fill(_dot_node(dot, name)) == fills["input"]
        assert _mermaid_class_of(mermaid, name) == "input"
    for name in ("chunk_tokens", "llm_model", "pdf_max_pages", "llm_backend"):
        assert 'shape="note"' in _dot_node(dot, name)
        assert _mermaid_class_of(mermaid, name) == "config"
    for name in ("chunk_summary_responses", "final_summary_response"):
        assert _mermaid_class_of(mermaid, name) == "llm"
    outputs = [n for n in baseline.graph.nodes if "peripheries=2" in _dot_node(dot, n.name)]
    assert sorted(n.name for n in outputs) == list(SUMMARY_OUTPUTS)
    assert {_mermaid_class_of(mermaid, name) for name in SUMMARY_OUTPUTS} == {"output"}
    assert "subgraph cluster_unread" in dot and "subgraph unread_config" in mermaid
    assert '"__legend__"' in dot and "%% legend: " in mermaid
    assert "classDef prompt " in mermaid


@pytest.mark.parametrize(
    "variant", sorted(load_variants(load_project(ROOT).variants_path).variants)
)
def test_every_variant_renders_with_its_prompt_versions(variant: str) -> None:
    pipeline = build_pipeline(variant=variant)
    try:
        dot, mermaid = to_dot(pipeline), to_mermaid(pipeline)
        for name, chosen in pipeline.prompts.items():
            label = f"@{chosen.version} ({chosen.pack})"
            assert label in _dot_node(dot, name)
            assert f'["{name}<br/>str<br/>{label}"]' in mermaid
    finally:
        _close(pipeline)


def test_text_is_byte_identical_across_processes_and_hash_seeds(baseline: Pipeline) -> None:
    runs = [
        subprocess.run(
            [sys.executable, "-c", _DUMP], cwd=ROOT, capture_output=True, check=True, timeout=90,
            env={**os.environ, "PYTHONHASHSEED": seed, "PROMPTDAG_PROJECT": str(ROOT)},
        ).stdout
        for seed in ("1", "4242")
    ]  # fmt: skip
    assert runs[0] == runs[1]
    assert runs[0] == to_dot(baseline).encode() + b"\0" + to_mermaid(baseline).encode()


def test_render_returns_the_text_formats_as_utf8(baseline: Pipeline) -> None:
    assert render(baseline, "dot") == to_dot(baseline).encode("utf-8")
    assert render(baseline, "mermaid") == to_mermaid(baseline).encode("utf-8")


def test_render_svg_is_an_svg_and_identical_on_every_render(baseline: Pipeline) -> None:
    svg = render(baseline, "svg")
    assert b"<svg" in svg
    assert b"chunk_summary_prompt" in svg and b"@v2 (default)" in svg
    assert render(baseline, "svg") == svg


def test_render_png_is_a_png(baseline: Pipeline) -> None:
    assert render(baseline, "png").startswith(b"\x89PNG\r\n\x1a\n")


def test_render_without_dot_binary_says_how_to_install_it(
    baseline: Pipeline, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert render(baseline, "svg")  # the same process found `dot` a moment ago
    monkeypatch.setenv("PATH", str(tmp_path))  # graphviz looks `dot` up on PATH at call time
    for fmt in ("svg", "png"):
        with pytest.raises(RenderError) as info:
            render(baseline, fmt)
        message = str(info.value)
        assert "apt-get install graphviz" in message and "brew install graphviz" in message
        assert "--format dot" in message and "--format mermaid" in message
        assert info.value.exit_code == 5
    assert render(baseline, "dot") and render(baseline, "mermaid")


def test_render_rejects_an_unknown_format_listing_the_formats(baseline: Pipeline) -> None:
    with pytest.raises(RenderError, match=r"'jpeg'.*svg, png, dot, mermaid"):
        render(baseline, "jpeg")
