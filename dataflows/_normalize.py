"""Text normalization after extraction, the same for every backend (plain functions, not nodes):

- `normalize_page`: one page's text: newlines unified, PDFium's line-end hyphen marks turned back
  into a hyphen and a line break, Unicode NFKC (ligatures ﬁ/ﬂ → fi/fl, full-width forms,
  presentation forms), control characters made spaces, private-use characters dropped,
  trailing spaces trimmed;
- `strip_running_lines`: running headers and footers and page numbers removed (lines at a page's
  top or bottom that repeat across pages and never occur inside one);
- `dehyphenate`: words hyphenated at a line break joined ("exam-\\nple" → "example"), while a
  compound broken at its hyphen keeps it ("navy-\\ncrowded" → "navy-crowded"), judged by the
  words of the document itself.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence

__all__ = [
    "EDGE_LINES",
    "dehyphenate",
    "line_key",
    "normalize_page",
    "normalize_pages",
    "strip_running_lines",
]

# How many non-empty lines at the top and at the bottom of a page may be a header or footer.
EDGE_LINES = 3
# A line repeated at page edges is a running header/footer from this many pages on...
_MIN_PAGES = 3
# ...and, when it holds a number (a chapter heading "Chapter 3" masks like a header), only when
# it is on at least this share of the pages.
_NUMBERED_SHARE = 0.25
_RARE_BREAKS = ("\u2028", "\u2029", "\x85")
# PDFium marks a hyphen at a line end with U+0002 (get_text_bounded) or U+FFFE (get_text_range)
# and drops the line break.
_PDFIUM_HYPHENS = ("\x02", "\ufffe")
_SOFT_HYPHEN_AT_END = re.compile(r"\u00ad[ \t]*\n")
# A control character is a glyph without a meaning (a broken font map): a space, so that it
# cannot glue its neighbours together ("ϲΒϴΒ\x03habibi"). Private-use characters (icons, symbol
# fonts) and stray soft hyphens or byte-order marks go.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_DROP = re.compile(r"[\u00ad\ufeff\uffff\ue000-\uf8ff\U000f0000-\U000ffffd\U00100000-\U0010fffd]")
_DIGITS = re.compile(r"\d+")
_PAGE_NUMBER = re.compile(
    r"(?:page\s*)?[-–—(\[]?\s*#\s*[-–—)\]]?(?:\s*(?:of|/)\s*#)?|[ivxlc]+", re.IGNORECASE
)
_HYPHEN_BREAK = re.compile(r"-[ \t]*\n[ \t]*")
_LONGEST = 64  # letters looked back for the word before a line-end hyphen
_TAIL = re.compile(r"[^\W\d_]+\Z")
_HEAD = re.compile(r"[^\W\d_]+")
_PUNCTUATION = "\"'()[]{}<>.,;:!?*/\\_-–—…«»“”‘’„‚"


def normalize_page(text: str) -> str:
    """One page's extracted text, normalized (see the module docstring)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    for mark in _PDFIUM_HYPHENS:  # str.replace: several times faster than a regex class here
        text = text.replace(mark, "-\n")
    if not text.isascii():
        for mark in _RARE_BREAKS:
            text = text.replace(mark, "\n")
        text = _SOFT_HYPHEN_AT_END.sub("-\n", text)
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        text = _DROP.sub("", text)
    text = _CONTROL.sub(" ", text)
    return "\n".join(line.rstrip(" \t") for line in text.split("\n"))


def line_key(line: str) -> str:
    """What a line is compared by across pages: spaces collapsed, every number as '#'."""
    return _DIGITS.sub("#", " ".join(line.split()))


def _edges(lines: list[str]) -> set[int]:
    """Indexes of the first and last EDGE_LINES non-empty lines."""
    first = list(itertools.islice((i for i, line in enumerate(lines) if line.strip()), EDGE_LINES))
    up = range(len(lines) - 1, -1, -1)
    last = list(itertools.islice((i for i in up if lines[i].strip()), EDGE_LINES))
    return set(first + last)


def strip_running_lines(pages: Sequence[str]) -> tuple[list[str], int]:
    """The pages without running headers/footers and page numbers, and how many lines went.

    A line goes when it is among a page's first or last EDGE_LINES non-empty lines and either
    (a) it is a page number ("7", "Page 7", "7 of 293", "- 7 -", "vii") and page numbers stand
    at an edge of at least two pages, or (b) the same line (numbers masked) stands at an edge of
    at least three pages and never inside a page (repeated body text, such as a sample text
    printed on every page, is kept); a line holding a number must also be on at least a quarter
    of the pages (so "Chapter 3" headings stay). The first page keeps all but its page number: a
    running title there is the document's title."""
    split = [page.split("\n") for page in pages]
    edges = [_edges(lines) for lines in split]
    edge_keys = [
        {i: line_key(lines[i]) for i in edge} for lines, edge in zip(split, edges, strict=True)
    ]
    at_edge: Counter[str] = Counter()
    for keys in edge_keys:
        at_edge.update(set(keys.values()))
    candidates = {k for k, n in at_edge.items() if k and (n >= 2)}
    inside: set[str] = set()
    # A line inside a page can only have a candidate's key if it starts like one (a digit for #).
    starts = {k[0] for k in candidates}
    if candidates:
        for lines, keys in zip(split, edge_keys, strict=True):
            for i, line in enumerate(lines):
                head = line.lstrip()[:1]
                if i in keys or not head or ("#" if head.isdigit() else head) not in starts:
                    continue
                if (k := line_key(line)) in candidates:
                    inside.add(k)
    numbers = sum(n for key, n in at_edge.items() if _PAGE_NUMBER.fullmatch(key))
    running = {
        key
        for key in candidates
        if (_PAGE_NUMBER.fullmatch(key) and numbers >= 2)
        or (
            at_edge[key] >= _MIN_PAGES
            and key not in inside
            and ("#" not in key or at_edge[key] >= _NUMBERED_SHARE * len(pages))
        )
    }
    if not running:
        return list(pages), 0
    out: list[str] = []
    removed = 0
    for n, (lines, keys) in enumerate(zip(split, edge_keys, strict=True)):
        drop = {i for i, k in keys.items() if k in running and (n or _PAGE_NUMBER.fullmatch(k))}
        removed += len(drop)
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return out, removed


def _breaks(text: str) -> list[tuple[int, int, str, str]]:
    """Every "a-\\nb" with letters a and b: (start of a, end of b, a, b)."""
    out = []
    for m in _HYPHEN_BREAK.finditer(text):
        head = _TAIL.search(text, max(0, m.start() - _LONGEST), m.start())
        tail = _HEAD.match(text, m.end())
        if head and tail:
            out.append((head.start(), tail.end(), head.group(), tail.group()))
    return out


def dehyphenate(text: str) -> str:
    """Words hyphenated across a line break joined; a compound keeps its hyphen.

    For "a-\\nb": join when "ab" occurs elsewhere in the text; keep "a-b" when "a-b" occurs
    elsewhere, or when b starts with a capital, or when a and b both occur elsewhere as words
    (3+ letters each); otherwise join (most line-end hyphens are typesetting)."""
    breaks = _breaks(text) if "-" in text else []
    if not breaks:
        return text
    # The text's words and hyphenated compounds, punctuation stripped, each break's two
    # fragments not counted as words ("ex-" and "pressed" are no evidence for "ex"); only those
    # the breaks ask about are counted.
    pairs = [(a.lower(), b.lower()) for _, _, a, b in breaks]
    asked = {w for la, lb in pairs for w in (la, lb, la + lb, f"{la}-{lb}")}
    stripped = map(str.strip, text.lower().split(), itertools.repeat(_PUNCTUATION))
    words = Counter(filter(asked.__contains__, stripped))
    words.subtract(w for pair in pairs for w in pair)
    pieces: list[str] = []
    at = 0
    for start, end, a, b in breaks:
        if start < at:  # "a-\\nb-\\nc": the first break already took b
            continue
        la, lb = a.lower(), b.lower()
        known = len(a) >= 3 and len(b) >= 3 and words[la] > 0 and words[lb] > 0
        keep = words[la + lb] <= 0 and (words[f"{la}-{lb}"] > 0 or b[0].isupper() or known)
        pieces += [text[at:start], f"{a}-{b}" if keep else a + b]
        at = end
    pieces.append(text[at:])
    return "".join(pieces)


def normalize_pages(pages: Sequence[str]) -> tuple[list[str], int]:
    """Every page normalized and the running lines removed: (pages, lines removed)."""
    return strip_running_lines([normalize_page(p) for p in pages])
