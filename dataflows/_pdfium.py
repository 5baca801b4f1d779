"""The pdfium backend: pages [start, stop) of a PDF read by PDFium (pypdfium2), with the same
caps and typed errors as the pypdf backend. Runs inside an extraction worker process (native code:
a crash there kills the worker, never the caller); imported only there."""

from __future__ import annotations

import ctypes
import re

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
_ASTRAL = re.compile(r"[\U00010000-\U0010ffff]")


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


def _has_images(doc: pdfium.PdfDocument, i: int) -> bool:
    page = doc[i]
    try:
        return next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE])), None) is not None
    finally:
        page.close()


class _Reader:
    """Pages' text through PDFium's C API, one reused buffer for all pages: what pypdfium2's
    `PdfTextPage.get_text_bounded()` over the page's bounding box returns, without its
    per-page wrapper objects and with one text layout per page instead of two (its first call
    only measures the text)."""

    def __init__(self, doc: pdfium.PdfDocument):
        self.doc = doc
        self.size = 0
        self.buffer = (ctypes.c_ushort * 0)()
        self.rect = pdfium_c.FS_RECTF()

    def text(self, i: int) -> tuple[str, bool]:
        """Page i's text, and whether it is nearly textless but carries images (a scan's sign)."""
        page = pdfium_c.FPDF_LoadPage(self.doc.raw, i)
        if not page:
            raise pdfium.PdfiumError("Failed to load page.")
        try:
            textpage = pdfium_c.FPDFText_LoadPage(page)
            if not textpage:
                raise pdfium.PdfiumError("Failed to load text page.")
            try:
                text = self._bounded(page, textpage)
            finally:
                pdfium_c.FPDFText_ClosePage(textpage)
        finally:
            pdfium_c.FPDF_ClosePage(page)
        # Fewer than SCAN_WORDS_PER_PAGE words, counted no further than that.
        sparse = len(text.split(None, SCAN_WORDS_PER_PAGE - 1)) < SCAN_WORDS_PER_PAGE
        return text, sparse and _has_images(self.doc, i)

    def _bounded(self, page: object, textpage: object) -> str:
        if not pdfium_c.FPDF_GetPageBoundingBox(page, self.rect):
            raise pdfium.PdfiumError("Failed to get page bounding box.")
        r = self.rect
        box = (textpage, r.left, r.top, r.right, r.bottom)
        want = 2 * pdfium_c.FPDFText_CountChars(textpage) + 64
        if want > self.size:
            self.size = max(want, 2 * self.size)
            self.buffer = (ctypes.c_ushort * self.size)()
        # What fits is copied with a NUL after it: n counts the NUL.
        n = pdfium_c.FPDFText_GetBoundedText(*box, self.buffer, self.size)
        if n <= 1:
            return ""
        text = memoryview(self.buffer)[: n - 1].tobytes().decode("utf-16-le", "ignore")
        if n < self.size and not _ASTRAL.search(text):
            return text
        # The buffer was full, or the text has characters beyond U+FFFF: pypdfium2 sizes its
        # buffer by the count of characters, not of UTF-16 units; do exactly as it does.
        count = pdfium_c.FPDFText_GetBoundedText(*box, None, 0)
        if count <= 0:
            return ""
        exact = (ctypes.c_ushort * count)()
        pdfium_c.FPDFText_GetBoundedText(*box, exact, count)
        return bytes(exact).decode("utf-16-le", "ignore")


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
        reader = _Reader(doc)
        for i in range(start, stop):
            try:
                text, scan = reader.text(i)
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
