"""An app under test: built through the real factory, served in-process by Starlette's TestClient.

Two projects: the reference app (this repository: the `summarize` pipeline over PDFs and text)
and `tiny`, written to a temporary directory: a JSON-only pipeline `poem` (one LLM step) and a
file pipeline `words` (a small text file, a secret input, no LLM)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from promptdag.service.app import create_app
from promptdag.service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
TRIAGE = REPO / "examples" / "ticket-triage"
TRIAGE_RUNS = "/v1/pipelines/triage/runs"
TICKET = "The app crashes on login since the last update. Please fix it, I cannot work."
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SAMPLE = REPO / "examples" / "the-man-without-a-body.pdf"
SUMMARIZE = "/v1/pipelines/summarize/runs"
POEM = "/v1/pipelines/poem/runs"
WORDS = "/v1/pipelines/words/runs"
TINY_DOC_CAP = 2048
TEXT = (
    "The committee met on Monday to review the budget. It found that spending on roads rose by 12% "
    "because two bridges needed repair. Therefore the committee proposed a new maintenance fund.\n\n"
    "Members disagreed about the size of the fund. Some argued for a small fund, since revenue is falling. "
    "In the end they agreed to revisit the question next year."
)

TINY_CONTRACT = f"""\
[project]
name = "tiny"
version = "0"

[tool.promptdag]
dataflows = ["dataflows"]
prompts = "prompts"

[tool.promptdag.llm_steps.poem]
node = "poem_response"
prompt = "poem_prompt"

[tool.promptdag.pipelines.poem]
description = "A short poem about a topic."
outputs = ["poem", "line_count"]
answer = "poem"

[tool.promptdag.pipelines.poem.inputs]
topic = {{ kind = "string", max_chars = 100, forbidden_chars = "{{}}", description = "The subject." }}
lines = {{ kind = "integer", min = 1, max = 5, default = 3 }}
rhyme = {{ kind = "boolean", default = false }}

[tool.promptdag.pipelines.words]
description = "Counts the words of a text file."
outputs = ["word_count", "doc_label", "unlocked"]
answer = "word_count"
file_input = "doc"

[tool.promptdag.pipelines.words.inputs]
doc = {{ kind = "file", media_types = ["text/plain"], max_bytes = {TINY_DOC_CAP}, filename_input = "doc_name" }}
doc_name = {{ kind = "string", max_chars = 40, default = "" }}
passphrase = {{ kind = "string", max_chars = 100, default = "", secret = true }}
"""

TINY_FILES = {
    "pyproject.toml": TINY_CONTRACT,
    "dataflows/__init__.py": "",
    "prompts/__init__.py": "",
    "dataflows/poem.py": '''\
"""A poem about a topic.

Inputs: poem_prompt (the prompt pack), llm. Outputs: poem_response, poem, line_count.
"""

from promptdag.llm.client import LLM, LLMCall


async def poem_response(poem_prompt: str, llm: LLM) -> LLMCall:
    """The LLM call that writes the poem."""
    return await llm.complete(poem_prompt)


def poem(poem_response: LLMCall) -> str:
    """The poem's text."""
    return poem_response.text.strip()


def line_count(poem: str) -> int:
    """How many lines the poem has."""
    return len(poem.splitlines())
''',
    "dataflows/words.py": '''\
"""Words of a text file. Inputs: doc, doc_name, passphrase. Outputs: word_count, doc_label,
unlocked."""


def word_count(doc: bytes) -> int:
    """How many words the file holds."""
    return len(doc.decode("utf-8", "replace").split())


def doc_label(doc_name: str) -> str:
    """The file's name, or a placeholder."""
    return doc_name or "(unnamed)"


def unlocked(passphrase: str) -> bool:
    """Whether the secret passphrase was right."""
    return passphrase == "open sesame"
''',
    "prompts/default.py": '''\
"""The poem prompts."""

from hamilton.function_modifiers import config


@config.when(poem_prompt_version="v1")
def poem_prompt__v1(topic: str, lines: int, rhyme: bool) -> str:
    """Asks for a poem in prose."""
    kind = "rhyming lines" if rhyme else "lines"
    return (
        f"Write {lines} {kind} about {topic}.\\n\\nContent:\\n"
        f"The {topic} rises early. The {topic} is bright and calm. Birds sing to the {topic}."
    )


@config.when(poem_prompt_version="v2")
def poem_prompt__v2(topic: str, lines: int, rhyme: bool) -> str:
    """Asks for a poem as bullet points."""
    return (
        f"Write {lines} bullet points about {topic}.\\n\\nContent:\\n"
        f"The {topic} rises early. The {topic} is bright and calm. Birds sing to the {topic}."
    )
''',
    "prompts/variants.toml": """\
default = "a"

[variants.a]
weight = 0.5
config = { prompt_pack = "default", poem_prompt_version = "v1" }

[variants.b]
weight = 0.5
config = { prompt_pack = "default", poem_prompt_version = "v2" }
""",
}


def write_tiny_project(root: Path, files: dict[str, str] | None = None) -> Path:
    """The tiny project at `root` (with `files` replacing or adding some of its files)."""
    for rel, text in {**TINY_FILES, **(files or {})}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def tiny_project(tmp_path) -> Path:
    return write_tiny_project(tmp_path / "tiny")


@pytest.fixture
def make_client(tmp_path, monkeypatch) -> Iterator[Callable[..., TestClient]]:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(REPO)
    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        settings = ServiceSettings(**{"api_keys": frozenset({KEY}), "traces": True, **overrides})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()


@pytest.fixture
def app_modules_restored() -> Iterator[None]:
    """Serving examples/ticket-triage in this process replaces the reference app's `dataflows`
    and `prompts` modules in sys.modules; put the originals back afterwards."""
    tops = ("dataflows", "prompts")
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in tops}
    yield
    for name in [k for k in sys.modules if k.split(".")[0] in tops]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.fixture
def tiny(make_client, tiny_project) -> TestClient:
    """The tiny project's app."""
    return make_client(project=tiny_project)


def assert_problem(response, status: int, words: str, slug: str | None = None) -> dict:
    """An RFC 9457 problem response with `status`, `words` in its detail (and type `slug`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    assert words in body["detail"], body["detail"]
    assert slug is None or body["type"].endswith("/" + slug), body["type"]
    assert "Traceback" not in response.text
    return body


def _schemas(node: Any, at: str = "") -> list[tuple[str, Any]]:
    """Every schema in an OpenAPI document (under `schema`, `items`, `properties`, ...)."""
    found: list[tuple[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{at}/{key}"
            if key in ("schema", "items", "additionalProperties") and isinstance(value, dict):
                found.append((here, value))
            if key in ("properties", "schemas") and isinstance(value, dict):
                found += [(f"{here}/{k}", v) for k, v in value.items()]
            if key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
                found += [(f"{here}/{i}", v) for i, v in enumerate(value)]
            found += _schemas(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _schemas(value, f"{at}/{i}")
    return found


def empty_schemas(doc: dict[str, Any]) -> list[str]:
    """Where an OpenAPI document has a `{}` schema (one that says nothing)."""
    return [at for at, schema in _schemas(doc) if schema == {}]
