"""PDF bytes → text with pypdf, in a worker process that can be killed, under caps on bytes,
pages, time and memory, with typed errors for every way a real upload goes wrong. Helpers, not
nodes: the ingest dataflow awaits `aextract_pdf`.

Every document is read in promptdag's worker pool (`POOL`), never in the caller's process: a page
that draws a form thousands of times is stopped at `max_seconds` by killing its worker, and an
allocation past `max_memory_mb` fails inside the worker, whatever pypdf is doing at the time.
What runs in the worker is `extract_part` (a range of pages, or all of them); a second backend
slots in as another function with its signature. pypdf's log records are folded into a count
plus the first message."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pypdf import PdfReader
from pypdf.errors import (
    DependencyError,
    FileNotDecryptedError,
    LimitReachedError,
    PdfReadError,
    PyPdfError,
)

from promptdag import (
    DocumentError,
    LimitExceededError,
    WorkerError,
    WorkerLimitError,
    WorkerPool,
    worker_pool,
)

__all__ = [
    "PARALLEL_MIN_PAGES",
    "POOL",
    "PdfDocument",
    "PdfEncryptedError",
    "PdfError",
    "PdfLimits",
    "PdfNoTextError",
    "PdfPart",
    "aextract_pdf",
    "extract_part",
    "extract_pdf",
    "page_count",
]


class PdfError(DocumentError):
    """The PDF cannot be turned into text."""


class PdfEncryptedError(PdfError):
    """Encrypted, and no or a wrong password was given."""


class PdfNoTextError(PdfError):
    """No extractable text (a scan, or pages that draw no text)."""


T = TypeVar("T")
POOL = "pdf-extraction"
# With more than one worker, documents of at least this many pages are split across them.
PARALLEL_MIN_PAGES = 40
_PYPDF_LOGGER = logging.getLogger("pypdf")
_collector = threading.local()
# Fewer words than this on a page that carries images reads as a scan.
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


@dataclass(frozen=True)
class PdfLimits:
    max_bytes: int
    max_pages: int
    max_seconds: float
    workers: int = 1
    max_memory_mb: float = 1024.0


@dataclass(frozen=True, repr=False)
class PdfDocument:
    """What extraction produced: the text per page and what went wrong along the way. Its repr
    is one short line (error paths repr node inputs)."""

    pages: tuple[str, ...]
    encrypted: bool = False
    pypdf_warnings: int = 0
    first_warning: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return "\n\n".join(p for p in self.pages if p.strip())

    def __repr__(self) -> str:
        chars = sum(len(p) for p in self.pages)
        return f"<PdfDocument: {len(self.pages)} pages, {chars} characters>"


@dataclass(frozen=True)
class PdfPart:
    """What a worker read from pages [start, stop): texts, per-page problems, pypdf's warnings,
    and which nearly textless pages carry images (the signs of a scan)."""

    count: int
    start: int
    texts: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: int
    first_warning: str
    pictured: tuple[int, ...]
    encrypted: bool


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
        head = bytes(data[:16]).decode("latin-1").encode("unicode_escape").decode()
        raise PdfError(
            f"not a PDF: it starts with {head!r}, not '%PDF-'. Check that you sent the right file.",
            source=source,
        )


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
    except LimitReachedError as exc:
        raise PdfError(f"the PDF cannot be opened: {_cause(exc)}.", source=source) from exc
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
            f"the PDF's page tree is damaged ({_cause(exc)}). Repair it with "
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


def _has_images(reader: PdfReader, i: int) -> bool:
    try:
        return len(reader.pages[i].images) > 0
    except _PARSE_ERRORS:
        return False


def extract_part(
    data: bytes, password: str, source: str, limits: PdfLimits, start: int, stop: int | None
) -> PdfPart:
    """Pages [start, stop) (stop None: to the end), in the calling process. The worker pool runs
    this; in-process it has no time or memory cap (benchmarks and tests call it directly)."""
    _fold_pypdf_logs()
    _collector.records, _collector.count = [], 0
    try:
        reader = _open(data, password, source)
        count = _page_count(reader, source, limits)
        stop = count if stop is None else min(stop, count)
        texts: list[str] = []
        notes: list[str] = []
        pictured: list[int] = []
        for i in range(start, stop):
            try:
                texts.append(reader.pages[i].extract_text() or "")
            except _PARSE_ERRORS as exc:
                texts.append("")
                notes.append(f"page {i + 1}: text could not be extracted ({_cause(exc)})")
            if len(texts[-1].split()) < _SCAN_WORDS_PER_PAGE and _has_images(reader, i):
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
        )
    finally:
        _collector.records = None


def page_count(data: bytes, password: str, source: str, limits: PdfLimits) -> int:
    """The number of pages, after the encryption and page-cap checks (run in a worker)."""
    return _page_count(_open(data, password, source), source, limits)


def _no_text(parts: list[PdfPart], source: str) -> PdfError:
    """The error for a PDF without text, naming the real cause."""
    count = parts[0].count
    notes = [n for p in parts for n in p.notes]
    pictured = [i for p in parts for i in p.pictured]
    if notes and not pictured:
        more = f" (and {len(notes) - 1} more page(s) like it)" if len(notes) > 1 else ""
        return PdfError(
            f"no text could be extracted from its {count} page(s): {notes[0]}{more}. Re-export "
            "the PDF, or repair it with 'qpdf in.pdf out.pdf', and try again.",
            source=source,
        )
    if pictured:
        return PdfNoTextError(
            f"no extractable text: {len(pictured)} of its {count} page(s) hold images and "
            "little or no text, so the PDF may be scanned images. Run OCR on it first (for "
            "example 'ocrmypdf in.pdf out.pdf').",
            source=source,
        )
    return PdfNoTextError(
        f"no extractable text in its {count} page(s), and no images: its pages draw no text "
        "(it may be vector drawings, or text converted to outlines). Export it with text, or "
        "send the text itself.",
        source=source,
    )


def _document(parts: list[PdfPart], source: str) -> PdfDocument:
    parts = sorted(parts, key=lambda p: p.start)
    texts = [t for p in parts for t in p.texts]
    words = sum(len(t.split()) for t in texts)
    pictured = any(p.pictured for p in parts)
    if not any(t.strip() for t in texts) or (
        pictured and words < _SCAN_WORDS_PER_PAGE * len(texts)
    ):
        raise _no_text(parts, source)
    return PdfDocument(
        pages=tuple(texts),
        encrypted=parts[0].encrypted,
        pypdf_warnings=sum(p.warnings for p in parts),
        first_warning=next((p.first_warning for p in parts if p.first_warning), ""),
        notes=tuple(n for p in parts for n in p.notes),
    )


async def _in_worker(
    pool: WorkerPool,
    limits: PdfLimits,
    seconds: float,
    source: str,
    fn: Callable[..., T],
    *args: object,
) -> T:
    """`fn(*args)` in the pool; the caps' errors name the config keys that set them."""
    try:
        result: T = await pool.run(
            fn, *args, timeout=max(seconds, 0.001), memory_mb=limits.max_memory_mb
        )
    except WorkerLimitError as exc:
        if exc.resource == "time":
            raise LimitExceededError(
                "text extraction time",
                f"over {limits.max_seconds:g} s",
                f"{limits.max_seconds:g} s",
                "Reading stopped there (a page may draw the same content thousands of times). "
                "Split the document, or raise pdf_max_seconds in the config.",
            ) from exc
        raise LimitExceededError(
            "text extraction memory",
            f"over {limits.max_memory_mb:g} MB",
            f"{limits.max_memory_mb:g} MB",
            "Reading stopped there. Split the document, or raise pdf_max_memory_mb in the config.",
        ) from exc
    except WorkerError as exc:
        raise PdfError(
            f"the process reading the PDF died on it ({exc}). The file may be damaged or "
            "crafted to crash readers; repair it with 'qpdf in.pdf out.pdf' and try again.",
            source=source,
        ) from exc
    return result


async def aextract_pdf(
    data: bytes, *, password: str = "", source: str = "", limits: PdfLimits
) -> PdfDocument:
    """Extract the text of every page in the worker pool, or raise a typed error saying what is
    wrong. With `limits.workers` > 1, a long document is split across the workers."""
    _check_header(data, source, limits)
    pool = worker_pool(POOL, workers=limits.workers)
    args = (data, password, source, limits)
    if limits.workers == 1:
        part = await _in_worker(
            pool, limits, limits.max_seconds, source, extract_part, *args, 0, None
        )
        return _document([part], source)
    started = time.monotonic()
    count = await _in_worker(pool, limits, limits.max_seconds, source, page_count, *args)
    step = count if count < PARALLEL_MIN_PAGES else -(-count // limits.workers)
    left = limits.max_seconds - (time.monotonic() - started)
    tasks = [
        asyncio.ensure_future(
            _in_worker(pool, limits, left, source, extract_part, *args, a, a + step)
        )
        for a in range(0, count, step)
    ]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:  # one part failed or the caller left: kill the others' workers
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _document(parts, source)


def extract_pdf(
    data: bytes, *, password: str = "", source: str = "", limits: PdfLimits
) -> PdfDocument:
    """`aextract_pdf` for code without an event loop (scripts, benchmarks)."""
    return asyncio.run(aextract_pdf(data, password=password, source=source, limits=limits))
