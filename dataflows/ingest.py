"""Document in → clean text out.

Inputs: pdf_bytes (an upload) or text (a plain-text document), pdf_password and source_name
(optional, for messages).
Config: pdf_backend (the PDF reader: pdfium, or pypdf; the other one tries when it cannot parse
the file), pdf_max_pages, pdf_max_seconds, pdf_max_memory_mb (caps per document, held by killing
the worker process that reads it), pdf_workers (worker processes; long PDFs are split across
them). The upload's size cap is the contract's (`max_bytes` of the pdf_bytes input), checked
before the DAG runs.
Outputs: pdf_limits, pdf_document (normalized pages, the backend that read them, pypdf warnings,
notes; None for text), document_text, document_pages, document_notes (the first names the
backend that read the PDF).
"""

from __future__ import annotations

from dataflows._pdf import PdfDocument, PdfLimits, aextract_pdf
from dataflows._text import clean_text
from promptdag import LargeText

# Request sizes are capped by the contract; this layer needs no cap of its own.
_NO_BYTE_CAP = 2**62


def pdf_limits(
    pdf_max_pages: int, pdf_max_seconds: float, pdf_max_memory_mb: int, pdf_workers: int
) -> PdfLimits:
    """The caps on reading one PDF: pages, seconds and memory, and the worker processes."""
    return PdfLimits(
        _NO_BYTE_CAP,
        pdf_max_pages,
        pdf_max_seconds,
        workers=pdf_workers,
        max_memory_mb=pdf_max_memory_mb,
    )


async def pdf_document(
    pdf_limits: PdfLimits,
    pdf_backend: str,
    pdf_bytes: bytes = b"",
    pdf_password: str = "",
    source_name: str = "",
) -> PdfDocument | None:
    """The PDF's normalized text per page, read by `pdf_backend` in a worker process that is
    killed at the caps (None for a plain-text document)."""
    if not pdf_bytes:
        return None
    return await aextract_pdf(
        pdf_bytes, password=pdf_password, source=source_name, limits=pdf_limits, backend=pdf_backend
    )


def document_text(pdf_document: PdfDocument | None, text: str = "") -> str:
    """The document's text: a PDF's with line wrapping undone and paragraphs kept, or the text."""
    return text if pdf_document is None else LargeText(clean_text(pdf_document.text))


def document_pages(pdf_document: PdfDocument | None) -> int | None:
    """How many pages the PDF has (None for a plain-text document)."""
    return None if pdf_document is None else len(pdf_document.pages)


def document_notes(pdf_document: PdfDocument | None) -> list[str]:
    """What the reader should know about the extraction: the backend that read the PDF (the
    run's record of it), pypdf warnings, unreadable pages."""
    if pdf_document is None:
        return []
    notes = [f"text extracted by {pdf_document.backend}"]
    if pdf_document.removed_lines:
        notes[0] += (
            f"; {pdf_document.removed_lines} running header, footer and page-number line(s) removed"
        )
    if pdf_document.pypdf_warnings:
        notes.append(
            f"pypdf reported {pdf_document.pypdf_warnings} warning(s) while reading the PDF "
            f"(first: {pdf_document.first_warning!r}); the text may be incomplete."
        )
    return [*notes, *pdf_document.notes]
