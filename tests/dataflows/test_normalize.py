"""Text normalization after extraction, for both backends: NFKC (ligatures), PDFium's hyphen
marks, de-hyphenation that keeps real hyphens, running headers/footers and page numbers."""

from __future__ import annotations

import re

import pytest

from dataflows._normalize import dehyphenate, normalize_page, strip_running_lines
from dataflows._pdf import BACKENDS, PdfDocument, PdfLimits, extract_pdf
from dataflows._text import clean_text
from tests.dataflows.shared import shared

LIMITS = PdfLimits(max_bytes=10**8, max_pages=1_000, max_seconds=120)
LIGATURES = re.compile("[\ufb00-\ufb06]")


def test_ligatures_become_letters() -> None:
    assert normalize_page("The ﬁrst ﬂoor, a diﬀerent oﬃce") == "The first floor, a different office"


def test_pdfium_hyphen_marks_become_a_hyphen_at_a_line_end() -> None:
    assert normalize_page("no writer ex\x02pressed any idea") == "no writer ex-\npressed any idea"
    assert normalize_page("navy\ufffecrowded seas") == "navy-\ncrowded seas"


def test_newlines_trailing_spaces_control_and_private_use_characters() -> None:
    raw = "Line one \r\nLine\x00two\t\rthree\U000f03d9 \ue000end\x03word"
    assert normalize_page(raw) == "Line one\nLine two\nthree end word"


def test_a_hyphenated_line_break_is_joined() -> None:
    assert dehyphenate("The exam-\nple shows it.") == "The example shows it."


def test_a_word_seen_whole_elsewhere_is_joined_even_when_its_parts_are_words() -> None:
    text = "some-\nthing happened; something else, some day, a thing."
    assert dehyphenate(text).startswith("something happened")


def test_a_compound_broken_at_its_hyphen_keeps_it() -> None:
    text = "narrow, navy-\ncrowded seas. The navy was crowded."
    assert dehyphenate(text).startswith("narrow, navy-crowded seas.")


def test_a_compound_seen_hyphenated_elsewhere_keeps_its_hyphen() -> None:
    assert (
        dehyphenate("twenty-\nfour hours, twenty-four men") == "twenty-four hours, twenty-four men"
    )


def test_a_capitalised_second_part_keeps_the_hyphen() -> None:
    assert dehyphenate("the Anglo-\nSaxon kings") == "the Anglo-Saxon kings"


def test_hyphens_inside_a_line_are_untouched() -> None:
    assert dehyphenate("a well-known, long-lost text") == "a well-known, long-lost text"


def test_clean_text_joins_lines_after_a_kept_hyphen_without_a_space() -> None:
    text = "the still-\nglowing metal, still and glowing\n\nNext."
    assert clean_text(text) == "the still-glowing metal, still and glowing\n\nNext."


WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
]


def _book(n: int) -> list[str]:
    """n pages: a running title, "i of n", eight lines of prose unique to the page."""
    pages = []
    for i in range(n):
        body = [f"The {WORDS[i]} part, line {WORDS[j]} of the story." for j in range(8)]
        if i == 5:
            body.insert(0, "Chapter 3")
        pages.append("\n".join(["A Book Title", f"{i + 1} of {n}", *body]))
    return pages


def test_running_headers_and_page_numbers_are_removed() -> None:
    pages, removed = strip_running_lines(_book(12))
    assert removed == 12 + 11  # every page number, and the title on every page but the first
    assert pages[1].split("\n") == [f"The beta part, line {w} of the story." for w in WORDS[:8]]
    assert pages[0].startswith("A Book Title\nThe alpha part")
    assert "Chapter 3" in pages[5]  # a numbered line on one page is a heading, not a header


def test_bare_page_numbers_at_the_bottom_go_from_two_pages_on() -> None:
    pages, removed = strip_running_lines(["First page text.\n1", "Second page text.\n2"])
    assert pages == ["First page text.", "Second page text."] and removed == 2


def test_repeated_body_text_is_not_a_header() -> None:
    prose = [f"Hello, here is some text about {w}." for w in WORDS[:8]]
    pages = ["\n".join(prose[i:] + prose[:i]) for i in range(8)]  # each line also mid-page
    assert strip_running_lines(pages) == (pages, 0)


def test_a_single_page_keeps_everything() -> None:
    assert strip_running_lines(["Title\n1"]) == (["Title\n1"], 0)


# --- on the shared PDFs, both backends ----------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def war_of_the_worlds(request: pytest.FixtureRequest) -> PdfDocument:
    return extract_pdf(shared("the-war-of-the-worlds.pdf"), limits=LIMITS, backend=request.param)


def test_war_of_the_worlds_loses_its_running_header_and_page_numbers(
    war_of_the_worlds: PdfDocument,
) -> None:
    text = clean_text(war_of_the_worlds.text)
    assert not re.search(r"\d+ of 293", text)
    assert text.startswith("The War of the Worlds H. G. Wells")  # the title page keeps its title
    assert "The War of the Worlds" not in text.split("\n\n", 1)[1]
    assert "eBook brought to you by" not in text
    assert war_of_the_worlds.removed_lines >= 2 * 292
    assert "the beasts that perish" in text and "CHAPTER ONE" in text


def test_war_of_the_worlds_words_wrapped_at_a_hyphen_are_whole_again(
    war_of_the_worlds: PdfDocument,
) -> None:
    text = clean_text(war_of_the_worlds.text)
    assert "expressed any idea" in text
    assert "the still-glowing metal" in text and "twenty-four hours after" in text
    assert "\ufffe" not in text and "-\n" not in text


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["multicolumn.pdf", "crazyones-pdfa.pdf"])
def test_no_ligature_survives(name: str, backend: str) -> None:
    text = clean_text(extract_pdf(shared(name), limits=LIMITS, backend=backend).text)
    assert not LIGATURES.search(text)
    assert re.search(r"\b(?:Official|fit|misfits|offi)", text)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_text_printed_on_every_page_is_kept_and_page_numbers_go(backend: str) -> None:
    doc = extract_pdf(shared("pdflatex-4-pages.pdf"), limits=LIMITS, backend=backend)
    assert doc.removed_lines == 4  # the four page numbers
    assert sum(p.count("Hello, here is some text without a meaning") for p in doc.pages) >= 4
    assert not any(re.search(r"^\d+$", p, re.MULTILINE) for p in doc.pages)


def test_pdfium_does_not_split_words_where_pypdf_does() -> None:
    data = shared("the-war-of-the-worlds.pdf")
    pypdf_text = clean_text(extract_pdf(data, limits=LIMITS, backend="pypdf").text)
    pdfium_text = clean_text(extract_pdf(data, limits=LIMITS, backend="pdfium").text)
    assert "quart er" in pypdf_text and len(re.findall(r"\bth e\b", pypdf_text)) > 10
    assert "quart er" not in pdfium_text and not re.search(r"\bth e\b", pdfium_text)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_unmapped_glyph_does_not_glue_its_neighbours(backend: str) -> None:
    """PDFium maps a glyph of habibi.pdf to U+0003, right before "habibi"."""
    text = clean_text(extract_pdf(shared("habibi.pdf"), limits=LIMITS, backend=backend).text)
    assert "habibi" in text.split()
