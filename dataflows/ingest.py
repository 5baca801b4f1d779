"""Document in → clean text out.

Inputs: pdf_bytes (an upload) or text (a plain-text document), pdf_password and source_name
(optional, for messages).
Config: pdf_max_pages, pdf_max_seconds, pdf_workers (processes for long PDFs). The upload's size
cap is the contract's (`max_bytes` of the pdf_bytes input), checked before the DAG runs.
Outputs: pdf_document (pages, pypdf warnings, notes; None for text), document_text,
document_pages, document_notes.
"""

from __future__ import annotations

import asyncio

from dataflows._pdf import PdfDocument, PdfLimits, extract_pdf
from dataflows._text import clean_text

# Request sizes are capped by the contract; this layer needs no cap of its own.
_NO_BYTE_CAP = 2**62


async def pdf_document(
    pdf_max_pages: int,
    pdf_max_seconds: float,
    pdf_workers: int,
    pdf_bytes: bytes = b"",
    pdf_password: str = "",
    source_name: str = "",
) -> PdfDocument | None:
    """The PDF's text per page, extracted by pypdf in a worker thread under the caps (None for a
    plain-text document)."""
    if not pdf_bytes:
        return None
    limits = PdfLimits(_NO_BYTE_CAP, pdf_max_pages, pdf_max_seconds, workers=pdf_workers)
    return await asyncio.to_thread(
        extract_pdf, pdf_bytes, password=pdf_password, source=source_name, limits=limits
    )


def document_text(pdf_document: PdfDocument | None, text: str = "") -> str:
    """The document's text: a PDF's with line wrapping undone and paragraphs kept, or the text."""
    return text if pdf_document is None else clean_text(pdf_document.text)


def document_pages(pdf_document: PdfDocument | None) -> int | None:
    """How many pages the PDF has (None for a plain-text document)."""
    return None if pdf_document is None else len(pdf_document.pages)


def document_notes(pdf_document: PdfDocument | None) -> list[str]:
    """What the reader should know about the extraction (pypdf warnings, unreadable pages)."""
    if pdf_document is None:
        return []
    notes = []
    if pdf_document.pypdf_warnings:
        notes.append(
            f"pypdf reported {pdf_document.pypdf_warnings} warning(s) while reading the PDF "
            f"(first: {pdf_document.first_warning!r}); the text may be incomplete."
        )
    return [*notes, *pdf_document.notes]
