"""The gate, the lock and the prompt commands on a project that is not the summarizer: two
pipelines (`reply`, the default, and `headline`) of one LLM call each, whose answers are nodes
named `reply` and `headline`, each with its own eval suite. Nothing in promptdag knows these names:
selection follows the contract's pipelines and the DAG."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promptdag.gate.repo import GateRun, ThrowawayRepo

# A test here runs promptdag in subprocesses, and its fixtures build and gate whole repositories
# (several gate runs each): the default per-test timeout is too short on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

QUESTION = "The council voted to build a bridge. It will cost 14 million dollars. It opens in 2027."
CONTRACT = """\
[project]
name = "greeter"
version = "0.0.0"

[tool.promptdag]
suites = "evals"
default_pipeline = "reply"

[tool.promptdag.llm_steps.reply]
node = "reply_response"
prompt = "reply_prompt"

[tool.promptdag.llm_steps.headline]
node = "headline_response"
prompt = "headline_prompt"

[tool.promptdag.pipelines.reply]
outputs = ["reply"]
answer = "reply"
inputs = { question = { kind = "text", max_chars = 10000 } }

[tool.promptdag.pipelines.headline]
outputs = ["headline"]
answer = "headline"
inputs = { question = { kind = "text", max_chars = 10000 } }
"""
DATAFLOW = '''\
"""A reply and a headline for a question: one LLM call each.

Inputs: question, reply_prompt and headline_prompt (the prompt pack), llm.
Outputs: reply, headline.
"""

from __future__ import annotations

from promptdag.llm.client import LLM, LLMCall


async def reply_response(reply_prompt: str, llm: LLM) -> LLMCall:
    """The LLM call that writes the reply."""
    return await llm.complete(reply_prompt)


def reply(reply_response: LLMCall) -> str:
    """The reply text."""
    return reply_response.text.strip()


async def headline_response(headline_prompt: str, llm: LLM) -> LLMCall:
    """The LLM call that writes the headline."""
    return await llm.complete(headline_prompt)


def headline(headline_response: LLMCall) -> str:
    """The headline text."""
    return headline_response.text.strip()
'''
PROMPTS = '''\
"""The default pack: a reply prompt in two versions, a headline prompt."""

from __future__ import annotations

from hamilton.function_modifiers import config


@config.when(reply_prompt_version="v1")
def reply_prompt__v1(question: str) -> str:
    """A one-sentence reply."""
    return f"Answer in one sentence.\\n\\nContent:\\n{question}"


@config.when(reply_prompt_version="v2")
def reply_prompt__v2(question: str) -> str:
    """A two-sentence reply."""
    return f"Answer in two sentences.\\n\\nContent:\\n{question}"


@config.when(headline_prompt_version="v1")
def headline_prompt__v1(question: str) -> str:
    """A one-sentence headline."""
    return f"Write a headline in one sentence.\\n\\nContent:\\n{question}"
'''
VARIANTS = """\
default = "baseline"

[variants.baseline]
weight = 1.0
config = { reply_prompt_version = "v1", headline_prompt_version = "v1" }

[prices]
"offline-extractive" = [0.0, 0.0]
"""
FIXTURES = f"""\
[fixtures.bridge]
question = "{QUESTION}"
"""


def suite(case: str, pipeline: str | None = None) -> str:
    """A suite of one case on the question: it names the bridge in at most one sentence."""
    head = f'pipeline = "{pipeline}"\n' if pipeline else ""
    return f"""\
[suite]
{head}threshold = 1.0

[[cases]]
id = "{case}"
inputs = {{ question = "{QUESTION}" }}

[[cases.assert]]
type = "contains"
values = ["bridge"]

[[cases.assert]]
type = "length"
unit = "sentences"
max = 1

[[cases.assert]]
type = "not-contains"
values = ["Content:"]
"""


FILES = {
    "pyproject.toml": CONTRACT,
    "dataflows/__init__.py": "",
    "dataflows/answers.py": DATAFLOW,
    "prompts/__init__.py": "",
    "prompts/default.py": PROMPTS,
    "prompts/variants.toml": VARIANTS,
    "prompts/fixtures.toml": FIXTURES,
    "evals/replies.toml": suite("bridge"),  # the default pipeline: reply
    "evals/headlines.toml": suite("bridge-headline", pipeline="headline"),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayRepo:
    return ThrowawayRepo.from_files(tmp_path_factory.mktemp("tiny-template"), FILES)


@pytest.fixture(scope="module")
def switched(template: ThrowawayRepo, tmp_path_factory: pytest.TempPathFactory) -> GateRun:
    """The default variant switched to reply_prompt@v2 (two sentences), re-locked, gated."""
    repo = template.clone(tmp_path_factory.mktemp("tiny-switched"))
    repo.replace(
        "prompts/variants.toml", 'reply_prompt_version = "v1"', 'reply_prompt_version = "v2"'
    )
    repo.lock()
    repo.commit("reply_prompt v1 → v2 in the default variant")
    return repo.gate("HEAD~1")


def test_the_gate_selects_the_cases_of_the_pipeline_downstream_of_the_change(
    switched: GateRun,
) -> None:
    replies, headlines = switched.suite("replies"), switched.suite("headlines")
    assert replies["selected"] == {
        "bridge": "reply is downstream of reply_prompt (version v1 → v2)"
    }
    assert replies["skipped"] == {}
    assert headlines["selected"] == {} and headlines["result"] is None
    assert headlines["skipped"] == {
        "bridge-headline": "nothing changed upstream of headline in variant baseline"
    }
    assert "- selected `bridge`: reply is downstream of reply_prompt (version v1 → v2)" in (
        switched.markdown
    )


def test_the_gate_evaluates_the_selected_case_on_the_answer_against_the_base_bar(
    switched: GateRun,
) -> None:
    result = switched.suite("replies")["result"]
    (case,) = result["cases"]
    assert case["case"] == "bridge" and case["status"] == "fail"
    assert case["output"].startswith("The council voted to build a bridge.")  # the answer, `reply`
    statuses = [(a["type"], a["status"]) for a in case["assertions"]]
    assert statuses == [("contains", "pass"), ("length", "fail"), ("not-contains", "pass")]
    assert switched.returncode == 1
    assert switched.report["reasons"] == [
        "eval suite replies: pass rate 0% is below its threshold 100% (read from HEAD~1)"
    ]
    assert switched.report["lock"]["ok"] and switched.llm_calls_made() == 1


def test_an_unchanged_project_passes_and_all_runs_every_suite(
    template: ThrowawayRepo, tmp_path: Path
) -> None:
    repo = template.clone(tmp_path)
    run = repo.gate("HEAD", "--all")
    assert run.returncode == 0, run.stderr
    assert run.suite("replies")["selected"] == {"bridge": "--all"}
    assert run.suite("headlines")["selected"] == {"bridge-headline": "--all"}
    assert run.suite("headlines")["result"]["passed"]


def test_prompt_commands_read_the_projects_fixtures(
    template: ThrowawayRepo, tmp_path: Path
) -> None:
    repo = template.clone(tmp_path)
    shown = repo.promptdag("prompts", "show", "reply_prompt", "--version", "v2")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"Answer in two sentences.\n\nContent:\n{QUESTION}\n"
    assert "on fixture bridge" in shown.stderr
    missing = repo.promptdag("prompts", "show", "reply_prompt", "--fixture", "nope")
    assert missing.returncode == 2
    assert "fixture 'nope' is not in prompts/fixtures.toml. Defined: bridge." in missing.stderr
    check = repo.promptdag("prompts", "lock", "--check")
    assert check.returncode == 0, check.stderr
