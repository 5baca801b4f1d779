"""Bounded memory on the way in: text inputs are cleaned and refused when empty (for every
pipeline), huge text is refused before the tokenizer sees it, and a failing run never turns a
large input into a string (Hamilton's error message reprs every input of the failing node)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hamilton.execution import graph_functions

from dataflows import chunking
from dataflows._text import MAX_TOKEN_CHARS
from promptdag.contract import load_contract
from promptdag.errors import DocumentError, InputError, LimitExceededError
from promptdag.factory import build_pipeline
from promptdag.inputs import LargeText, check_inputs
from tests.pdfs import text_pdf

REPO = Path(__file__).resolve().parents[2]
TRIAGE = REPO / "examples" / "ticket-triage"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.chdir(REPO)


def run(inputs: dict[str, Any], **overrides: Any) -> Any:
    async def go() -> Any:
        pipeline = build_pipeline(overrides={"llm_cache": "off", **overrides})
        try:
            return await pipeline.run(inputs)
        finally:
            await pipeline.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("project", "pipeline", "name"), [(REPO, "summarize", "text"), (TRIAGE, "triage", "ticket")]
)
@pytest.mark.parametrize("value", ["\x00" * 1000, "\x00\x01\x1b\x08\x7f\x9b", " \n\t\x00 \r\n"])
def test_text_that_is_empty_after_cleaning_is_refused_in_every_pipeline(
    project: Path, pipeline: str, name: str, value: str
) -> None:
    spec = load_contract(project).pipeline(pipeline)
    with pytest.raises(InputError, match=rf"input {name} is empty"):
        check_inputs(spec, {name: value})


def test_control_characters_are_dropped_from_text_and_whitespace_is_kept() -> None:
    spec = load_contract(TRIAGE).pipeline("triage")
    out = check_inputs(spec, {"ticket": "The app\x00 crashes\x1b on login.\n\tTwice."})
    assert out["ticket"] == "The app crashes on login.\n\tTwice."
    assert isinstance(out["ticket"], LargeText) and repr(out["ticket"]).startswith("<LargeText")


def test_a_nul_only_text_run_stops_before_the_model() -> None:
    with pytest.raises(InputError, match="no text once its control characters are removed"):
        run({"text": "\x00" * 5000})


def test_file_inputs_become_bytes_with_a_short_repr() -> None:
    spec = load_contract(REPO).pipeline("summarize")
    data = b"%PDF-1.4 " + b"x" * 100_000
    out = check_inputs(spec, {"pdf_bytes": data})["pdf_bytes"]
    assert isinstance(out, bytes) and out == data
    assert repr(out) == f"<LargeBytes: {len(data)} bytes>" and str(out) == repr(out)
    assert check_inputs(spec, {"pdf_bytes": out})["pdf_bytes"] is out  # no second copy


class _Counter:
    """A tokenizer stand-in that records how much text it was given."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def count(self, text: str) -> int:
        self.sizes.append(len(text))
        return len(text) // 4


def test_huge_text_is_refused_before_the_tokenizer_sees_it() -> None:
    counter = _Counter()
    text = "word " * (50 * MAX_TOKEN_CHARS // 5 + 1)
    with pytest.raises(LimitExceededError, match=r"document length is .* characters") as err:
        chunking.document_tokens(text, counter, 50)  # type: ignore[arg-type]
    assert counter.sizes == []
    assert err.value.cap == f"{50 * MAX_TOKEN_CHARS} characters (50 tokens of at most 128)"


def test_counting_stops_at_the_cap_and_never_hands_the_tokenizer_a_huge_string() -> None:
    counter = _Counter()
    text = "Some words in a sentence. " * 200_000  # 5.2 M characters
    with pytest.raises(LimitExceededError, match="tokens in its first") as err:
        chunking.document_tokens(text, counter, 100_000)  # type: ignore[arg-type]
    assert err.value.cap == "100000 tokens"
    assert len(counter.sizes) == 1 and counter.sizes[0] <= (1 << 20) + 4096


@pytest.fixture
def error_messages(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """(longest repr of an input, length of the message) for each input string Hamilton builds
    when a node fails: none, as a pipeline's nodes run through `NodeTasks`, which never
    formats a node's inputs (Hamilton's own async adapter logs them all)."""
    seen: list[tuple[int, int]] = []
    original = graph_functions.create_input_string

    def spy(kwargs: dict[str, Any]) -> str:
        out = original(kwargs)
        seen.append((max((len(repr(v)) for v in kwargs.values()), default=0), len(out)))
        return out

    monkeypatch.setattr(graph_functions, "create_input_string", spy)
    yield seen


def test_a_failing_run_never_reprs_its_large_pdf(error_messages: list[tuple[int, int]]) -> None:
    broken = b"%PDF-1.4\n" + b"\x00" * 5_000_000  # 5 MB, no xref, no trailer
    # DocumentError, the framework's class: another test may have loaded the app's modules
    # afresh (examples/ticket-triage has a `dataflows` too), making new PdfError objects.
    with pytest.raises(DocumentError, match="damaged or truncated") as err:
        run({"pdf_bytes": broken, "pdf_password": "secret"})
    assert type(err.value).__name__ == "PdfUnreadableError"
    assert error_messages == [], "a failing node's inputs were formatted"


def test_a_failing_run_never_reprs_its_large_text(error_messages: list[tuple[int, int]]) -> None:
    text = "A sentence about the document, one of many. " * 50_000  # 2.2 M characters
    with pytest.raises(LimitExceededError, match="document length"):
        run({"text": text}, max_document_tokens=1000)
    assert error_messages == [], "a failing node's inputs were formatted"


def test_a_pdf_runs_through_the_pipeline_as_large_bytes() -> None:
    out = run({"pdf_bytes": text_pdf("The machine sent a cat over the wire. It arrived well.")})
    assert out.outputs["document_pages"] == 1 and out.answer


def test_an_empty_file_is_refused_as_empty() -> None:
    spec = load_contract(REPO).pipeline("summarize")
    with pytest.raises(InputError, match=r"input pdf_bytes is an empty file \(0 bytes\)"):
        check_inputs(spec, {"pdf_bytes": b""})


@pytest.mark.parametrize("backend", ["pdfium", "pypdf"])
def test_the_run_notes_name_the_backend_that_read_the_pdf(backend: str) -> None:
    pdf = text_pdf("The machine sent a cat over the wire. It arrived well.")
    out = run({"pdf_bytes": pdf}, pdf_backend=backend)
    assert f"text extracted by {backend}" in out.notes
    assert out.fingerprint["config"]["pdf_backend"] == backend


def test_a_text_document_has_no_extraction_note() -> None:
    out = run({"text": "The machine sent a cat over the wire. It arrived well."})
    assert not [n for n in out.notes if n.startswith("text extracted by")]


def test_chunks_count_special_token_text_as_plain_text_as_the_tokenizer_does() -> None:
    """text_chunks counts with `encode_ordinary` (no scan for special tokens): the same windows
    as the tokenizer's own count and encode, which allow no special token."""
    from dataflows._text import token_windows
    from promptdag.llm.tokens import token_counter

    counter = token_counter("gpt-4o-mini")
    text = " ".join(
        f"Sentence {i} quotes <|endoftext|> and <|fim_prefix|>{'x' * (i % 7)}." for i in range(300)
    )
    ours = chunking.text_chunks(text, 0, counter, 64, 8)
    theirs = token_windows(
        text,
        window=64,
        overlap=8,
        count=counter.count,
        encode=counter.encode,
        decode=counter.encoding.decode,
    )
    assert len(ours) > 10 and ours == theirs
