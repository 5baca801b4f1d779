"""A tiny promptdag project written into a temporary directory: one pipeline (`greet`) of two
nodes, a prompt with two versions and one LLM step. Tests use it to show that the framework
runs any declared dataflow, knowing nothing of the reference app."""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_tiny_project"]

PYPROJECT = """
[project]
name = "tiny"
version = "0"

[tool.promptdag]
dataflows = ["flows"]
prompts = "packs"
variants = "packs/variants.toml"
fixtures = "packs/fixtures.toml"

[tool.promptdag.llm_steps.greeting]
node = "greeting_response"
prompt = "greeting_prompt"

[tool.promptdag.pipelines.greet]
outputs = ["greeting", "shout"]
answer = "greeting"

[tool.promptdag.pipelines.greet.inputs]
name = { kind = "string", max_chars = 40, description = "Who to greet." }
times = { kind = "integer", min = 1, max = 3, default = 1 }
"""

FLOW = '''
"""Greets a person. Inputs: name, times. Outputs: greeting, shout."""

from promptdag import LLM, LLMCall


async def greeting_response(greeting_prompt: str, llm: LLM) -> LLMCall:
    """The model's greeting."""
    return await llm.complete(greeting_prompt)


def greeting(greeting_response: LLMCall, times: int) -> str:
    """The greeting, repeated."""
    return " ".join([greeting_response.text.strip()] * times)


def shout(greeting: str) -> str:
    """The greeting in capitals."""
    return greeting.upper()
'''

PACK = '''
"""Greeting prompts."""

from hamilton.function_modifiers import config


@config.when(greeting_prompt_version="v1")
def greeting_prompt__v1(name: str) -> str:
    """Plain."""
    return f"Say hello to {name}. Hello {name}, welcome to the team."


@config.when(greeting_prompt_version="v2")
def greeting_prompt__v2(name: str) -> str:
    """Warmer."""
    return f"Greet {name} warmly. Dear {name}, we are so glad you are here."
'''

VARIANTS = """
default = "plain"

[variants.plain]
weight = 1.0
config = { greeting_prompt_version = "v1" }

[variants.warm]
weight = 0.0
config = { greeting_prompt_version = "v2" }
"""

FIXTURES = """
[fixtures.ada]
name = "Ada"
"""


def write_tiny_project(root: Path, *, pyproject: str = PYPROJECT, flow: str = FLOW) -> Path:
    """Write the project under `root` (created) and return it."""
    (root / "flows").mkdir(parents=True)
    (root / "packs").mkdir()
    (root / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    (root / "flows" / "__init__.py").write_text("", encoding="utf-8")
    (root / "flows" / "hello.py").write_text(flow, encoding="utf-8")
    (root / "packs" / "__init__.py").write_text("", encoding="utf-8")
    (root / "packs" / "default.py").write_text(PACK, encoding="utf-8")
    (root / "packs" / "variants.toml").write_text(VARIANTS, encoding="utf-8")
    (root / "packs" / "fixtures.toml").write_text(FIXTURES, encoding="utf-8")
    return root
