"""PDF extraction under caps, with typed errors and folded pypdf warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dataflows._pdf import PdfEncryptedError, PdfError, PdfLimits, PdfNoTextError, extract_pdf
from promptdag.errors import LimitExceededError
from tests.pdfs import cyclic_page_tree_pdf, misaligned_xref_pdf, text_pdf

PDFS = Path(__file__).resolve().parents[3] / "shared" / "pdfs"
LIMITS = PdfLimits(max_bytes=10_000_000, max_pages=1_000, max_seconds=60)


def shared(name: str) -> bytes:
    path = PDFS / name
    if not path.exists():
        pytest.skip(f"{path} missing")
    return path.read_bytes()


def test_text_pdf_is_extracted() -> None:
    doc = extract_pdf(text_pdf("Alpha beta gamma delta."), limits=LIMITS)
    assert doc.text == "Alpha beta gamma delta."
    assert doc.pypdf_warnings == 0


def test_byte_cap_names_the_cap_and_the_setting() -> None:
    with pytest.raises(
        LimitExceededError, match=r"PDF size is \d+ bytes, over the cap of 100 bytes.*pdf_max_bytes"
    ):
        extract_pdf(text_pdf(), limits=PdfLimits(100, 10, 10))


def test_page_cap() -> None:
    with pytest.raises(LimitExceededError) as err:
        extract_pdf(shared("pdflatex-4-pages.pdf"), limits=PdfLimits(10**8, 3, 10))
    assert err.value.cap == 3 and err.value.value == 4


def test_time_cap_stops_between_pages() -> None:
    with pytest.raises(LimitExceededError, match="text extraction time"):
        extract_pdf(shared("the-war-of-the-worlds.pdf"), limits=PdfLimits(10**8, 1000, 0.05))


def test_encrypted_without_password() -> None:
    with pytest.raises(PdfEncryptedError, match=r"encrypted\. Pass its password"):
        extract_pdf(shared("libreoffice-writer-password.pdf"), limits=LIMITS)


def test_encrypted_with_password() -> None:
    doc = extract_pdf(
        shared("libreoffice-writer-password.pdf"), password="openpassword", limits=LIMITS
    )
    assert "Lorem ipsum" in doc.text and doc.encrypted


def test_scanned_page_is_no_text_error() -> None:
    with pytest.raises(PdfNoTextError, match="may be scanned"):
        extract_pdf(shared("base64image.pdf"), limits=LIMITS)


def test_short_text_without_images_is_not_mistaken_for_a_scan() -> None:
    assert "habibi" in extract_pdf(shared("habibi.pdf"), limits=LIMITS).text


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_pypdf_warnings_are_folded_into_a_count() -> None:
    root = _Recorder()
    logging.getLogger().addHandler(root)
    try:
        doc = extract_pdf(misaligned_xref_pdf(), limits=LIMITS)
    finally:
        logging.getLogger().removeHandler(root)
    assert doc.text.startswith("Hello world.")
    assert doc.pypdf_warnings >= 3 and "wrong pointing object" in doc.first_warning
    assert not [r for r in root.records if r.name.startswith("pypdf")]  # none reach the root logger


def test_cyclic_page_tree_is_a_pdf_error() -> None:
    with pytest.raises(PdfError, match="page tree is damaged"):
        extract_pdf(cyclic_page_tree_pdf(), limits=LIMITS)


def test_worker_processes_give_the_same_text_as_one_process() -> None:
    data = shared("the-war-of-the-worlds.pdf")
    one = extract_pdf(data, limits=LIMITS)
    two = extract_pdf(data, limits=PdfLimits(10**8, 1000, 60, workers=2))
    assert one.pages == two.pages


def test_worker_process_errors_arrive_typed() -> None:
    with pytest.raises(LimitExceededError, match="text extraction time"):
        extract_pdf(
            shared("the-war-of-the-worlds.pdf"), limits=PdfLimits(10**8, 1000, 0.01, workers=2)
        )
