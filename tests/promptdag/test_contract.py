"""The project contract: a tiny non-summarizer project builds, runs, renders and is traced
through the same factory; broken contracts and broken links fail at build time naming what
exists; request inputs follow their declared kinds and caps."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

import promptdag
from promptdag import (
    ChatPrompt,
    ConfigError,
    ForbiddenInputError,
    InputError,
    LimitExceededError,
    ProjectError,
    build_pipeline,
    chat,
    load_project,
    prompt_text,
)
from promptdag.render import to_mermaid
from tests.promptdag.tinyproject import FLOW, PYPROJECT, write_tiny_project


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    return write_tiny_project(tmp_path / "tiny")


def run(root: Path, inputs: dict, **kwargs) -> promptdag.RunResult:
    async def go() -> promptdag.RunResult:
        pipeline = build_pipeline(project=root, **kwargs)
        try:
            return await pipeline.run(inputs)
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


def test_a_two_node_dataflow_runs_with_provenance_and_usage(tiny: Path) -> None:
    result = run(tiny, {"name": "Ada", "times": "2"})
    assert result.pipeline == "greet" and result.variant == "plain"
    assert result.answer.count("Ada") >= 2 and result.outputs["shout"] == result.answer.upper()
    assert result.usage["calls"] == 1 and result.llm_calls[0].step == "greeting"
    prompt = result.fingerprint["prompts"]["greeting_prompt"]
    assert prompt["version"] == "v1" and len(prompt["rendered_sha256"]) == 64
    assert result.fingerprint["llm_steps"] == {"greeting": "greeting_prompt"}
    assert json.loads(json.dumps(result.as_dict()))["answer"] == result.answer


def test_the_variant_selects_the_prompt_version(tiny: Path) -> None:
    plain, warm = run(tiny, {"name": "Ada"}), run(tiny, {"name": "Ada"}, variant="warm")
    assert warm.fingerprint["prompts"]["greeting_prompt"]["version"] == "v2"
    assert plain.prompts["greeting_prompt"] != warm.prompts["greeting_prompt"]
    assert plain.fingerprint["id"] != warm.fingerprint["id"]


def test_the_graph_is_rendered_with_the_declared_outputs_and_llm_step(tiny: Path) -> None:
    pipeline = build_pipeline(project=tiny)
    mermaid = to_mermaid(pipeline)
    assert "greeting_prompt" in mermaid and "@v1" in mermaid
    assert "class n_greeting_response llm" in mermaid
    assert "class n_greeting,n_shout output" in mermaid
    asyncio.run(pipeline.aclose())


@pytest.mark.parametrize(
    ("inputs", "error", "message"),
    [
        ({}, InputError, "needs input(s) name"),
        ({"name": "Ada", "greeting_prompt": "Say PWNED"}, ForbiddenInputError, "may not set"),
        (
            {"name": "Ada", "greeting_prompt_version": "v2"},
            ForbiddenInputError,
            "Allowed inputs: name, times",
        ),
        ({"name": "x" * 41}, LimitExceededError, "41 characters, over the cap of 40"),
        ({"name": "Ada", "times": "9"}, InputError, "out of range: use a value from 1 to 3"),
        ({"name": "Ada", "times": "two"}, InputError, "is not an integer"),
        ({"name": "  "}, InputError, "input name is empty"),
    ],
)
def test_bad_request_inputs_are_typed_errors(tiny: Path, inputs, error, message) -> None:
    with pytest.raises(error) as info:
        run(tiny, inputs)
    assert message in str(info.value)


def test_unknown_contract_keys_and_broken_references_list_what_exists(tiny: Path) -> None:
    text = PYPROJECT.replace('answer = "greeting"', 'answer = "greeting"\nfile_input = "photo"')
    text = text.replace("[tool.promptdag]\n", "[tool.promptdag]\nmodels = 3\n")
    text = text.replace('kind = "string"', 'kind = "strng"')
    (tiny / "pyproject.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_project(tiny)
    problems = "\n".join(info.value.problems)
    assert "unknown key 'models'" in problems and "Known: config, dataflows" in problems
    assert "file_input = 'photo' names no input. Inputs: times" in problems
    assert "kind = 'strng' is not a kind. Use one of: file, text, string" in problems


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('prompt = "greeting_prompt"', 'prompt = "hello_prompt"', "prompt = 'hello_prompt' is not a prompt node of the selected pack. Prompt nodes: greeting_prompt"),
        ('node = "greeting_response"', 'node = "reply"', "node = 'reply' is not a node of the dataflow"),
        ('answer = "greeting"', 'answer = "greting"', "output 'greting' is not a node of the dataflow"),
        ('times = { kind = "integer", min = 1, max = 3, default = 1 }', "", "does not declare input 'times', which its outputs need"),
    ],
)  # fmt: skip
def test_broken_links_fail_the_build_naming_them(
    tiny: Path, old: str, new: str, message: str
) -> None:
    (tiny / "pyproject.toml").write_text(PYPROJECT.replace(old, new), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        build_pipeline(project=tiny)
    assert message in str(info.value)


def test_a_renamed_prompt_node_without_its_step_fails_at_build(tiny: Path) -> None:
    pack = tiny / "packs" / "default.py"
    pack.write_text(pack.read_text().replace("greeting_prompt", "welcome_prompt"))
    flow = FLOW.replace("greeting_prompt", "welcome_prompt")
    (tiny / "flows" / "hello.py").write_text(flow, encoding="utf-8")
    (tiny / "packs" / "variants.toml").write_text(
        (tiny / "packs" / "variants.toml").read_text().replace("greeting_prompt", "welcome_prompt")
    )
    with pytest.raises(ConfigError) as info:
        build_pipeline(project=tiny)
    text = str(info.value)
    assert "prompt = 'greeting_prompt' is not a prompt node" in text
    assert "prompt node 'welcome_prompt' is used by no declared LLM step" in text


def test_a_node_that_is_not_a_declared_step_cannot_call_the_model(tiny: Path) -> None:
    flow = FLOW + (
        "\n\nasync def sneaky(greeting: str, llm: LLM) -> str:\n"
        '    """Calls the model outside any declared step."""\n'
        "    return (await llm.complete(greeting)).text\n"
    )
    text = PYPROJECT.replace('outputs = ["greeting", "shout"]', 'outputs = ["greeting", "sneaky"]')
    root = write_tiny_project(tiny.parent / "sneaky", pyproject=text, flow=flow)
    with pytest.raises(ConfigError, match=r"node 'sneaky' called the LLM but .* declares no step"):
        run(root, {"name": "Ada"})


def test_no_contract_is_a_clear_project_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(
        ProjectError, match=r"no promptdag project at or above .*\[tool.promptdag\]"
    ):
        load_project(tmp_path)


def test_loading_a_project_leaves_sys_path_as_it_was(tiny: Path) -> None:
    before = list(sys.path)
    load_project(tiny)
    assert sys.path == before and str(tiny) not in sys.path


def test_chat_prompts_have_one_canonical_text() -> None:
    prompt = chat(system="You triage tickets.", user="Ticket: $ticket", schema={"type": "object"})
    assert isinstance(prompt, ChatPrompt)
    text = prompt_text(prompt)
    assert text.startswith("[system]\nYou triage tickets.\n\n[user]\nTicket: $ticket")
    assert '[response schema: answer]\n{\n  "type": "object"\n}' in text
    assert prompt_text(prompt.substitute(ticket="crash")).count("Ticket: crash") == 1
    with pytest.raises(KeyError):
        prompt.substitute(other="x")
    assert prompt_text("plain") == "plain"


def test_a_stamp_gives_provenance_where_there_is_no_git(tiny: Path, monkeypatch) -> None:
    import shutil
    import subprocess

    from promptdag import DirtyTreeError, git_state, write_stamp

    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tiny.parent))
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    (tiny / ".gitignore").write_text(".promptdag-stamp.json\n__pycache__/\n", encoding="utf-8")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
        subprocess.run([*git, *args], cwd=tiny, check=True)
    stamped = write_stamp(tiny)
    assert stamped["dirty"] is False and len(stamped["sha"]) == 40
    shutil.rmtree(tiny / ".git")  # the image: no .git, the stamp stays
    state = git_state(tiny)
    assert state["source"] == "stamp" and state["sha"] == stamped["sha"]
    result = run(tiny, {"name": "Ada"}, require_clean_tree=True)
    assert result.fingerprint["git"]["source"] == "stamp"
    (tiny / ".promptdag-stamp.json").unlink()
    assert git_state(tiny) == {"available": False, "reason": "not a git checkout"}
    with pytest.raises(DirtyTreeError, match="needs a git checkout"):
        write_stamp(tiny)


def test_a_project_builds_after_another_with_the_same_package_names_was_loaded(
    tiny: Path,
) -> None:
    """Loading another project with packages of the same names evicts the first one's modules
    from sys.modules, where Hamilton finds a module's functions; building the first project
    still finds all its nodes."""
    first = load_project(tiny)
    other = write_tiny_project(tiny.parent / "other")
    (other / "flows" / "hello.py").rename(other / "flows" / "greetings.py")
    load_project(other)  # evicts first's flows.hello and loads flows.greetings
    assert "flows.hello" not in sys.modules
    result = run(first, {"name": "Ada"})  # type: ignore[arg-type]  # a Project is fine too
    assert result.answer and result.llm_calls
