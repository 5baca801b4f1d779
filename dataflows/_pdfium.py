"""The pdfium backend: pages [start, stop) of a PDF read by PDFium (pypdfium2), with the same
caps and typed errors as the pypdf backend. Runs inside an extraction worker process (native code:
a crash there kills the worker, never the caller); imported only there."""

from __future__ import annotations

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from dataflows._pdf import (
    SCAN_WORDS_PER_PAGE,
    PdfEncryptedError,
    PdfLimits,
    PdfPart,
    PdfUnreadableError,
    check_page_count,
)

__all__ = ["read_part"]

# PDFium's load errors (FPDF_GetLastError) that mean "a password is needed or wrong".
_PASSWORD, _SECURITY = pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY


def _open(data: bytes, password: str, source: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data, password=password or None)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == _PASSWORD:
            if not password:
                raise PdfEncryptedError(
                    "the PDF is encrypted. Pass its password (--password, or the pdf_password "
                    "input).",
                    source=source,
                ) from exc
            raise PdfEncryptedError("the password is wrong for this PDF.", source=source) from exc
        if code == _SECURITY:
            raise PdfEncryptedError(f"cannot decrypt this PDF: {exc}", source=source) from exc
        raise PdfUnreadableError(
            f"the PDF is damaged or truncated ({exc}). Re-export it, or repair it with "
            "'qpdf in.pdf out.pdf', and try again.",
            source=source,
        ) from exc


def _has_images(page: pdfium.PdfPage) -> bool:
    return next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])), None) is not None


def _page_text(doc: pdfium.PdfDocument, i: int) -> tuple[str, bool]:
    """Page i's text, and whether it is nearly textless but carries images (a scan's sign)."""
    page = doc[i]
    try:
        textpage = page.get_textpage()
        try:
            text = textpage.get_text_bounded()
        finally:
            textpage.close()
        pictured = len(text.split()) < SCAN_WORDS_PER_PAGE and _has_images(page)
    finally:
        page.close()
    return text, pictured


def read_part(
    data: bytes, password: str, source: str, limits: PdfLimits, start: int, stop: int | None
) -> PdfPart:
    """Pages [start, stop) (stop None: to the end) with PDFium, in the calling process."""
    doc = _open(data, password, source)
    try:
        count = check_page_count(len(doc), source, limits)
        stop = count if stop is None else min(stop, count)
        texts: list[str] = []
        notes: list[str] = []
        pictured: list[int] = []
        for i in range(start, stop):
            try:
                text, scan = _page_text(doc, i)
            except pdfium.PdfiumError as exc:
                text, scan = "", False
                notes.append(f"page {i + 1}: the page tree is damaged there ({exc})")
            texts.append(text)
            if scan:
                pictured.append(i)
        encrypted = pdfium_c.FPDF_GetSecurityHandlerRevision(doc.raw) != -1
        return PdfPart(
            count=count,
            start=start,
            texts=tuple(texts),
            notes=tuple(notes),
            warnings=0,
            first_warning="",
            pictured=tuple(pictured),
            encrypted=encrypted,
        )
    finally:
        doc.close()
