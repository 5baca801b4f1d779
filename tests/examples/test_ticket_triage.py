"""examples/ticket-triage is exactly what `promptdag init` writes (so the two cannot drift), and
it runs where it stands: there, the nearest [tool.promptdag] contract is the example's own."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from promptdag.scaffold import scaffold
from tests.e2e.conftest import promptdag_bin
from tests.examples.scaffolded import TICKET, project_env, run

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "ticket-triage"
REGENERATE = (
    "edit promptdag/templates/init/ (what `promptdag init` ships), then regenerate the example: "
    "rm -rf examples/ticket-triage && promptdag init examples/ticket-triage"
)


def ignored_names(root: Path) -> set[str]:
    """The names the project's own .gitignore ignores (what running it leaves behind)."""
    lines = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    return {line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")}


def project_files(root: Path) -> dict[str, bytes]:
    ignored = ignored_names(root)
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not ignored & set(p.relative_to(root).parts)
    }


def test_the_example_is_exactly_what_init_writes(tmp_path: Path) -> None:
    fresh = project_files(scaffold(tmp_path / "ticket-triage").root)
    example = project_files(EXAMPLE)
    assert sorted(example) == sorted(fresh), REGENERATE
    differ = [name for name in fresh if fresh[name] != example[name]]
    assert not differ, f"{', '.join(differ)} differ: {REGENERATE}"


@pytest.mark.timeout(600)
def test_the_example_runs_tests_and_is_locked_where_it_stands(tmp_path: Path) -> None:
    env = project_env(tmp_path)
    cli = promptdag_bin()
    out = run([*cli, "run", "triage", "--input", f"ticket={TICKET}", "--json"], EXAMPLE, env)
    result = json.loads(out.stdout)
    assert result["pipeline"] == "triage" and result["answer"]["category"] == "bug"
    assert result["provenance"]["prompts"]["triage_prompt"]["defined_at"].startswith(
        "prompts/default.py:"
    )
    run([*cli, "prompts", "lock", "--check"], EXAMPLE, env)
    run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], EXAMPLE, env)
