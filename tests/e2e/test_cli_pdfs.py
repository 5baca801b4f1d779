"""`promptdag run summarize` end to end on every real PDF in ../shared/pdfs and on broken inputs:
each gives a summary or one clear error line with a non-zero exit; never a traceback or a hang."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.pdfs import cyclic_page_tree_pdf, text_pdf

pytestmark = pytest.mark.slow

SUMMARIZABLE = [
    "crazyones-pdfa.pdf",
    "google-doc-document.pdf",
    "habibi.pdf",
    "mistitled_outlines_example.pdf",
    "multicolumn.pdf",
    "pdflatex-4-pages.pdf",
    "the-man-without-a-body.pdf",
    "the-war-of-the-worlds.pdf",
]
FAILING = {
    "base64image.pdf": "no extractable text",
    "libreoffice-writer-password.pdf": "encrypted",
    "unreadablemetadata.pdf": "damaged",
}


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w{4,}", text.lower()))


def assert_clean_failure(proc, expected: str, code: int = 3) -> None:
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert expected in lines[0]


def test_every_shared_pdf_is_covered(shared_pdfs: Path) -> None:
    assert {p.name for p in shared_pdfs.glob("*.pdf")} == set(SUMMARIZABLE) | set(FAILING)


@pytest.mark.parametrize("name", SUMMARIZABLE)
def test_run_summarize_real_pdf_gives_an_extractive_summary(
    cli, shared_pdfs: Path, name: str
) -> None:
    proc = cli("run", "summarize", str(shared_pdfs / name), "--json", timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"].strip()
    assert result["model"] == "offline-extractive"
    assert result["usage"]["calls"] == len(result["outputs"]["chunk_summaries"]) + 1
    assert result["usage"]["input_tokens"] > 0 and result["usage"]["output_tokens"] > 0
    from pypdf import PdfReader

    source = " ".join(p.extract_text() or "" for p in PdfReader(shared_pdfs / name).pages)
    assert _words(result["answer"]) & _words(source), "summary shares no words with the document"


@pytest.mark.parametrize(("name", "expected"), sorted(FAILING.items()))
def test_unsummarizable_real_pdf_gives_one_clear_error(
    cli, shared_pdfs: Path, name: str, expected: str
) -> None:
    assert_clean_failure(cli("run", "summarize", str(shared_pdfs / name)), expected)


def test_encrypted_pdf_with_password_is_summarized(cli, shared_pdfs: Path) -> None:
    proc = cli(
        "run",
        "summarize",
        str(shared_pdfs / "libreoffice-writer-password.pdf"),
        "--input",
        "pdf_password=openpassword",
    )
    assert proc.returncode == 0, proc.stderr
    assert "Lorem" in proc.stdout or "ipsum" in proc.stdout


def test_encrypted_pdf_with_wrong_password_says_so(cli, shared_pdfs: Path) -> None:
    proc = cli(
        "run",
        "summarize",
        str(shared_pdfs / "libreoffice-writer-password.pdf"),
        "--input",
        "pdf_password=nope",
    )
    assert_clean_failure(proc, "password is wrong")


def test_missing_file(cli, tmp_path: Path) -> None:
    assert_clean_failure(cli("run", "summarize", str(tmp_path / "nope.pdf")), "no such file")


def test_empty_file(cli, tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    assert_clean_failure(cli("run", "summarize", str(path)), "empty")


def test_truncated_pdf(cli, tmp_path: Path) -> None:
    data = text_pdf()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(data[: len(data) // 2])
    assert_clean_failure(cli("run", "summarize", str(path)), "damaged or truncated")


def test_non_pdf_with_pdf_name(cli, tmp_path: Path) -> None:
    path = tmp_path / "photo.pdf"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert_clean_failure(cli("run", "summarize", str(path)), "not a PDF")


def test_cyclic_page_tree(cli, tmp_path: Path) -> None:
    path = tmp_path / "cyclic.pdf"
    path.write_bytes(cyclic_page_tree_pdf())
    assert_clean_failure(cli("run", "summarize", str(path), timeout=30), "page tree is damaged")


def test_page_cap_is_enforced(cli, shared_pdfs: Path) -> None:
    proc = cli(
        "run", "summarize", str(shared_pdfs / "pdflatex-4-pages.pdf"), "-c", "pdf_max_pages=2"
    )
    assert_clean_failure(proc, "page count is 4, over the cap of 2")


def test_handmade_pdf_is_summarized(cli, tmp_path: Path) -> None:
    path = tmp_path / "hello.pdf"
    path.write_bytes(text_pdf())
    proc = cli("run", "summarize", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "small test document" in proc.stdout


def test_pypdf_warnings_become_one_note_line(cli, tmp_path: Path) -> None:
    from tests.pdfs import misaligned_xref_pdf

    path = tmp_path / "warns.pdf"
    path.write_bytes(misaligned_xref_pdf())
    proc = cli("run", "summarize", str(path), "-c", "pdf_backend=pypdf")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "pypdf reported" in line]
    assert len(notes) == 1 and "wrong pointing object" in notes[0]
    assert "Ignoring wrong pointing object" not in proc.stderr.replace(notes[0], "")
