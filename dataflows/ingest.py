"""Document in → clean text out.

Inputs: pdf_bytes (the upload), pdf_password (optional), source_name (optional, for messages).
Config: pdf_max_bytes, pdf_max_pages, pdf_max_seconds, pdf_workers (processes for long PDFs).
Outputs: pdf_document (pages, pypdf warnings, notes), document_text.
A plain-text request sets `document_text` through the driver factory's runner instead.
"""

from __future__ import annotations

import asyncio

from dataflows._pdf import PdfDocument, PdfLimits, extract_pdf
from dataflows._text import clean_text


async def pdf_document(
    pdf_bytes: bytes,
    pdf_max_bytes: int,
    pdf_max_pages: int,
    pdf_max_seconds: float,
    pdf_workers: int,
    pdf_password: str = "",
    source_name: str = "",
) -> PdfDocument:
    """The PDF's text per page, extracted by pypdf in a worker thread under the caps."""
    limits = PdfLimits(pdf_max_bytes, pdf_max_pages, pdf_max_seconds, workers=pdf_workers)
    return await asyncio.to_thread(
        extract_pdf, pdf_bytes, password=pdf_password, source=source_name, limits=limits
    )


def document_text(pdf_document: PdfDocument) -> str:
    """The document's text with PDF line wrapping undone and paragraphs kept."""
    return clean_text(pdf_document.text)
