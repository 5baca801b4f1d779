"""PDF bytes → normalized text per page, in a worker process that can be killed, under caps on
bytes, pages, time and memory, with typed errors for every way a real upload goes wrong. Helpers,
not nodes: the ingest dataflow awaits `aextract_pdf`.

Two backends read the pages: `pdfium` (PDFium's native code through pypdfium2; the default,
fast, and better text) and `pypdf` (pure Python). The one asked for reads first; when it cannot
parse the file (`PdfUnreadableError`: damaged, truncated, a page tree it cannot walk) or finds no
text in it (`PdfNoTextError`: the two decode fonts differently), the other one tries within the
time left, and a document note says so; when both fail, the first one's error is raised. The
password, the caps (pages, time, memory, pypdf's decompression limit) and a crashed worker are
final: another reader would fail the same way, or cost the same again.

Every document is read in promptdag's worker pool (`POOL`), never in the caller's process: a page
that draws a form thousands of times is stopped at `max_seconds` by killing its worker, an
allocation past `max_memory_mb` fails inside the worker, and a crash in native code kills only
the worker, whatever the reader is doing at the time. A document mostly in a right-to-left script
is read by pypdf, which keeps the reading order PDFium reverses. What runs in the worker is `read_document`
(read, then normalize: dataflows/_normalize.py) or, for a document split across workers,
`extract_part` (a range of pages) with the normalization after the parts are joined."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from dataflows._normalize import normalize_pages
from promptdag import (
    DocumentError,
    LimitExceededError,
    WorkerError,
    WorkerLimitError,
    WorkerPool,
    worker_pool,
)

__all__ = [
    "BACKENDS",
    "PARALLEL_MIN_PAGES",
    "POOL",
    "SCAN_WORDS_PER_PAGE",
    "Backend",
    "PdfDocument",
    "PdfEncryptedError",
    "PdfError",
    "PdfLimits",
    "PdfNoTextError",
    "PdfPart",
    "PdfReaderCrashError",
    "PdfUnreadableError",
    "aextract_pdf",
    "check_page_count",
    "extract_part",
    "extract_pdf",
    "page_count",
    "read_document",
]


class PdfError(DocumentError):
    """The PDF cannot be turned into text."""


class PdfEncryptedError(PdfError):
    """Encrypted, and no or a wrong password was given."""


class PdfNoTextError(PdfError):
    """No extractable text (a scan, or pages that draw no text)."""


class PdfUnreadableError(PdfError):
    """This backend cannot parse the file (damaged, truncated); the other backend may."""


class PdfReaderCrashError(PdfError):
    """The worker process reading the PDF died (a crash in native code, a kill)."""


Backend = Literal["pdfium", "pypdf"]
BACKENDS: tuple[Backend, ...] = ("pdfium", "pypdf")
T = TypeVar("T")
POOL = "pdf-extraction"
# With more than one worker, documents of at least this many pages are split across them.
PARALLEL_MIN_PAGES = 40
# Fewer words than this on a page that carries images reads as a scan.
SCAN_WORDS_PER_PAGE = 30
# From this share of right-to-left letters on, the text is read by pypdf (see _in_reading_order).
RTL_SHARE = 0.2
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


@dataclass(frozen=True)
class PdfLimits:
    max_bytes: int
    max_pages: int
    max_seconds: float
    workers: int = 1
    max_memory_mb: float = 1024.0


@dataclass(frozen=True, repr=False)
class PdfDocument:
    """What extraction produced: the normalized text per page, the backend that read it, and
    what went wrong along the way. Its repr is one short line (error paths repr node inputs)."""

    pages: tuple[str, ...]
    encrypted: bool = False
    pypdf_warnings: int = 0
    first_warning: str = ""
    notes: tuple[str, ...] = field(default=())
    backend: str = ""
    removed_lines: int = 0  # running headers/footers and page numbers taken out

    @property
    def text(self) -> str:
        """The pages in order: a page that starts in lower case continues the sentence (or the
        word hyphenated) at the end of the one before, on its next line; other pages start a
        new paragraph."""
        out: list[str] = []
        for page in self.pages:
            page = page.strip()
            if page:
                out += ["\n" if page[0].islower() else "\n\n", page] if out else [page]
        return "".join(out)

    def __repr__(self) -> str:
        chars = sum(len(p) for p in self.pages)
        return f"<PdfDocument: {len(self.pages)} pages, {chars} characters>"


@dataclass(frozen=True)
class PdfPart:
    """What a worker read from pages [start, stop): texts, per-page problems, pypdf's warnings,
    which nearly textless pages carry images (the signs of a scan), and whether a reader's
    safety limit stopped a page."""

    count: int
    start: int
    texts: tuple[str, ...]
    notes: tuple[str, ...]
    warnings: int
    first_warning: str
    pictured: tuple[int, ...]
    encrypted: bool
    capped: bool = False


def check_page_count(count: int, source: str, limits: PdfLimits) -> int:
    """`count`, after the no-pages and page-cap checks (every backend calls it)."""
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


def _reader(backend: str) -> Callable[[bytes, str, str, PdfLimits, int, int | None], PdfPart]:
    """The backend's `read_part`, imported on first use (in the worker, not the caller)."""
    if backend == "pdfium":
        from dataflows._pdfium import read_part as pdfium_part

        return pdfium_part
    if backend == "pypdf":
        from dataflows._pypdf import read_part as pypdf_part

        return pypdf_part
    raise ValueError(f"pdf_backend={backend!r} is not a backend. Choose one of: {BACKENDS}.")


def extract_part(
    data: bytes,
    password: str,
    source: str,
    limits: PdfLimits,
    start: int,
    stop: int | None,
    backend: str = "pdfium",
) -> PdfPart:
    """Pages [start, stop) (stop None: to the end) as the backend extracts them, in the calling
    process. The worker pool runs this; in-process it has no time or memory cap (benchmarks and
    tests call it directly)."""
    return _reader(backend)(data, password, source, limits, start, stop)


def page_count(
    data: bytes, password: str, source: str, limits: PdfLimits, backend: str = "pdfium"
) -> int:
    """The number of pages, after the encryption and page-cap checks (run in a worker)."""
    return _reader(backend)(data, password, source, limits, 0, 0).count


def _no_text(parts: list[PdfPart], source: str) -> PdfError:
    """The error for a PDF without text, naming the real cause."""
    count = parts[0].count
    notes = [n for p in parts for n in p.notes]
    pictured = [i for p in parts for i in p.pictured]
    if notes and not pictured:
        more = f" (and {len(notes) - 1} more page(s) like it)" if len(notes) > 1 else ""
        kind = PdfError if any(p.capped for p in parts) else PdfUnreadableError
        return kind(
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


def _document(parts: list[PdfPart], source: str, backend: str = "") -> PdfDocument:
    """The parts joined, as extracted (not normalized), or the no-text error."""
    parts = sorted(parts, key=lambda p: p.start)
    texts = [t for p in parts for t in p.texts]
    pictured = any(p.pictured for p in parts)
    words = sum(len(t.split()) for t in texts) if pictured else 0
    if not any(t.strip() for t in texts) or (pictured and words < SCAN_WORDS_PER_PAGE * len(texts)):
        raise _no_text(parts, source)
    return PdfDocument(
        pages=tuple(texts),
        encrypted=parts[0].encrypted,
        pypdf_warnings=sum(p.warnings for p in parts),
        first_warning=next((p.first_warning for p in parts if p.first_warning), ""),
        notes=tuple(n for p in parts for n in p.notes),
        backend=backend,
    )


def normalized(doc: PdfDocument) -> PdfDocument:
    """`doc` with every page normalized and running headers, footers and page numbers removed."""
    pages, removed = normalize_pages(doc.pages)
    return dataclasses.replace(doc, pages=tuple(pages), removed_lines=removed)


def read_document(
    data: bytes, password: str, source: str, limits: PdfLimits, backend: str = "pdfium"
) -> PdfDocument:
    """The whole document read by `backend` and normalized, in the calling process (the worker
    pool runs this for a document read by one worker)."""
    part = extract_part(data, password, source, limits, 0, None, backend)
    return normalized(_document([part], source, backend))


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
        raise PdfReaderCrashError(
            f"the process reading the PDF died on it ({exc}). The file may be damaged or "
            "crafted to crash readers; repair it with 'qpdf in.pdf out.pdf' and try again.",
            source=source,
        ) from exc
    return result


async def _extract(
    data: bytes, password: str, source: str, limits: PdfLimits, backend: str, seconds: float
) -> PdfDocument:
    """One backend's reading, in the pool, within `seconds`."""
    pool = worker_pool(POOL, workers=limits.workers)
    args = (data, password, source, limits)
    if limits.workers == 1:
        return await _in_worker(pool, limits, seconds, source, read_document, *args, backend)
    started = time.monotonic()
    count = await _in_worker(pool, limits, seconds, source, page_count, *args, backend)
    step = count if count < PARALLEL_MIN_PAGES else -(-count // limits.workers)
    left = seconds - (time.monotonic() - started)
    tasks = [
        asyncio.ensure_future(
            _in_worker(pool, limits, left, source, extract_part, *args, a, a + step, backend)
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
    return await asyncio.to_thread(normalized, _document(parts, source, backend))


async def aextract_pdf(
    data: bytes,
    *,
    password: str = "",
    source: str = "",
    limits: PdfLimits,
    backend: str = "pdfium",
) -> PdfDocument:
    """Extract the normalized text of every page in the worker pool with `backend` (the other
    backend tries when this one cannot parse the file), or raise a typed error saying what is
    wrong. With `limits.workers` > 1, a long document is split across the workers."""
    if backend not in BACKENDS:
        raise ValueError(f"pdf_backend={backend!r} is not a backend. Choose one of: {BACKENDS}.")
    _check_header(data, source, limits)
    started = time.monotonic()
    try:
        doc = await _extract(data, password, source, limits, backend, limits.max_seconds)
    except (PdfUnreadableError, PdfNoTextError) as exc:
        first: PdfError = exc
    else:
        if backend == "pdfium" and right_to_left(doc.text):
            return await _in_reading_order(doc, data, password, source, limits, started)
        return doc
    other = next(b for b in BACKENDS if b != backend)
    try:
        left = limits.max_seconds - (time.monotonic() - started)
        doc = await _extract(data, password, source, limits, other, left)
    except (PdfError, LimitExceededError) as second:
        first.add_note(f"{other} could not read it either: {second}")
        raise first from None
    note = f"{backend} could not read the PDF ({first}); {other} read it instead."
    return dataclasses.replace(doc, notes=(note, *doc.notes))


def right_to_left(text: str) -> bool:
    """Whether at least RTL_SHARE of the letters are of a right-to-left script (Arabic, Hebrew,
    Syriac, Thaana, N'Ko and their presentation forms)."""
    # No ASCII character is right-to-left: most documents are settled by their few others.
    rtl = sum(1 for c in _NON_ASCII.findall(text) if c.isalpha() and _is_rtl(c))
    if not rtl:
        return False
    return rtl >= RTL_SHARE * sum(1 for c in text if c.isalpha())


def _is_rtl(c: str) -> bool:
    return unicodedata.bidirectional(c) in ("R", "AL")


async def _in_reading_order(
    doc: PdfDocument, data: bytes, password: str, source: str, limits: PdfLimits, started: float
) -> PdfDocument:
    """PDFium gives right-to-left script in visual order (each word reversed) where pypdf gives
    the reading order: pypdf's reading of `doc`'s file when it has one in the time left."""
    left = limits.max_seconds - (time.monotonic() - started)
    try:
        better = await _extract(data, password, source, limits, "pypdf", left)
    except (PdfError, LimitExceededError) as exc:
        note = f"pdfium gives right-to-left script in visual order; pypdf could not read it ({exc})"
        return dataclasses.replace(doc, notes=(*doc.notes, note))
    note = "pdfium gives right-to-left script in visual order; pypdf read it instead."
    return dataclasses.replace(better, notes=(note, *better.notes))


def extract_pdf(
    data: bytes, *, password: str = "", source: str = "", limits: PdfLimits, backend: str = "pdfium"
) -> PdfDocument:
    """`aextract_pdf` for code without an event loop (scripts, benchmarks)."""
    return asyncio.run(
        aextract_pdf(data, password=password, source=source, limits=limits, backend=backend)
    )
