"""PDF bytes → text with pypdf, under caps on bytes, pages and time, with typed errors for
every way a real upload goes wrong. Framework code, not nodes: the ingest dataflow runs it in a
worker thread. pypdf's log records are folded into a count plus the first message."""

from __future__ import annotations

import io
import logging
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from pypdf import PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PyPdfError

from promptdag import DocumentError, LimitExceededError, call_in_project, project_root_of

__all__ = [
    "PdfDocument",
    "PdfEncryptedError",
    "PdfError",
    "PdfLimits",
    "PdfNoTextError",
    "extract_pdf",
]


class PdfError(DocumentError):
    """The PDF cannot be turned into text."""


class PdfEncryptedError(PdfError):
    """Encrypted, and no or a wrong password was given."""


class PdfNoTextError(PdfError):
    """No extractable text (a scan?)."""


_PYPDF_LOGGER = logging.getLogger("pypdf")
_collector = threading.local()
# Fewer words than this per page, on pages that carry images, reads as a scan.
_SCAN_WORDS_PER_PAGE = 30
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
)


# Below this many pages a worker process costs more than it saves.
PARALLEL_MIN_PAGES = 40
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True)
class PdfLimits:
    max_bytes: int
    max_pages: int
    max_seconds: float
    workers: int = 1


@dataclass(frozen=True)
class PdfDocument:
    """What extraction produced: the text per page and what went wrong along the way."""

    pages: tuple[str, ...]
    encrypted: bool = False
    pypdf_warnings: int = 0
    first_warning: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return "\n\n".join(p for p in self.pages if p.strip())


class _Fold(logging.Handler):
    """Collects pypdf's records for the extracting thread; other threads' go on to the root."""

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(_collector, "records", None)
        if sink is None:
            logging.getLogger().handle(record)
        else:
            sink.append(record.getMessage())


def _fold_pypdf_logs() -> None:
    if not any(isinstance(h, _Fold) for h in _PYPDF_LOGGER.handlers):
        _PYPDF_LOGGER.addHandler(_Fold())
        _PYPDF_LOGGER.propagate = False


def _check_header(data: bytes, source: str, limits: PdfLimits) -> None:
    if not data:
        raise PdfError("the file is empty (0 bytes). Upload the PDF itself.", source=source)
    if len(data) > limits.max_bytes:
        raise LimitExceededError(
            "PDF size",
            f"{len(data)} bytes",
            f"{limits.max_bytes} bytes",
            "Split the document, or raise pdf_max_bytes in the config.",
        )
    if b"%PDF-" not in data[:1024]:
        head = data[:16].decode("latin-1").encode("unicode_escape").decode()
        raise PdfError(
            f"not a PDF: it starts with {head!r}, not '%PDF-'. Check that you sent the right file.",
            source=source,
        )


def _open(data: bytes, password: str, source: str) -> PdfReader:
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
    except _PARSE_ERRORS as exc:
        raise PdfError(
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
    except _PARSE_ERRORS as exc:
        raise PdfError(
            f"the PDF's page tree is damaged ({type(exc).__name__}: {exc}). Repair it with "
            "'qpdf in.pdf out.pdf' or re-export it, and try again.",
            source=source,
        ) from exc
    if count == 0:
        raise PdfError("the PDF has no pages.", source=source)
    if count > limits.max_pages:
        raise LimitExceededError(
            "page count",
            count,
            limits.max_pages,
            "Split the document, or raise pdf_max_pages in the config.",
        )
    return count


def _page_texts(
    reader: PdfReader, start: int, stop: int, count: int, max_seconds: float
) -> tuple[list[str], list[str]]:
    deadline = time.monotonic() + max_seconds
    texts: list[str] = []
    notes: list[str] = []
    for i in range(start, stop):
        if time.monotonic() > deadline:
            raise LimitExceededError(
                "text extraction time",
                f"over {max_seconds:g} s at page {i + 1} of {count}",
                f"{max_seconds:g} s",
                "Split the document, or raise pdf_max_seconds.",
            )
        try:
            texts.append(reader.pages[i].extract_text() or "")
        except _PARSE_ERRORS as exc:
            texts.append("")
            notes.append(f"page {i + 1}: text could not be extracted ({type(exc).__name__}: {exc})")
    return texts, notes


def _extract_range(
    data: bytes, password: str, start: int, stop: int, count: int, max_seconds: float
) -> tuple[list[str], list[str], list[str]]:
    """Pages [start, stop) in a worker process: texts, notes and pypdf's log records."""
    _fold_pypdf_logs()
    _collector.records = []
    try:
        reader = _open(data, password, "")
        texts, notes = _page_texts(reader, start, stop, count, max_seconds)
        return texts, notes, list(_collector.records)
    finally:
        _collector.records = None


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    """One process pool per process, made on first use (forkserver: safe beside threads).
    As with any multiprocessing, a script that sets pdf_workers > 1 needs the
    `if __name__ == "__main__":` guard; the promptdag CLI and service have it."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers != workers:  # type: ignore[attr-defined]
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            _pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        return _pool


def _parallel_texts(
    data: bytes, password: str, count: int, limits: PdfLimits
) -> tuple[list[str], list[str], list[str]] | None:
    """Contiguous page ranges across worker processes; None if the pool broke (then the caller
    extracts in-process, so a crashed worker never loses the request)."""
    global _pool
    step = -(-count // limits.workers)
    ranges = [(a, min(a + step, count)) for a in range(0, count, step)]
    try:
        pool = _worker_pool(limits.workers)
        root, ref = project_root_of(sys.modules[__name__]), f"{__name__}:_extract_range"
        futures = [
            pool.submit(call_in_project, root, ref, data, password, a, b, count, limits.max_seconds)
            for a, b in ranges
        ]
        parts = [f.result() for f in futures]
    except BrokenProcessPool:
        with _pool_lock:
            _pool = None
        return None
    texts = [t for part in parts for t in part[0]]
    notes = [n for part in parts for n in part[1]]
    records = [r for part in parts for r in part[2]]
    return texts, notes, records


def _looks_scanned(reader: PdfReader, texts: list[str]) -> bool:
    words = sum(len(t.split()) for t in texts)
    if words >= _SCAN_WORDS_PER_PAGE * len(texts):
        return False
    try:
        return any(len(page.images) > 0 for page in reader.pages)
    except _PARSE_ERRORS:
        return False


def extract_pdf(
    data: bytes, *, password: str = "", source: str = "", limits: PdfLimits
) -> PdfDocument:
    """Extract the text of every page, or raise a typed error saying what is wrong."""
    _check_header(data, source, limits)
    _fold_pypdf_logs()
    _collector.records = []
    try:
        reader = _open(data, password, source)
        count = _page_count(reader, source, limits)
        parallel = None
        if limits.workers > 1 and count >= PARALLEL_MIN_PAGES:
            parallel = _parallel_texts(data, password, count, limits)
        if parallel is None:
            texts, notes = _page_texts(reader, 0, count, count, limits.max_seconds)
        else:
            texts, notes, extra = parallel
            _collector.records.extend(extra)
        if not any(t.strip() for t in texts) or _looks_scanned(reader, texts):
            raise PdfNoTextError(
                f"no extractable text in {count} page(s): the PDF may be scanned images. "
                "Run OCR on it first (for example 'ocrmypdf in.pdf out.pdf').",
                source=source,
            )
        records: list[str] = _collector.records
    finally:
        _collector.records = None
    return PdfDocument(
        pages=tuple(texts),
        encrypted=reader.is_encrypted,
        pypdf_warnings=len(records),
        first_warning=records[0] if records else "",
        notes=tuple(notes),
    )
