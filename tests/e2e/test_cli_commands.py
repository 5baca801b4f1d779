"""The `promptdag` commands as a user runs them: help with examples, JSON output, prompt
inspection, rendering, one-line errors, and working on the project that holds the cwd."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO

SAMPLE = "examples/the-man-without-a-body.pdf"


def test_run_summarize_json_carries_summary_usage_and_provenance(cli) -> None:
    proc = cli(
        "run",
        "summarize",
        SAMPLE,
        "--json",
        "--variant",
        "concise",
        "--input",
        "user_query=How did the head travel?",
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert 'Regarding "How did the head travel?"' in out["answer"]
    prov = out["provenance"]
    assert prov["variant"] == "concise"
    assert prov["prompts"]["chunk_summary_prompt"]["version"] == "v3"
    assert prov["git"]["available"] is True and len(prov["git"]["sha"]) == 40
    assert {"python", "hamilton", "openai", "tiktoken", "pypdf"} <= set(prov["libraries"])
    assert len(out["llm_calls"]) == out["usage"]["calls"]


def test_run_summarize_text_output_and_provenance_line(cli) -> None:
    proc = cli("run", "summarize", SAMPLE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    footer = proc.stderr.strip().splitlines()[-1]
    assert (
        "offline-extractive" in footer
        and "chunk_summary_prompt@v2" in footer
        and "fingerprint" in footer
    )
    assert "not an LLM" in proc.stderr


def test_config_flag_selects_a_prompt_version(cli) -> None:
    proc = cli("run", "summarize", SAMPLE, "--json", "--config", "chunk_summary_prompt_version=v1")
    assert (
        json.loads(proc.stdout)["provenance"]["prompts"]["chunk_summary_prompt"]["version"] == "v1"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "chunk_summary_prompt_version=v9"], "Defined: v1, v2, v3."),
        (["--variant", "nope"], "variant 'nope' is not defined"),
        (["--config", "novalue"], "is not KEY=VALUE"),
        (["-c", "prompt_pack=klingon"], "Defined: bullets, default, german."),
    ],
)
def test_bad_build_config_is_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    proc = cli("run", "summarize", SAMPLE, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and message in proc.stderr
    assert proc.stderr.startswith("error: ")


def test_openai_backend_without_a_key_says_what_to_set(cli) -> None:
    proc = cli(
        "run", "summarize", SAMPLE, "-c", "llm_backend=openai", "-c", "llm_model=gpt-4o-mini"
    )
    assert proc.returncode == 2 and "OPENAI_API_KEY" in proc.stderr


def test_openai_backend_against_a_local_server(cli, openai_server) -> None:
    proc = cli(
        "run",
        "summarize",
        SAMPLE,
        "--json",
        "-c",
        "llm_backend=openai",
        "-c",
        "llm_model=gpt-test",
        env={"OPENAI_API_KEY": "sk-local", "OPENAI_BASE_URL": openai_server.base_url},
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["model"] == "gpt-test" and out["answer"].startswith("echo:")
    assert all(r["authorization"] for r in openai_server.history)
    assert "sk-local" not in proc.stdout + proc.stderr


def test_provider_rejection_is_exit_4_naming_backend_and_model(cli, openai_server) -> None:
    openai_server.enqueue(status=401, times=100)
    proc = cli(
        "run",
        "summarize",
        SAMPLE,
        "-c",
        "llm_backend=openai",
        "-c",
        "llm_model=gpt-test",
        "-c",
        "llm_cache=off",
        env={"OPENAI_API_KEY": "sk-wrong", "OPENAI_BASE_URL": openai_server.base_url},
    )
    assert proc.returncode == 4
    assert "openai backend, model gpt-test rejected the request (401)" in proc.stderr
    assert "Check OPENAI_API_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_prompts_list_json_lists_every_version_with_location_and_defaults(cli) -> None:
    proc = cli("prompts", "list", "--json")
    rows = json.loads(proc.stdout)["prompts"]
    refs = {(r["pack"], r["node"], r["version"]) for r in rows}
    assert ("default", "chunk_summary_prompt", "v3") in refs and (
        "german",
        "final_summary_prompt",
        "v1",
    ) in refs
    default = {r["node"]: r["version"] for r in rows if r["default"]}
    assert default == {"chunk_summary_prompt": "v2", "final_summary_prompt": "v1"}
    assert all(r["defined_at"].startswith("prompts/") and ":" in r["defined_at"] for r in rows)


def test_prompts_show_renders_a_version_on_a_fixture(cli) -> None:
    proc = cli("prompts", "show", "chunk_summary_prompt", "--version", "v1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Summarize this text. Extract any key points with reasoning.")
    assert "<document>" in proc.stdout and "$chunk" not in proc.stdout
    proc = cli("prompts", "show", "final_summary_prompt", "--fixture", "story_with_query")
    assert "User query: Why did only the head arrive?" in proc.stdout


def test_prompts_show_unknown_node_lists_prompt_nodes(cli) -> None:
    proc = cli("prompts", "show", "nonsense_prompt")
    assert (
        proc.returncode == 2
        and "Prompt nodes: chunk_summary_prompt, final_summary_prompt" in proc.stderr
    )


def test_render_mermaid_is_deterministic_and_labels_versions(cli) -> None:
    a = cli("render", "--format", "mermaid").stdout
    b = cli("render", "--format", "mermaid").stdout
    assert a == b and "@v2" in a and "flowchart" in a


def test_render_svg_to_file(cli, tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz 'dot' is not installed")
    out = tmp_path / "dag.svg"
    proc = cli("render", "-o", str(out), "--variant", "concise")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().lstrip().startswith(("<?xml", "<svg")) and "@v3" in out.read_text()


def test_render_binary_format_to_stdout_is_refused(cli) -> None:
    proc = cli("render", "--format", "png")
    assert proc.returncode == 3 and "-o dag.png" in proc.stderr


def _project_copy(tmp_path: Path) -> Path:
    root = tmp_path / "myproj"
    for part in ("dataflows", "prompts"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def test_commands_work_on_the_project_that_holds_the_cwd(cli, tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    pack = root / "prompts" / "default.py"
    pack.write_text(
        pack.read_text().replace(
            "Summarize this text. Extract any", "Condense this text. Extract any"
        )
    )
    (root / "notes").mkdir()
    proc = cli("prompts", "show", "chunk_summary_prompt", "--version", "v1", cwd=root / "notes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Condense this text.")
    assert cli("prompts", "show", "chunk_summary_prompt", "--version", "v1").stdout.startswith(
        "Summarize"
    )


def test_outside_a_project_is_a_clear_error(cli, tmp_path: Path) -> None:
    proc = cli("prompts", "list", cwd=tmp_path)
    assert proc.returncode == 2 and "no promptdag project" in proc.stderr


def test_outside_git_the_fingerprint_says_so(cli, tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    (root / "doc.txt").write_text(
        "A short text about cats. Cats sleep a lot. They also purr loudly."
    )
    proc = cli("run", "summarize", "doc.txt", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["provenance"]["git"] == {
        "available": False,
        "reason": "not a git checkout",
    }
    proc = cli("stamp", cwd=root)
    assert proc.returncode == 6 and "needs a git checkout" in proc.stderr
    proc = cli("run", "summarize", "doc.txt", "--require-clean", cwd=root)
    assert proc.returncode == 6 and "needs a git checkout" in proc.stderr


def test_require_clean_refuses_a_dirty_tree(cli, tmp_path: Path) -> None:
    root = _project_copy(tmp_path)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    (root / "doc.txt").write_text("A short text about dogs. Dogs bark at night. They like walks.")
    proc = cli("run", "summarize", "doc.txt", "--require-clean", cwd=root)
    assert proc.returncode == 6 and "uncommitted changes" in proc.stderr
    clean = cli("run", "summarize", "doc.txt", "--json", cwd=root)
    git_state = json.loads(clean.stdout)["provenance"]["git"]
    assert git_state["dirty"] is True and len(git_state["diff_sha256"]) == 64
    subprocess.run([*git, "add", "-A"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "doc"], cwd=root, check=True)
    proc = cli("run", "summarize", "doc.txt", "--require-clean", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["provenance"]["git"]["dirty"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["serve", "--insecure-no-auth", "--weight", "concise=lots"],
            "--weight concise=lots: the weight must be a number",
        ),
        (["serve", "--insecure-no-auth", "--weight", "concise"], "is not KEY=VALUE"),
        (["serve", "--insecure-no-auth", "--variant", "nope"], "variant 'nope' is not defined"),
        (["serve"], "no API keys: set PROMPTDAG_API_KEYS"),
        (
            ["gate", "HEAD", "--cache", "sometimes"],
            "--cache 'sometimes': use off, use or replay-only.",
        ),
        (["eval", "--suite", "nope"], "suite 'nope' is not defined"),
    ],
)
def test_bad_command_options_are_one_line_and_exit_2(cli, args: list[str], message: str) -> None:
    proc = cli(*args, timeout=60, env={"PROMPTDAG_API_KEYS": ""})  # never start a server here
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_an_incomplete_answer_exits_4_unless_allowed(cli, openai_server) -> None:
    openai_server.enqueue(text="Cut off in the mid", finish_reason="length", times=100)
    args = ["run", "summarize", "--input", "text=Cats sleep a lot. They purr.", "--json"]
    config = ["-c", "llm_backend=openai", "-c", "llm_model=gpt-test", "-c", "llm_cache=off"]
    env = {"OPENAI_API_KEY": "sk-local", "OPENAI_BASE_URL": openai_server.base_url}
    refused = cli(*args, *config, env=env)
    assert refused.returncode == 4 and "LLMIncompleteError" not in refused.stdout
    assert "length" in refused.stderr and "Traceback" not in refused.stderr
    flagged = cli(*args, *config, "-c", "llm_allow_incomplete=true", env=env)
    assert flagged.returncode == 4 and json.loads(flagged.stdout)["incomplete"] is True
    assert "--allow-incomplete" in flagged.stderr
    allowed = cli(*args, *config, "-c", "llm_allow_incomplete=true", "--allow-incomplete", env=env)
    assert allowed.returncode == 0 and json.loads(allowed.stdout)["incomplete"] is True
