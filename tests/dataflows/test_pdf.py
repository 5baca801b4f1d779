"""PDF extraction in killable worker processes, under caps on bytes, pages, time and memory,
with typed errors that name the real cause, and folded pypdf warnings."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import zlib
from pathlib import Path

import pytest

from dataflows._pdf import (
    POOL,
    PdfDocument,
    PdfEncryptedError,
    PdfError,
    PdfLimits,
    PdfNoTextError,
    aextract_pdf,
    extract_pdf,
)
from promptdag.errors import LimitExceededError
from promptdag.workers import worker_pool
from tests.pdfs import _pdf, cyclic_page_tree_pdf, misaligned_xref_pdf, text_pdf

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


def test_time_cap_stops_a_long_document() -> None:
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


# --- hostile files: the caps hold inside a page -------------------------------------------------

PROMPTLY = 30.0  # generous: the machine is shared; it only proves nothing waits for the page


def _page_pdf(content: bytes, *, form: bytes | None = None) -> bytes:
    """One page whose (compressed) content stream is `content`; with `form`, a form XObject
    /Fm0 whose content is `form`."""
    page = zlib.compress(content, 9).decode("latin-1")
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> /XObject << /Fm0 6 0 R >> >> >>",
        f"<< /Length {len(page)} /Filter /FlateDecode >>\nstream\n{page}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if form is not None:
        packed = zlib.compress(form, 9).decode("latin-1")
        objects.append(
            "<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << /Font "
            f"<< /F1 5 0 R >> >> /Length {len(packed)} /Filter /FlateDecode >>\n"
            f"stream\n{packed}\nendstream"
        )
    return _pdf(objects)


def form_bomb_pdf() -> bytes:
    """A few-KB PDF whose one page draws a 0.8 MB form 100 times: pypdf parses the form anew
    each time, for minutes (see NOTES.md)."""
    form = b"BT /F1 12 Tf 72 720 Td (Hello world) Tj ET\n" * 20_000
    return _page_pdf(b"q /Fm0 Do Q\n" * 100, form=form)


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except FileNotFoundError:
        return 0.0


def test_a_form_xobject_bomb_stops_at_the_time_cap_with_bounded_memory_while_another_pdf_is_read() -> (
    None
):
    bomb = form_bomb_pdf()
    assert len(bomb) < 8_000
    caps = PdfLimits(10**8, 10, max_seconds=2, workers=2, max_memory_mb=300)
    pool = worker_pool(POOL, workers=2)

    async def go() -> tuple[float, float, PdfDocument]:
        start = time.monotonic()
        hostile = asyncio.ensure_future(aextract_pdf(bomb, source="bomb.pdf", limits=caps))
        await asyncio.sleep(0.5)
        other = await aextract_pdf(text_pdf("Another document, read meanwhile."), limits=LIMITS)
        peak = 0.0
        while not hostile.done():
            peak = max([peak, *(_rss_mb(p) for p in pool.busy_pids())])
            await asyncio.sleep(0.05)
        with pytest.raises(LimitExceededError, match="pdf_max_seconds") as err:
            await hostile
        assert err.value.limit == "text extraction time" and err.value.cap == "2 s"
        return time.monotonic() - start, peak, other

    took, peak, other = asyncio.run(go())
    assert other.text == "Another document, read meanwhile."
    assert took < PROMPTLY, f"the 2 s cap took {took:.1f} s"
    assert peak < 300 + 200, f"the worker reached {peak:.0f} MB"  # the cap over its start size


def test_a_worker_killed_mid_document_is_a_pdf_error_and_the_next_document_works() -> None:
    pool = worker_pool(POOL, workers=1)
    caps = PdfLimits(10**8, 10, max_seconds=600)

    async def go() -> None:
        hostile = asyncio.ensure_future(
            aextract_pdf(form_bomb_pdf(), source="bomb.pdf", limits=caps)
        )
        deadline = time.monotonic() + PROMPTLY
        while not pool.busy_pids() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # inside pypdf by now
        for pid in pool.busy_pids():
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            PdfError, match=r"bomb.pdf: the process reading the PDF died on it .*SIGKILL"
        ):
            await asyncio.wait_for(hostile, PROMPTLY)

    asyncio.run(go())
    assert extract_pdf(text_pdf("Next one."), limits=LIMITS).text == "Next one."


def test_the_memory_cap_names_its_setting() -> None:
    """A 70 KB file whose page decompresses to 70 MB, under a 64 MB cap."""
    data = _page_pdf(b"BT /F1 12 Tf (Hi) Tj ET\n" + b" " * 70_000_000)
    caps = PdfLimits(10**8, 10, max_seconds=PROMPTLY, max_memory_mb=64)
    with pytest.raises(LimitExceededError, match="pdf_max_memory_mb") as err:
        extract_pdf(data, limits=caps)
    assert err.value.limit == "text extraction memory" and err.value.cap == "64 MB"


def test_a_decompression_bomb_names_the_limit_not_a_scan() -> None:
    data = _page_pdf(b"BT /F1 12 Tf (Hi) Tj ET\n" + b" " * 80_000_000)
    with pytest.raises(PdfError, match=r"safety limit of the PDF reader.*decompress") as err:
        extract_pdf(data, limits=LIMITS)
    assert "scanned" not in str(err.value)


def test_pages_without_text_or_images_are_not_called_a_scan() -> None:
    with pytest.raises(PdfNoTextError, match="draw no text") as err:
        extract_pdf(_page_pdf(b"0 0 m 100 100 l S\n"), limits=LIMITS)
    assert "scanned" not in str(err.value)


def test_a_document_repr_is_short_whatever_its_size() -> None:
    doc = PdfDocument(pages=("word " * 1_000_000,) * 3)
    assert repr(doc) == "<PdfDocument: 3 pages, 15000000 characters>"
