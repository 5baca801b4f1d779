"""Projects the batch tests run on, written to temporary directories outside any git checkout
(so the build fingerprint stays the same while other files of this repository change):

- `greet`: a tiny pipeline (one LLM step; `name` → `greeting`, `shout`, `letters`) whose node
  raises ValueError for the name "boom" and kills its process for "die", with a price for
  the fake server's model;
- a copy of examples/ticket-triage (`triage`: one structured LLM call per ticket);
- a copy of the reference app (`summarize`: dataflows, prompts, contract).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

__all__ = [
    "GREET_MODEL",
    "REPO",
    "TICKETS",
    "copy_summarizer",
    "copy_triage",
    "write_greet_project",
    "write_jsonl",
    "write_text_docs",
]

REPO = Path(__file__).resolve().parents[3]
GREET_MODEL = "gpt-test"

PYPROJECT = """
[project]
name = "greet"
version = "0"

[tool.promptdag]
dataflows = ["bflows"]
prompts = "bpacks"
variants = "bpacks/variants.toml"
fixtures = "bpacks/fixtures.toml"

[tool.promptdag.llm_steps.greeting]
node = "greeting_response"
prompt = "greeting_prompt"

[tool.promptdag.pipelines.greet]
outputs = ["greeting", "shout", "letters"]
answer = "greeting"

[tool.promptdag.pipelines.greet.inputs]
name = { kind = "string", max_chars = 200, description = "Who to greet." }
"""

FLOW = '''
"""Greets a person. Inputs: name. Outputs: greeting, shout, letters."""

import os

from promptdag import LLM, LLMCall


def checked_name(name: str) -> str:
    """The name; "boom" fails, as a bug in a node would; "die" kills the process."""
    if name == "boom":
        raise ValueError("the name boom breaks this node")
    if name == "die":
        os._exit(3)
    return name


async def greeting_response(greeting_prompt: str, llm: LLM) -> LLMCall:
    """The model's greeting."""
    return await llm.complete(greeting_prompt)


def greeting(greeting_response: LLMCall) -> str:
    """The greeting."""
    return greeting_response.text.strip()


def shout(greeting: str) -> str:
    """The greeting in capitals."""
    return greeting.upper()


def letters(checked_name: str) -> int:
    """How many letters the name has."""
    return sum(c.isalpha() for c in checked_name)
'''

PACK = '''
"""Greeting prompts."""

from hamilton.function_modifiers import config


@config.when(greeting_prompt_version="v1")
def greeting_prompt__v1(name: str) -> str:
    """Plain."""
    return f"Say hello to {name}. Hello {name}, welcome to the team."
'''

VARIANTS = f"""
default = "plain"

[variants.plain]
weight = 1.0
config = {{ greeting_prompt_version = "v1" }}

[prices]
"{GREET_MODEL}" = [1000.0, 2000.0]
"offline-extractive" = [0.0, 0.0]
"""

FIXTURES = """
[fixtures.ada]
name = "Ada"
"""

TICKETS = [
    "The app crashes on login since the last update. Please fix it, I cannot work.",
    "I was charged twice for my subscription this month, please refund one payment.",
    "How do I change the email address of my account?",
    "The export button does nothing when I click it in Firefox.",
    "Please delete my account and all the data you hold about me.",
    "The invoice shows the wrong VAT number for our company.",
    "Our whole team is locked out since this morning, this is urgent!",
]

DOCS = [
    "The committee met on Monday to review the budget. It found that spending on roads rose "
    "by 12% because two bridges needed repair. Therefore the committee proposed a new fund.",
    "Members disagreed about the size of the fund. Some argued for a small fund, since revenue "
    "is falling. In the end they agreed to revisit the question next year.",
    "The new library opened in March. It holds forty thousand books and a small cafe. "
    "Visitors praised the reading rooms, but parking remains a problem.",
    "Rainfall this spring was twice the average. Farmers planted late, and the wheat harvest "
    "is expected to be smaller. Prices for bread may rise in the autumn.",
]


def write_greet_project(root: Path) -> Path:
    (root / "bflows").mkdir(parents=True)
    (root / "bpacks").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (root / "bflows" / "__init__.py").write_text("", encoding="utf-8")
    (root / "bflows" / "hello.py").write_text(FLOW, encoding="utf-8")
    (root / "bpacks" / "__init__.py").write_text("", encoding="utf-8")
    (root / "bpacks" / "default.py").write_text(PACK, encoding="utf-8")
    (root / "bpacks" / "variants.toml").write_text(VARIANTS, encoding="utf-8")
    (root / "bpacks" / "fixtures.toml").write_text(FIXTURES, encoding="utf-8")
    return root


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {n for n in names if n in {"__pycache__", ".promptdag", ".pytest_cache"}}


def copy_triage(root: Path) -> Path:
    shutil.copytree(REPO / "examples" / "ticket-triage", root, ignore=_ignore)
    return root


def copy_summarizer(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("dataflows", "prompts"):
        shutil.copytree(REPO / name, root / name, ignore=_ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_text_docs(folder: Path, count: int) -> Path:
    """`count` small .txt documents, each different."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = f"{DOCS[i % len(DOCS)]} This is report number {i}."
        (folder / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return folder
