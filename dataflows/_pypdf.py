"""The pypdf backend: pages [start, stop) of a PDF read by pypdf (pure Python), with pypdf's log
records folded into a count plus the first message. Runs inside an extraction worker process."""

from __future__ import annotations

import io
import logging
import threading
from typing import Any

from pypdf import PdfReader
from pypdf.errors import (
    DependencyError,
    FileNotDecryptedError,
    LimitReachedError,
    PdfReadError,
    PyPdfError,
)

from dataflows._pdf import (
    SCAN_WORDS_PER_PAGE,
    PdfEncryptedError,
    PdfError,
    PdfLimits,
    PdfPart,
    PdfUnreadableError,
    check_page_count,
)

__all__ = ["read_part"]

_PYPDF_LOGGER = logging.getLogger("pypdf")
_collector = threading.local()
_PARSE_ERRORS = (
    PdfReadError,
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    RecursionError,
    AssertionError,
    OSError,
    NotImplementedError,  # an unsupported filter or feature
)


class _Fold(logging.Handler):
    """Counts pypdf's records for the extracting thread (keeping the first); other threads'
    go on to the root logger."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(_collector, "records", None)
        if sink is None:
            logging.getLogger().handle(record)
            return
        if not sink:
            sink.append(record.getMessage())
        _collector.count += 1


def _fold_pypdf_logs() -> None:
    if not any(isinstance(h, _Fold) for h in _PYPDF_LOGGER.handlers):
        _PYPDF_LOGGER.addHandler(_Fold())
        _PYPDF_LOGGER.propagate = False


def _cause(exc: BaseException) -> str:
    if isinstance(exc, LimitReachedError):
        return f"a safety limit of the PDF reader was hit, such as its decompression cap ({exc})"
    return f"{type(exc).__name__}: {exc}"


class _Stream(io.BytesIO):
    """The bytes as a stream pypdf reads without copying them: it copies a stream that has
    `getbuffer` (to learn its size), doubling the memory an upload takes."""

    @property
    def getbuffer(self) -> Any:
        raise AttributeError("getbuffer")


def _open(data: bytes, password: str, source: str) -> PdfReader:
    try:
        reader = PdfReader(_Stream(data), strict=False)
    except LimitReachedError as exc:  # a safety cap, not a damaged file: no other reader tries
        raise PdfError(f"the PDF cannot be opened: {_cause(exc)}.", source=source) from exc
    except _PARSE_ERRORS as exc:
        raise PdfUnreadableError(
            f"the PDF is damaged or truncated ({exc}). Re-export it, or repair it with "
            "'qpdf in.pdf out.pdf', and try again.",
            source=source,
        ) from exc
    if reader.is_encrypted:
        if not password:
            raise PdfEncryptedError(
                "the PDF is encrypted. Pass its password (--password, or the pdf_password input).",
                source=source,
            )
        try:
            ok = reader.decrypt(password)
        except (DependencyError, NotImplementedError) as exc:
            raise PdfEncryptedError(f"cannot decrypt this PDF: {exc}", source=source) from exc
        if not ok:
            raise PdfEncryptedError("the password is wrong for this PDF.", source=source)
    return reader


def _page_count(reader: PdfReader, source: str, limits: PdfLimits) -> int:
    try:
        count = len(reader.pages)
    except FileNotDecryptedError as exc:
        raise PdfEncryptedError("the PDF is encrypted.", source=source) from exc
    except LimitReachedError as exc:
        raise PdfError(
            f"the PDF's page tree cannot be read: {_cause(exc)}.", source=source
        ) from exc
    except _PARSE_ERRORS as exc:
        raise PdfUnreadableError(
            f"the PDF's page tree is damaged ({_cause(exc)}). Repair it with "
            "'qpdf in.pdf out.pdf' or re-export it, and try again.",
            source=source,
        ) from exc
    return check_page_count(count, source, limits)


def _has_images(reader: PdfReader, i: int) -> bool:
    try:
        return len(reader.pages[i].images) > 0
    except _PARSE_ERRORS:
        return False


def read_part(
    data: bytes, password: str, source: str, limits: PdfLimits, start: int, stop: int | None
) -> PdfPart:
    """Pages [start, stop) (stop None: to the end) with pypdf, in the calling process."""
    _fold_pypdf_logs()
    _collector.records, _collector.count = [], 0
    try:
        reader = _open(data, password, source)
        count = _page_count(reader, source, limits)
        stop = count if stop is None else min(stop, count)
        texts: list[str] = []
        notes: list[str] = []
        pictured: list[int] = []
        capped = False
        for i in range(start, stop):
            try:
                texts.append(reader.pages[i].extract_text() or "")
            except _PARSE_ERRORS as exc:
                texts.append("")
                notes.append(f"page {i + 1}: text could not be extracted ({_cause(exc)})")
                capped = capped or isinstance(exc, LimitReachedError)
            if len(texts[-1].split()) < SCAN_WORDS_PER_PAGE and _has_images(reader, i):
                pictured.append(i)
        records: list[str] = _collector.records
        return PdfPart(
            count=count,
            start=start,
            texts=tuple(texts),
            notes=tuple(notes),
            warnings=_collector.count,
            first_warning=records[0] if records else "",
            pictured=tuple(pictured),
            encrypted=reader.is_encrypted,
            capped=capped,
        )
    finally:
        _collector.records = None
