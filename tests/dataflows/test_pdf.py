"""PDF extraction in killable worker processes, under caps on bytes, pages, time and memory,
with typed errors that name the real cause, and folded pypdf warnings: the same behaviour for
both backends (pdfium, pypdf), and each one standing in when the other cannot parse a file."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import time
import zlib
from collections.abc import Callable

import pytest

from dataflows._pdf import (
    BACKENDS,
    POOL,
    PdfDocument,
    PdfEncryptedError,
    PdfError,
    PdfLimits,
    PdfNoTextError,
    PdfReaderCrashError,
    PdfUnreadableError,
    aextract_pdf,
    extract_part,
    extract_pdf,
    right_to_left,
)
from promptdag.errors import LimitExceededError
from promptdag.workers import worker_pool
from tests.dataflows.shared import shared
from tests.pdfs import _pdf, cyclic_page_tree_pdf, misaligned_xref_pdf, text_pdf

LIMITS = PdfLimits(max_bytes=10_000_000, max_pages=1_000, max_seconds=60)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that takes it runs once per backend."""
    return str(request.param)


def test_text_pdf_is_extracted(backend: str) -> None:
    doc = extract_pdf(text_pdf("Alpha beta gamma delta."), limits=LIMITS, backend=backend)
    assert doc.text == "Alpha beta gamma delta."
    assert doc.pypdf_warnings == 0 and doc.backend == backend and doc.notes == ()


def test_byte_cap_names_the_cap_and_the_setting(backend: str) -> None:
    with pytest.raises(
        LimitExceededError, match=r"PDF size is \d+ bytes, over the cap of 100 bytes.*pdf_max_bytes"
    ):
        extract_pdf(text_pdf(), limits=PdfLimits(100, 10, 10), backend=backend)


def test_page_cap(backend: str) -> None:
    with pytest.raises(LimitExceededError) as err:
        extract_pdf(shared("pdflatex-4-pages.pdf"), limits=PdfLimits(10**8, 3, 10), backend=backend)
    assert err.value.cap == 3 and err.value.value == 4


def test_time_cap_stops_a_long_document(backend: str) -> None:
    with pytest.raises(LimitExceededError, match="text extraction time"):
        extract_pdf(
            shared("the-war-of-the-worlds.pdf"),
            limits=PdfLimits(10**8, 1000, 0.05),
            backend=backend,
        )


def test_encrypted_without_password(backend: str) -> None:
    with pytest.raises(PdfEncryptedError, match=r"encrypted\. Pass its password"):
        extract_pdf(shared("libreoffice-writer-password.pdf"), limits=LIMITS, backend=backend)


def test_encrypted_with_a_wrong_password(backend: str) -> None:
    with pytest.raises(PdfEncryptedError, match="password is wrong"):
        extract_pdf(
            shared("libreoffice-writer-password.pdf"),
            password="nope",
            limits=LIMITS,
            backend=backend,
        )


def test_encrypted_with_password(backend: str) -> None:
    doc = extract_pdf(
        shared("libreoffice-writer-password.pdf"),
        password="openpassword",
        limits=LIMITS,
        backend=backend,
    )
    assert "Lorem ipsum" in doc.text and doc.encrypted and doc.backend == backend


def test_scanned_page_is_no_text_error(backend: str) -> None:
    with pytest.raises(PdfNoTextError, match="may be scanned"):
        extract_pdf(shared("base64image.pdf"), limits=LIMITS, backend=backend)


def test_short_text_without_images_is_not_mistaken_for_a_scan(backend: str) -> None:
    assert "habibi" in extract_pdf(shared("habibi.pdf"), limits=LIMITS, backend=backend).text


def test_a_file_neither_backend_can_parse_is_the_first_ones_error(backend: str) -> None:
    with pytest.raises(PdfUnreadableError, match="damaged") as err:
        extract_pdf(shared("unreadablemetadata.pdf"), limits=LIMITS, backend=backend)
    other = next(b for b in BACKENDS if b != backend)
    assert any(n.startswith(f"{other} could not read it either") for n in err.value.__notes__)


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
        doc = extract_pdf(misaligned_xref_pdf(), limits=LIMITS, backend="pypdf")
    finally:
        logging.getLogger().removeHandler(root)
    assert doc.text.startswith("Hello world.")
    assert doc.pypdf_warnings >= 3 and "wrong pointing object" in doc.first_warning
    assert not [r for r in root.records if r.name.startswith("pypdf")]  # none reach the root logger


def test_cyclic_page_tree_is_a_pdf_error(backend: str) -> None:
    with pytest.raises(PdfUnreadableError, match="page tree is damaged"):
        extract_pdf(cyclic_page_tree_pdf(), limits=LIMITS, backend=backend)


def test_worker_processes_give_the_same_text_as_one_process(backend: str) -> None:
    data = shared("the-war-of-the-worlds.pdf")
    one = extract_pdf(data, limits=LIMITS, backend=backend)
    two = extract_pdf(data, limits=PdfLimits(10**8, 1000, 60, workers=2), backend=backend)
    assert one.pages == two.pages and one.removed_lines == two.removed_lines > 0


def test_worker_process_errors_arrive_typed(backend: str) -> None:
    with pytest.raises(LimitExceededError, match="text extraction time"):
        extract_pdf(
            shared("the-war-of-the-worlds.pdf"),
            limits=PdfLimits(10**8, 1000, 0.01, workers=2),
            backend=backend,
        )


# --- one backend stands in for the other ---------------------------------------------------------

_STREAM = "BT /F1 12 Tf 72 720 Td (Read by the other backend) Tj ET"
_OBJECTS = [
    "<< /Type /Catalog /Pages 2 0 R >>",
    "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
    "/Resources << /Font << /F1 5 0 R >> >> >>",
    f"<< /Length {len(_STREAM)} >>\nstream\n{_STREAM}\nendstream",
    "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
]


def no_root_pdf() -> bytes:
    """A trailer without /Root: PDFium refuses the file, pypdf finds the catalog anyway."""
    return _pdf(_OBJECTS).replace(b"/Root 1 0 R", b"/Roots 1 0 R")


def bad_xref_pdf() -> bytes:
    """An xref section header that is not a number: pypdf refuses it, PDFium rebuilds it."""
    return _pdf(_OBJECTS).replace(b"xref\n0 6", b"xref\n0 Q")


@pytest.mark.parametrize(
    ("make", "fails", "reads"),
    [(no_root_pdf, "pdfium", "pypdf"), (bad_xref_pdf, "pypdf", "pdfium")],
)
def test_the_other_backend_reads_what_one_cannot_parse_and_says_so(
    make: Callable[[], bytes], fails: str, reads: str
) -> None:
    with pytest.raises(PdfUnreadableError):
        extract_part(make(), "", "", LIMITS, 0, None, fails)
    doc = extract_pdf(make(), source="odd.pdf", limits=LIMITS, backend=fails)
    assert doc.text == "Read by the other backend" and doc.backend == reads
    assert doc.notes[0].startswith(f"{fails} could not read the PDF (odd.pdf: the PDF is damaged")
    assert doc.notes[0].endswith(f"{reads} read it instead.")


def test_the_other_backend_does_not_try_after_a_cap() -> None:
    """A time cap is final: the other backend would only spend it again."""
    with pytest.raises(LimitExceededError, match="text extraction time"):
        extract_pdf(form_bomb_pdf(), limits=PdfLimits(10**8, 10, 0.5), backend="pdfium")


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


def test_a_form_xobject_bomb_stops_at_the_time_cap_with_bounded_memory_while_another_pdf_is_read(
    backend: str,
) -> None:
    bomb = form_bomb_pdf()
    assert len(bomb) < 8_000
    caps = PdfLimits(10**8, 10, max_seconds=2, workers=2, max_memory_mb=300)
    pool = worker_pool(POOL, workers=2)

    async def go() -> tuple[float, float, PdfDocument]:
        start = time.monotonic()
        hostile = asyncio.ensure_future(
            aextract_pdf(bomb, source="bomb.pdf", limits=caps, backend=backend)
        )
        await asyncio.sleep(0.5)
        other = await aextract_pdf(
            text_pdf("Another document, read meanwhile."), limits=LIMITS, backend=backend
        )
        peak = 0.0
        while not hostile.done():
            peak = max([peak, *(_rss_mb(p) for p in pool.busy_pids())])
            await asyncio.sleep(0.05)
        with pytest.raises(LimitExceededError) as err:
            await hostile
        # pypdf spends time on the drawn forms; PDFium also allocates for them, and on a quick
        # machine reaches the memory cap first: either cap stopping it is the caps holding.
        caps_hit = {("text extraction time", "2 s"), ("text extraction memory", "300 MB")}
        assert (err.value.limit, err.value.cap) in (
            caps_hit if backend == "pdfium" else {("text extraction time", "2 s")}
        ), str(err.value)
        return time.monotonic() - start, peak, other

    took, peak, other = asyncio.run(go())
    assert other.text == "Another document, read meanwhile."
    assert took < PROMPTLY, f"the 2 s cap took {took:.1f} s"
    assert peak < 300 + 200, f"the worker reached {peak:.0f} MB"  # the cap over its start size


def test_a_worker_killed_mid_document_is_a_pdf_error_and_the_next_document_works(
    backend: str,
) -> None:
    """A crash in native code (here: SIGKILL while PDFium or pypdf reads a page) is a typed
    error for that document only; the pool starts a fresh worker for the next one."""
    pool = worker_pool(POOL, workers=1)
    caps = PdfLimits(10**8, 10, max_seconds=600)

    async def go() -> None:
        hostile = asyncio.ensure_future(
            aextract_pdf(form_bomb_pdf(), source="bomb.pdf", limits=caps, backend=backend)
        )
        deadline = time.monotonic() + PROMPTLY
        while not pool.busy_pids() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # inside the reader by now
        busy = pool.busy_pids()
        for pid in busy:
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(
            PdfReaderCrashError,
            match=r"bomb.pdf: the process reading the PDF died on it .*SIGKILL",
        ):
            await asyncio.wait_for(hostile, PROMPTLY)
        assert busy and not set(busy) & set(pool.pids())

    asyncio.run(go())
    doc = extract_pdf(text_pdf("Next one."), limits=LIMITS, backend=backend)
    assert doc.text == "Next one." and doc.backend == backend


def test_the_memory_cap_names_its_setting(backend: str) -> None:
    """A 70 KB file whose page decompresses to 70 MB, under a 64 MB cap."""
    data = _page_pdf(b"BT /F1 12 Tf (Hi) Tj ET\n" + b" " * 70_000_000)
    caps = PdfLimits(10**8, 10, max_seconds=PROMPTLY, max_memory_mb=64)
    with pytest.raises(LimitExceededError, match="pdf_max_memory_mb") as err:
        extract_pdf(data, limits=caps, backend=backend)
    assert err.value.limit == "text extraction memory" and err.value.cap == "64 MB"


def test_a_decompression_bomb_names_pypdfs_limit_not_a_scan() -> None:
    """pypdf caps a stream's decompressed size (75 MB); that cap is final, like the others.
    PDFium has no such cap: the memory cap bounds it (test_the_memory_cap_names_its_setting)."""
    data = _page_pdf(b"BT /F1 12 Tf (Hi) Tj ET\n" + b" " * 80_000_000)
    with pytest.raises(PdfError, match=r"safety limit of the PDF reader.*decompress") as err:
        extract_pdf(data, limits=LIMITS, backend="pypdf")
    assert "scanned" not in str(err.value) and not isinstance(err.value, PdfUnreadableError)


def test_pages_without_text_or_images_are_not_called_a_scan(backend: str) -> None:
    with pytest.raises(PdfNoTextError, match="draw no text") as err:
        extract_pdf(_page_pdf(b"0 0 m 100 100 l S\n"), limits=LIMITS, backend=backend)
    assert "scanned" not in str(err.value)


def test_a_document_repr_is_short_whatever_its_size() -> None:
    doc = PdfDocument(pages=("word " * 1_000_000,) * 3)
    assert repr(doc) == "<PdfDocument: 3 pages, 15000000 characters>"


def test_right_to_left_is_told_by_the_share_of_rtl_letters() -> None:
    assert right_to_left("حَبيبي habibi حَبيبي")
    assert right_to_left("שלום עולם and a little English")
    assert not right_to_left("An English page that quotes one word: حَبيبي, and goes on in English.")
    assert not right_to_left("") and not right_to_left("12 34 ...")
    # Only letters count, whatever the script of the others: 2 Hebrew letters in 10 is 20%.
    assert right_to_left("שׁ «éèàçôûïë» “12” ש")
    assert not right_to_left("ש «éèàçôûïëæ» “12”")
    assert not right_to_left("“Curly quotes”, ﬁ ligatures, Ελληνικά and ελληνικά")


def test_pdfium_gives_what_pypdfium2s_bounded_text_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pdfium reader calls PDFium's C API with one reused buffer: page for page, the text
    of pypdfium2's `get_text_bounded()`; so does its fallback (the exact two calls pypdfium2
    makes), taken for text beyond U+FFFF."""
    import pypdfium2 as pdfium

    from dataflows import _pdfium

    for name in ("the-man-without-a-body.pdf", "multicolumn.pdf", "google-doc-document.pdf"):
        data = shared(name)
        doc = pdfium.PdfDocument(data)
        try:
            expected = []
            for i in range(len(doc)):
                page = doc[i]
                expected.append(page.get_textpage().get_text_bounded())
                page.close()
        finally:
            doc.close()
        assert extract_part(data, "", name, LIMITS, 0, None, "pdfium").texts == tuple(expected)
        with monkeypatch.context() as m:
            m.setattr(_pdfium, "_ASTRAL", re.compile(r"[\s\S]"))
            fallback = extract_part(data, "", name, LIMITS, 0, None, "pdfium").texts
        assert fallback == tuple(expected)


def test_arabic_is_read_in_reading_order_by_pypdf_under_the_default_backend() -> None:
    """PDFium reverses each Arabic word (visual order); the default reading falls back to pypdf
    for a mostly right-to-left document, and says so."""
    data = shared("habibi.pdf")
    pdfium = extract_part(data, "", "habibi.pdf", LIMITS, 0, None, "pdfium")
    assert "حَبيبي" not in " ".join(pdfium.texts)  # the visual order this guards against
    doc = extract_pdf(data, limits=LIMITS)
    assert doc.backend == "pypdf" and "حَبيبي habibi حَبيبي" in doc.text
    assert any("right-to-left" in n and "pypdf read it instead" in n for n in doc.notes)
    assert extract_pdf(data, limits=LIMITS, backend="pypdf").notes == doc.notes[1:]
